"""Running an approved plan: snapshot, steps, verification, rollback, learning.

Each state change is a compare-and-set, so only the caller that moved the
incident from `approved` to `executing` ever touches the target.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import ValidationError

from engine.earned import EarnedAutonomy
from engine.models import (
    GRACE,
    BenchmarkResult,
    Decision,
    Incident,
    IncidentState,
    Outcome,
    Plan,
    PlannedCheck,
    Snapshot,
    StepResult,
    Verification,
)
from engine.narration import Narrator
from engine.ports import Clock, Executor, Store, TargetRefused, TransientError, WaitingParams
from engine.proposal import TargetHeld
from engine.resilience import BreakerChange, CircuitOpen, DeadlineExceeded, Resilience
from engine.story import (
    BreakerChanged,
    Cleared,
    Held,
    Learned,
    NeedsHuman,
    RestoreFailed,
    RolledBack,
    SnapshotTaken,
    StepFinished,
    Verified,
)

log = logging.getLogger(__name__)

S = IncidentState
T = TypeVar("T")
# What a step can fail with that is the world's doing, not a bug: shown, not traced.
_EXPECTED_FAILURES = (TransientError, CircuitOpen, DeadlineExceeded, TargetRefused)


class _Failed(Exception):
    """The plan could not be carried out; the message says why, for the thread."""


@dataclass(frozen=True)
class Execution:
    store: Store
    narrator: Narrator
    executors: Mapping[str, Executor]
    clock: Clock
    earned: EarnedAutonomy
    resilience: Resilience = field(default_factory=Resilience)

    async def run(self, incident_id: int) -> Incident | None:
        """Carry out the plan of an approved incident; None when it does not start.

        Re-checked immediately before anything is touched: still approved (and
        not started by someone else), GRACE not paused, the alert still firing,
        the target not held.
        """
        approved = await self.store.get_incident(incident_id)
        if approved is None or approved.state is not S.APPROVED:
            return None
        pause = await self.store.paused()
        if pause is not None:
            await self.narrator.tell(approved, Held(pause=pause))
            return None
        if approved.firing_count == 0:
            await self.end_cleared(
                approved, "The alert resolved after approval, before anything ran."
            )
            return None
        assert approved.plan is not None, "an approved incident always has a plan"
        if await self._held(approved):
            return None
        incident = await self.store.transition(incident_id, S.APPROVED, S.EXECUTING, actor=GRACE)
        if incident is None:
            return None
        await self.narrator.show(incident)
        assert incident.plan is not None
        plan = incident.plan
        executor = self.executors[plan.target.executor]
        started = time.monotonic()
        snapshots: list[Snapshot] = []
        stages: dict[str, float] = {}
        try:
            with _timed(stages, "measure"):
                before = await self._measure(executor, incident)
            with _timed(stages, "steps"):
                await self._steps(executor, incident, snapshots)
            incident = await self._move(incident, S.VERIFYING)
            with _timed(stages, "verify"):
                verification = await self._verify(executor, incident, before)
            if verification.ok:
                incident = await self._move(incident, S.RESOLVED)
            else:
                raise _Failed(f"verification failed: {_failures(verification)}")
        except Exception as exc:
            known = isinstance(exc, (_Failed, *_EXPECTED_FAILURES))
            why = str(exc) if known else f"{type(exc).__name__}: {exc}"
            if not known:
                log.exception("incident %s failed while executing", incident.id)
            with _timed(stages, "rollback"):
                incident = await self._roll_back(executor, incident, snapshots, why)
        await self._learn(incident, plan, time.monotonic() - started, stages)
        return incident

    async def end_cleared(self, incident: Incident, reason: str) -> Incident | None:
        """End an incident whose alert cleared before anything was done to its target."""
        cleared = await self.store.transition(
            incident.id, incident.state, S.AUTO_RESOLVED, actor=GRACE, reason=reason
        )
        if cleared is not None:
            await self.narrator.tell(cleared, Cleared())
            await self.narrator.show(cleared)
        return cleared

    async def _held(self, incident: Incident) -> bool:
        """A target left in an unknown state by an earlier incident is not touched."""
        assert incident.plan is not None
        hold = await self.store.target_hold(incident.plan.target)
        if hold is None:
            return False
        reason = str(TargetHeld(hold.target.name, hold.incident_id))
        moved = await self.store.transition(
            incident.id, S.APPROVED, S.NEEDS_HUMAN, actor=GRACE, reason=reason
        )
        if moved is not None:
            await self.narrator.tell(moved, NeedsHuman(reason=reason, held=hold.target.name))
            await self.narrator.show(moved)
        return True

    async def _call(
        self,
        incident: Incident,
        fn: Callable[[], Awaitable[T]],
        *,
        deadline_s: float | None = None,
        breaker: bool = True,
    ) -> T:
        """Through the resilience layer; a breaker that opens or closes is told and audited."""
        assert incident.plan is not None

        async def on_change(change: BreakerChange) -> None:
            opened = change.state == "open"
            await self.store.audit(
                GRACE,
                "breaker.opened" if opened else "breaker.closed",
                incident_id=incident.id,
                detail={
                    "circuit": change.circuit,
                    "retry_at": change.retry_at.isoformat() if change.retry_at else None,
                    "cause": change.cause,
                },
            )
            event = BreakerChanged(
                circuit=change.circuit, opened=opened, retry_at=change.retry_at, cause=change.cause
            )
            await self.narrator.tell(incident, event)

        return await self.resilience.call(
            incident.plan.target, fn, deadline_s=deadline_s, on_change=on_change, breaker=breaker
        )

    async def _measure(self, executor: Executor, incident: Incident) -> list[float]:
        assert incident.plan is not None
        target = incident.plan.target
        return [
            await self._call(incident, functools.partial(executor.measure, b, target))
            for b in incident.plan.benchmarks
        ]

    async def _snapshot(self, executor: Executor, incident: Incident) -> Snapshot:
        assert incident.plan is not None
        target = incident.plan.target
        snapshot = await self._call(incident, lambda: executor.snapshot(target, incident.id))
        await self.store.add_snapshot(snapshot)
        await self.narrator.tell(incident, SnapshotTaken(snapshot=snapshot))
        return snapshot

    async def _steps(
        self, executor: Executor, incident: Incident, snapshots: list[Snapshot]
    ) -> None:
        """Each step gets a snapshot taken just before it, so rollback can undo
        the steps one by one, newest first."""
        assert incident.plan is not None
        target = incident.plan.target
        for step in incident.plan.steps:
            pause = await self.store.paused()
            if pause is not None:  # the running step finished; nothing new starts
                raise _Failed(f"GRACE was paused by {pause.by} before `{step.action}`")
            snapshot = await self._snapshot(executor, incident)
            snapshots.append(snapshot)
            started = time.monotonic()
            try:
                result = await self._call(
                    incident,
                    functools.partial(executor.run, step, target, snapshot),
                    deadline_s=step.timeout_s,
                )
            except _EXPECTED_FAILURES as exc:
                result = StepResult(
                    action=step.action,
                    ok=False,
                    detail=_failure_text(exc),
                    seconds=time.monotonic() - started,
                )
            await self.store.add_action(incident.id, result)
            await self.narrator.tell(incident, StepFinished(result=result))
            if not result.ok:
                raise _Failed(f"step `{step.action}` failed: {result.detail}")

    async def _verify(
        self, executor: Executor, incident: Incident, before: list[float]
    ) -> Verification:
        assert incident.plan is not None
        plan = incident.plan
        policy = self.resilience.policy(plan.target.executor)
        checks = [
            await self._call(
                incident,
                functools.partial(executor.check, c, plan.target),
                deadline_s=policy.deadline_s + _waits_s(executor, c),
            )
            for c in plan.checks
        ]
        after = await self._measure(executor, incident)
        verification = Verification(
            checks=tuple(checks),
            benchmarks=tuple(
                BenchmarkResult(
                    benchmark=b.benchmark,
                    before_s=b_before,
                    after_s=b_after,
                    tolerance=b.tolerance,
                )
                for b, b_before, b_after in zip(plan.benchmarks, before, after, strict=True)
            ),
        )
        await self.store.add_verification(incident.id, verification)
        await self.narrator.tell(incident, Verified(verification=verification))
        return verification

    async def _roll_back(
        self, executor: Executor, incident: Incident, snapshots: list[Snapshot], why: str
    ) -> Incident:
        """Restore every snapshot, newest first; a restore that fails means hands off."""
        newest_first = list(reversed(snapshots))
        for done, snapshot in enumerate(newest_first):
            try:
                # Past an open breaker: restoring is the one call that must be tried.
                await self._call(
                    incident,
                    functools.partial(executor.restore, snapshot),
                    deadline_s=self.resilience.policy(snapshot.target.executor).restore_deadline_s,
                    breaker=False,
                )
            except Exception as exc:
                log.exception("restore of %s failed", snapshot.location)
                error = f"{type(exc).__name__}: {exc}"
                held = await self._move(
                    incident, S.SAFE_HOLD, reason=f"{why}; restore failed: {error}"
                )
                event = RestoreFailed(
                    why=why,
                    error=error,
                    target=snapshot.target.name,
                    restored=tuple(newest_first[:done]),
                    not_restored=tuple(newest_first[done:]),
                )
                await self.narrator.tell(held, event)
                return held
        rolled = await self._move(incident, S.ROLLED_BACK, reason=why)
        await self.narrator.tell(rolled, RolledBack(why=why, restored=tuple(reversed(snapshots))))
        return rolled

    async def _learn(
        self, incident: Incident, plan: Plan, seconds: float, stages: dict[str, float]
    ) -> None:
        success = incident.state is S.RESOLVED
        approvals = sorted(
            (a for a in await self.store.approvals(incident.id) if a.decision is Decision.APPROVE),
            key=lambda a: a.at,
        )
        waited = (approvals[0].at - incident.created_at).total_seconds() if approvals else None
        stats = await self.store.record_outcome(
            Outcome(
                incident_id=incident.id,
                playbook_id=plan.playbook_id,
                success=success,
                seconds=seconds,
                final_state=incident.state,
                at=self.clock.now(),
                pattern_id=incident.diagnosis.pattern_id if incident.diagnosis else None,
                target_kind=plan.target.executor,
                target=plan.target.name,
                stages={name: round(took, 3) for name, took in stages.items()},
                approvers=tuple(a.user for a in approvals),
                approval_wait_s=None if waited is None else max(0.0, waited),
            )
        )
        await self.narrator.tell(incident, Learned(stats=stats, success=success))
        await self.earned.learned(incident, plan, stats, success=success)

    async def _move(
        self, incident: Incident, new: IncidentState, *, reason: str | None = None
    ) -> Incident:
        moved = await self.store.transition(
            incident.id, incident.state, new, actor=GRACE, reason=reason
        )
        if moved is None:
            # Only this task moves an executing incident, unless another replica took the run
            # over (this one's heartbeat went stale): it ended `interrupted`, its target held.
            # Either way, not a retry: stop here.
            raise RuntimeError(f"incident {incident.id} left {incident.state} behind our back")
        await self.narrator.show(moved)
        return moved


@contextlib.contextmanager
def _timed(stages: dict[str, float], name: str) -> Iterator[None]:
    """How long a stage took, recorded whether it finished or failed."""
    started = time.monotonic()
    try:
        yield
    finally:
        stages[name] = time.monotonic() - started


def _waits_s(executor: Executor, check: PlannedCheck) -> float:
    """How long a check waits for the target to settle, which its call gets on
    top of the deadline: read through its model, so a default counts too.

    A check its executor does not know, or params its model refuses (a plan
    stored before an upgrade), wait nothing here: the check's own call then
    fails with the executor's reason, recorded like any other failure.
    """
    model = executor.spec.checks.get(check.check)
    if model is None:
        return 0.0
    try:
        params = model.model_validate(check.params)
    except ValidationError:
        return 0.0
    return params.within_s if isinstance(params, WaitingParams) else 0.0


def _failure_text(exc: Exception) -> str:
    if isinstance(exc, TransientError):
        return f"still failing after every retry: {exc}"
    return str(exc)


def _failures(verification: Verification) -> str:
    failed = [f"{c.check} ({c.detail})" for c in verification.checks if not c.ok]
    failed += [
        f"{b.benchmark} slower: {b.before_s * 1000:.1f} ms -> {b.after_s * 1000:.1f} ms"
        for b in verification.benchmarks
        if not b.ok
    ]
    return "; ".join(failed)
