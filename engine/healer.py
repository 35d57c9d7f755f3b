"""The incident flows: an alert comes in, a plan is proposed, people decide.

Every entry point is safe to call twice: intake is idempotent by delivery key,
and every state change is a compare-and-set, so a Slack retry, a double click
or a second replica can never run a plan twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
import weakref
from collections.abc import Coroutine, Mapping, Sequence
from datetime import timedelta
from typing import Any

from engine.approval import ApprovalPolicy
from engine.autonomy import Autonomy, effective
from engine.availability import Availabilities, Readiness
from engine.catalog import Catalog
from engine.earned import EarnedAutonomy
from engine.execution import GRACE, Execution, hold_refusal
from engine.kill_switch import KillSwitch
from engine.models import (
    Alert,
    Approval,
    Decision,
    Incident,
    IncidentState,
    Intake,
    Pause,
    PlaybookStats,
)
from engine.narration import Narrator
from engine.ports import Clock, Directory, Executor, Notifier, Store
from engine.proposal import (
    MANUAL,
    DryRun,
    Proposal,
    Reading,
    Refused,
    dry_run,
    for_people,
    manual_request,
    propose,
    read,
)
from engine.recovery import Recovery
from engine.resilience import Resilience
from engine.story import (
    Approved,
    Expired,
    HoldCleared,
    NeedsHuman,
    Planned,
    Rejected,
    Reminder,
)

log = logging.getLogger(__name__)
S = IncidentState
# Seconds a plan may wait for approval, per tier (tier 1 only waits while paused).
DEFAULT_EXPIRY: Mapping[int, float] = {1: 1800.0, 2: 1800.0, 3: 3600.0}
# Nothing was done to the target in these states, so a cleared alert can end them.
_CLEARABLE = frozenset({S.OPEN, S.DIAGNOSED, S.AWAITING_APPROVAL, S.NEEDS_HUMAN})
ALREADY_DECIDED = "You have already decided on this plan."


class Healer:
    def __init__(
        self,
        *,
        store: Store,
        notifier: Notifier,
        executors: Mapping[str, Executor],
        catalog: Catalog,
        policy: ApprovalPolicy,
        directory: Directory,
        allowlists: Mapping[str, Sequence[str]],
        clock: Clock,
        admins: frozenset[str] = frozenset(),
        expiry: Mapping[int, float] = DEFAULT_EXPIRY,
        resilience: Resilience | None = None,
        autonomy: Autonomy | None = None,
    ) -> None:
        self.store = store
        self.directory = directory
        self.admins = admins
        self.expiry = expiry
        self.catalog = catalog
        self.policy = policy
        self.executors = executors
        self.allowlists = allowlists
        self.clock = clock
        self.availabilities = Availabilities(clock)
        self.narrator = Narrator(notifier)
        self.resilience = resilience or Resilience()
        self.earned = EarnedAutonomy(
            store,
            self.narrator,
            clock,
            autonomy or Autonomy(),
            {p.id: p.tier for p in catalog.playbooks},
            admins,
        )
        """Demotions, and the promotions it proposes and admins decide."""
        self.execution = Execution(
            store, self.narrator, executors, clock, self.earned, self.resilience
        )
        self.kill_switch = KillSwitch(
            store, self.narrator, clock, admins, lambda i: self.spawn(self.execution.run(i))
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        # Locks live while a follow-up holds or awaits them, then go.
        self._locks: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run work after Slack's ack, keeping a reference so it is neither
        garbage-collected mid-flight nor forgotten at shutdown."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background work failed", exc_info=task.exception())

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def receive(self, alerts: Sequence[Alert], delivery_key: str) -> list[Intake]:
        """Store a delivery's alerts; return once they are durable.

        Opening, updating and clearing their incidents follows in the
        background, so a webhook or a Slack event is answered after one commit.
        Returns one Intake per alert; [] for a repeated delivery.
        """
        intakes = await self.store.ingest_alerts(alerts, delivery_key)
        opened: list[Incident] = []
        seen: dict[int, Intake] = {}
        for intake in intakes:
            if intake.incident is None:
                continue
            if intake.opened:
                opened.append(intake.incident)
            else:
                seen[intake.incident.id] = intake  # the last word: the state after the delivery
        if opened or seen:
            self.spawn(self._follow_up(opened, list(seen.values())))
        return intakes

    async def answer_words(self, alert: Alert, delivery_key: str) -> Incident | None:
        """A person's own words: answered in their thread only when GRACE can
        propose a plan for what they name. Otherwise nothing is stored and
        nobody is disturbed: chatter in an alert channel is normal."""
        try:
            await self._propose(alert)
        except Refused as refusal:
            log.debug("a person's words lead to no plan: %s", refusal)
            return None
        intakes = await self.receive([alert], delivery_key)
        return next((i.incident for i in intakes if i.incident is not None), None)

    async def read(self, alert: Alert) -> Reading:
        """How GRACE reads an alert and what it would propose, touching nothing."""
        reading = await read(alert, *self._planning_inputs())
        if reading.proposal is None:
            return reading
        reading = dataclasses.replace(
            reading, proposal=await self._at_current_tier(reading.proposal, alert)
        )
        hold = await self.store.target_hold(reading.proposal.plan.target)
        if hold is None:
            return reading
        why = hold_refusal(hold.target.name, hold.incident_id)
        return dataclasses.replace(reading, proposal=None, refusal=why)

    async def _follow_up(self, opened: list[Incident], seen: list[Intake]) -> None:
        for incident in opened:
            async with self._lock(incident.id):
                await self._open(incident)
        for intake in seen:
            assert intake.incident is not None
            async with self._lock(intake.incident.id):
                await self._seen_again(intake)

    def _lock(self, incident_id: int) -> asyncio.Lock:
        """One follow-up at a time per incident, in arrival order, so an all-clear
        never overtakes the opening it should end."""
        lock = self._locks.get(incident_id)
        if lock is None:
            lock = self._locks[incident_id] = asyncio.Lock()
        return lock

    async def _seen_again(self, intake: Intake) -> None:
        """A repeat shows on the card; an all-clear ends what nobody has acted on yet."""
        assert intake.incident is not None
        incident = intake.incident
        if intake.all_clear:
            # The incident may have moved since its alert was stored: decide on it as it is now.
            current = await self.store.get_incident(incident.id)
            reason = "The alert resolved before GRACE acted."
            if (
                current is not None
                and current.state in _CLEARABLE
                and await self.execution.end_cleared(current, reason)
            ):
                return
        await self.narrator.show(incident)

    async def _open(self, incident: Incident) -> None:
        """Diagnose and plan a new incident, then post its card."""
        try:
            proposal = await self._propose(incident.alert)
        except Refused as refusal:
            return await self._needs_human(incident, str(refusal))
        diagnosis, plan = proposal.diagnosis, proposal.plan
        diagnosed = await self.store.transition(
            incident.id, S.OPEN, S.DIAGNOSED, actor=GRACE, diagnosis=diagnosis, plan=plan
        )
        if diagnosed is not None:
            await self._present(diagnosed)

    async def _present(self, incident: Incident) -> None:
        """A diagnosed incident waits for its approval, or (tier 1) runs; its card goes out."""
        diagnosis, plan = incident.diagnosis, incident.plan
        assert diagnosis is not None and plan is not None, "a diagnosed incident has a plan"
        # While paused even tier 1 waits for a person, so nothing starts behind the switch.
        heals_at_once = plan.tier == 1 and await self.store.paused() is None
        next_state = S.APPROVED if heals_at_once else S.AWAITING_APPROVAL
        deadline = remind_at = None
        if next_state is S.AWAITING_APPROVAL:
            window = timedelta(seconds=self.expiry[plan.tier])
            now = self.clock.now()
            deadline, remind_at = now + window, now + window / 2
        moved = await self.store.transition(
            incident.id,
            S.DIAGNOSED,
            next_state,
            actor=GRACE,
            deadline=deadline,
            remind_at=remind_at,
        )
        if moved is None:
            return
        await self.narrator.post_card(moved)
        await self.narrator.tell(moved, Planned(diagnosis=diagnosis, plan=plan))
        if next_state is S.APPROVED:
            await self.narrator.tell(moved, Approved(user=GRACE, automatic=True))
            self.spawn(self.execution.run(moved.id))
        elif (
            plan.tier == 1
            and not await self.store.paused()
            and await self.kill_switch.release(moved)
        ):
            # Resumed between the pause check and the move: the resume's sweep missed it.
            await self.narrator.show(moved)
            self.spawn(self.execution.run(moved.id))

    async def request_heal(
        self, playbook_id: str, target: str, *, user: str, channel: str, key: str | None = None
    ) -> Incident | str:
        """A person asks for a playbook by name: an incident like any other, whose
        requester never counts as a tier 3 approver. A str is why not.

        `key` is the request's own identity (Slack's trigger id): asked again with
        it, the request is not opened twice.
        """
        alert = self._request(playbook_id, target, user, channel, key)
        if isinstance(alert, str):
            return alert
        try:
            await self._propose(alert)
        except Refused as refusal:
            return str(refusal)
        intakes = await self.store.ingest_alerts([alert], delivery_key=alert.source_key)
        if not intakes or intakes[0].incident is None:
            return "This request was already handled; its incident has its card."
        [intake] = intakes
        assert intake.incident is not None and intake.opened, "a new request opens an incident"
        async with self._lock(intake.incident.id):
            await self._open(intake.incident)
        current = await self.store.get_incident(intake.incident.id)
        assert current is not None
        return current

    async def _propose(self, alert: Alert) -> Proposal:
        """A plan for the alert, refused when its target is held."""
        proposal = await self._plan(alert)
        hold = await self.store.target_hold(proposal.plan.target)
        if hold is not None:
            raise Refused(hold_refusal(hold.target.name, hold.incident_id))
        return proposal

    async def dry_run_request(self, playbook_id: str, target: str, *, user: str) -> DryRun | str:
        """What `/grace heal` would do, touching nothing and storing nothing."""
        alert = self._request(playbook_id, target, user, channel=None)
        if isinstance(alert, str):
            return alert
        try:
            proposal = await self._plan(alert)
        except Refused as refusal:
            return str(refusal)
        return dry_run(proposal.plan, self.executors)

    async def _plan(self, alert: Alert) -> Proposal:
        proposal = await propose(alert, *self._planning_inputs())
        return await self._at_current_tier(proposal, alert)

    def _planning_inputs(self) -> tuple[Any, ...]:
        """What proposing and reading an alert both consult, in their parameters' order."""
        return (
            self.catalog,
            self.executors,
            self.allowlists,
            self.availabilities.of,
            self._records,
        )

    async def _at_current_tier(self, proposal: Proposal, alert: Alert) -> Proposal:
        """A demoted or promoted playbook's plan asks for the approvals of its new
        tier; a person's words still wait for one."""
        change = (await self.store.playbook_tiers()).get(proposal.plan.playbook_id)
        plan = for_people(alert, effective(proposal.plan, change))
        return proposal if plan is proposal.plan else dataclasses.replace(proposal, plan=plan)

    async def _records(self, playbook_ids: Sequence[str]) -> dict[str, PlaybookStats]:
        """What the store learned of each playbook: competing playbooks are ranked by it."""
        return {i: await self.store.playbook_stats(i) for i in playbook_ids}

    async def dry_run(self, incident_id: int) -> DryRun | str:
        """What approving this incident's plan would do, touching nothing."""
        incident = await self.store.get_incident(incident_id)
        if incident is None or incident.plan is None:
            return "This incident has no plan to dry-run."
        return dry_run(incident.plan, self.executors)

    def _request(
        self, playbook_id: str, target: str, user: str, channel: str | None, key: str | None = None
    ) -> Alert | str:
        playbook = self.catalog.playbook(playbook_id)
        if playbook is None:
            known = ", ".join(p.id for p in self.catalog.playbooks)
            return f"There is no playbook `{playbook_id}`. Known: {known}."
        return Alert(
            source=MANUAL,
            source_key=f"{MANUAL}:{key or uuid.uuid4().hex}",
            name=playbook.id,
            labels=manual_request(playbook, target),
            channel=channel,
            reporter=user,
            received_at=self.clock.now(),
        )

    async def tick(self) -> None:
        """Remind approvers once, then expire what nobody decided on in time.

        Driven by the database, so a deadline that passed while GRACE was down
        expires at the first tick after it starts.
        """
        now = self.clock.now()
        for incident in await self.store.due_for_reminder(now):
            if incident.plan is None or incident.deadline is None:
                continue
            if await self.store.mark_reminded(incident.id):
                approvers = tuple(sorted(self.policy.allowed(incident.plan)))
                await self.narrator.tell(
                    incident, Reminder(deadline=incident.deadline, approvers=approvers)
                )
        for incident in await self.store.due_to_expire(now):
            async with self._lock(incident.id):
                await self._expire(incident)

    async def _expire(self, incident: Incident) -> None:
        assert incident.plan is not None
        window = self.expiry[incident.plan.tier]
        expired = await self.store.transition(
            incident.id,
            S.AWAITING_APPROVAL,
            S.EXPIRED,
            actor=GRACE,
            reason=f"No decision within {_duration(window)}; the plan will not run.",
        )
        if expired is not None:
            await self.narrator.tell(expired, Expired(after_s=window))
            await self.narrator.show(expired)

    async def pause(self, user: str, reason: str | None) -> str:
        """The kill switch, admins only (engine/kill_switch.py)."""
        return await self.kill_switch.pause(user, reason)

    async def resume(self, user: str) -> str:
        """Lift the kill switch; the approved plans that waited behind it run."""
        return await self.kill_switch.resume(user)

    async def recover(self) -> list[Incident]:
        """At start-up, every incident goes on from where it was left (engine/recovery.py);
        the runs a stop cut short, which end `interrupted`."""
        recovery = Recovery(
            store=self.store,
            narrator=self.narrator,
            lock=self._lock,
            open_incident=self._open,
            present=self._present,
        )
        interrupted = await recovery.run()
        await self.earned.resume()
        return interrupted

    async def clear_target(self, user: str, name: str) -> str:
        """A person vouches for a target, admins only: its holds are lifted and the
        safe-hold or interrupted incidents on it end `cleared`, which releases
        their alert groups, so the next alert opens an incident GRACE may heal."""
        if user not in self.admins:
            await self.store.audit(user, "clear.refused", detail={"target": name})
            return "Only GRACE's admins may clear a target in safe hold."
        lifted = await self.store.clear_holds(name, actor=user)
        stuck = [
            incident
            for incident in await self.store.incidents_in([S.SAFE_HOLD, S.INTERRUPTED])
            if incident.plan is not None and incident.plan.target.name == name
        ]
        if not lifted and not stuck:
            held = ", ".join(f"`{h.target.name}`" for h in await self.store.holds()) or "none"
            return f"`{name}` is not in safe hold. Held targets: {held}."
        closed: list[int] = []
        for incident in stuck:
            moved = await self.store.transition(
                incident.id, incident.state, S.CLEARED, actor=user, reason=f"cleared by {user}"
            )
            if moved is not None:
                closed.append(moved.id)
                await self.narrator.tell(moved, HoldCleared(user=user, target=name))
                await self.narrator.show(moved)
        ended = sorted({h.incident_id for h in lifted} | set(closed))
        incidents = ", ".join(f"#{n}" for n in ended)
        return f"`{name}` is cleared (incident {incidents}); GRACE may act on it again."

    async def readiness(self) -> Readiness:
        """What can act now. Executors answer from the planner's short-lived cache:
        a burst of `/grace status` must not probe Docker or a file system each time."""
        return Readiness(
            executors=await self.availabilities.survey(self.executors),
            open_breakers=await self.resilience.open_breakers(),
            holds=tuple(await self.store.holds()),
        )

    async def decide(
        self,
        *,
        incident_id: int,
        plan_hash: str,
        user: str,
        decision: Decision,
        channel: str,
        reason: str | None = None,
    ) -> None:
        """Apply one person's Approve or Reject; answers them privately when refused.

        One decision at a time per incident, so a double click is answered in order.
        Safe to run twice for one click: the inbox hands a click over again when
        GRACE stopped half-way through it, and what its first run recorded is
        carried out now (the compare-and-set moves the incident once).
        """
        async with self._lock(incident_id):
            answer = await self._decide(incident_id, plan_hash, user, decision, reason)
        if answer is not None:
            await self.narrator.tell_user(channel, user, answer)

    async def _decide(
        self, incident_id: int, plan_hash: str, user: str, decision: Decision, reason: str | None
    ) -> str | None:
        """What to answer the person privately, if anything."""
        incident = await self.store.get_incident(incident_id)
        refusal = await self._refusal(incident, plan_hash, user, decision)
        if refusal is not None:
            await self.store.audit(
                user,
                "approval.refused",
                incident_id=incident_id,
                detail={"decision": decision.value, "why": refusal, "plan_hash": plan_hash},
            )
            return refusal
        assert incident is not None and incident.plan is not None
        approval = Approval(
            incident_id=incident_id,
            user=user,
            plan_hash=plan_hash,
            decision=decision,
            at=self.clock.now(),
            reason=reason,
        )
        recorded = await self.store.add_approval(approval)
        approvals = await self.store.approvals(incident_id)
        # Not recorded now but stored alike: this click's own earlier run, cut short.
        resumed = not recorded and any(_alike(a, approval) for a in approvals)
        if not (recorded or resumed):
            return ALREADY_DECIDED
        if decision is Decision.REJECT:
            await self._reject(incident, user, reason)
            return None
        if not self.policy.satisfied(incident.plan, approvals):
            if not recorded:
                return ALREADY_DECIDED
            pause = await self.store.paused()
            return _waits_for_resume(pause) if pause is not None else None
        approved = await self.store.transition(
            incident_id, S.AWAITING_APPROVAL, S.APPROVED, actor=user
        )
        if approved is None:
            return "Someone else decided on this plan first."
        # Read after the move: a resume that came between missed nothing, it saw APPROVED.
        pause = await self.store.paused()
        await self.narrator.tell(approved, Approved(user=user, waits=pause is not None))
        await self.narrator.show(approved)
        if pause is not None:
            return _waits_for_resume(pause)
        self.spawn(self.execution.run(incident_id))
        return None

    async def _refusal(
        self, incident: Incident | None, plan_hash: str, user: str, decision: Decision
    ) -> str | None:
        if incident is None or incident.plan is None:
            return "This incident is unknown to GRACE."
        if incident.state is not S.AWAITING_APPROVAL:
            return f"This incident is already {incident.state.value.replace('_', ' ')}."
        if incident.plan.hash != plan_hash:
            return "The plan changed since this card was posted; approve the current plan instead."
        return await self.policy.refusal(
            incident.plan, user, incident.alert.reporter, self.directory
        )

    async def _reject(self, incident: Incident, user: str, reason: str | None) -> None:
        rejected = await self.store.transition(
            incident.id, S.AWAITING_APPROVAL, S.REJECTED, actor=user, reason=reason
        )
        if rejected is None:
            return
        await self.narrator.tell(rejected, Rejected(user=user, reason=reason))
        await self.narrator.show(rejected)

    async def _needs_human(self, incident: Incident, reason: str) -> None:
        moved = await self.store.transition(
            incident.id, S.OPEN, S.NEEDS_HUMAN, actor=GRACE, reason=reason
        )
        if moved is not None:
            await self.narrator.post_card(moved)
            await self.narrator.tell(moved, NeedsHuman(reason=reason))


def _alike(stored: Approval, new: Approval) -> bool:
    """The same person's same decision on the same plan."""
    same = (new.user, new.decision, new.plan_hash)
    return (stored.user, stored.decision, stored.plan_hash) == same


def _waits_for_resume(pause: Pause) -> str:
    why = f": {pause.reason}" if pause.reason else ""
    return (
        f"Your approval is recorded and counts. GRACE is paused by <@{pause.by}>{why}; "
        "nothing runs until `/grace resume`, and the plan is checked again then."
    )


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"
