"""Running an approved plan: snapshot, steps, verification, rollback, learning.

Each state change is a compare-and-set, so only the caller that moved the
incident from `approved` to `executing` ever touches the target.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from engine.models import (
    BenchmarkResult,
    Incident,
    IncidentState,
    Outcome,
    Plan,
    Snapshot,
    StepResult,
    Verification,
)
from engine.narration import Narrator
from engine.ports import Clock, Executor, Store
from engine.story import (
    Cleared,
    Held,
    Learned,
    RestoreFailed,
    RolledBack,
    SnapshotTaken,
    StepFinished,
    Verified,
)

log = logging.getLogger(__name__)

GRACE = "grace"
S = IncidentState


class _Failed(Exception):
    """The plan could not be carried out; the message says why, for the thread."""


@dataclass(frozen=True)
class Execution:
    store: Store
    narrator: Narrator
    executors: Mapping[str, Executor]
    clock: Clock

    async def run(self, incident_id: int) -> Incident | None:
        """Carry out the plan of an approved incident; None when it does not start.

        Re-checked immediately before anything is touched: still approved (and
        not started by someone else), GRACE not paused, the alert still firing.
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
        incident = await self.store.transition(incident_id, S.APPROVED, S.EXECUTING, actor=GRACE)
        if incident is None:
            return None
        await self.narrator.show(incident)
        assert incident.plan is not None, "an approved incident always has a plan"
        plan = incident.plan
        executor = self.executors[plan.target.executor]
        started = time.monotonic()
        snapshots: list[Snapshot] = []
        try:
            before = await self._measure(executor, plan)
            await self._steps(executor, incident, snapshots)
            incident = await self._move(incident, S.VERIFYING)
            verification = await self._verify(executor, incident, before)
            if verification.ok:
                incident = await self._move(incident, S.RESOLVED)
            else:
                raise _Failed(f"verification failed: {_failures(verification)}")
        except Exception as exc:
            why = str(exc) if isinstance(exc, _Failed) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, _Failed):
                log.exception("incident %s failed while executing", incident.id)
            incident = await self._roll_back(executor, incident, snapshots, why)
        await self._learn(incident, plan, time.monotonic() - started)
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

    async def _measure(self, executor: Executor, plan: Plan) -> list[float]:
        return [await executor.measure(b, plan.target) for b in plan.benchmarks]

    async def _snapshot(self, executor: Executor, incident: Incident) -> Snapshot:
        assert incident.plan is not None
        snapshot = await executor.snapshot(incident.plan.target, incident.id)
        await self.store.add_snapshot(snapshot)
        await self.narrator.tell(incident, SnapshotTaken(snapshot=snapshot))
        return snapshot

    async def _steps(
        self, executor: Executor, incident: Incident, snapshots: list[Snapshot]
    ) -> None:
        """Each step gets a snapshot taken just before it, so rollback can undo
        the steps one by one, newest first."""
        assert incident.plan is not None
        for step in incident.plan.steps:
            pause = await self.store.paused()
            if pause is not None:  # the running step finished; nothing new starts
                raise _Failed(f"GRACE was paused by {pause.by} before `{step.action}`")
            snapshot = await self._snapshot(executor, incident)
            snapshots.append(snapshot)
            started = time.monotonic()
            try:
                async with asyncio.timeout(step.timeout_s):
                    result = await executor.run(step, incident.plan.target, snapshot)
            except TimeoutError:
                result = StepResult(
                    action=step.action,
                    ok=False,
                    detail=f"timed out after {step.timeout_s:g} s",
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
        checks = [await executor.check(c, plan.target) for c in plan.checks]
        after = await self._measure(executor, plan)
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
        for snapshot in reversed(snapshots):
            try:
                await executor.restore(snapshot)
            except Exception as exc:
                log.exception("restore of %s failed", snapshot.location)
                error = f"{type(exc).__name__}: {exc}"
                held = await self._move(
                    incident, S.SAFE_HOLD, reason=f"{why}; restore failed: {error}"
                )
                await self.narrator.tell(held, RestoreFailed(why=why, error=error))
                return held
        rolled = await self._move(incident, S.ROLLED_BACK, reason=why)
        await self.narrator.tell(rolled, RolledBack(why=why, restored=tuple(reversed(snapshots))))
        return rolled

    async def _learn(self, incident: Incident, plan: Plan, seconds: float) -> None:
        success = incident.state is S.RESOLVED
        stats = await self.store.record_outcome(
            Outcome(
                incident_id=incident.id,
                playbook_id=plan.playbook_id,
                success=success,
                seconds=seconds,
                final_state=incident.state,
                at=self.clock.now(),
            )
        )
        await self.narrator.tell(incident, Learned(stats=stats, success=success))

    async def _move(
        self, incident: Incident, new: IncidentState, *, reason: str | None = None
    ) -> Incident:
        moved = await self.store.transition(
            incident.id, incident.state, new, actor=GRACE, reason=reason
        )
        if moved is None:
            # Only this task moves an executing incident; losing the race is a bug, not a retry.
            raise RuntimeError(f"incident {incident.id} left {incident.state} behind our back")
        await self.narrator.show(moved)
        return moved


def _failures(verification: Verification) -> str:
    failed = [f"{c.check} ({c.detail})" for c in verification.checks if not c.ok]
    failed += [
        f"{b.benchmark} slower: {b.before_s * 1000:.1f} ms -> {b.after_s * 1000:.1f} ms"
        for b in verification.benchmarks
        if not b.ok
    ]
    return "; ".join(failed)
