"""From an alert to a card: store it, then diagnose and plan a new incident and
present its plan; a repeat shows on the card, an all-clear ends what nobody acted on.

Intake is idempotent by delivery key and every move a compare-and-set, so a
Slack retry or a second replica opens nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from engine.execution import Execution
from engine.kill_switch import KillSwitch
from engine.models import GRACE, Alert, Incident, IncidentState, Intake
from engine.narration import Narrator
from engine.planner import Planner
from engine.ports import Clock, Store
from engine.proposal import Refused, TargetHeld
from engine.story import Approved, NeedsHuman, Planned

log = logging.getLogger(__name__)
S = IncidentState
# Nothing was done to the target in these states, so a cleared alert can end them.
_CLEARABLE = frozenset({S.OPEN, S.DIAGNOSED, S.AWAITING_APPROVAL, S.NEEDS_HUMAN})


@dataclass(frozen=True)
class Opening:
    store: Store
    narrator: Narrator
    planner: Planner
    execution: Execution
    kill_switch: KillSwitch
    clock: Clock
    expiry: Mapping[int, float]
    """Seconds a plan may wait for approval, per tier."""
    lock: Callable[[int], AbstractAsyncContextManager[object]]
    spawn: Callable[[Coroutine[Any, Any, Any]], None]

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
            await self.planner.propose(alert)
        except Refused as refusal:
            log.debug("a person's words lead to no plan: %s", refusal)
            return None
        intakes = await self.receive([alert], delivery_key)
        return next((i.incident for i in intakes if i.incident is not None), None)

    async def request_heal(
        self, playbook_id: str, target: str, *, user: str, channel: str, key: str | None = None
    ) -> Incident | str:
        """A person asks for a playbook by name: an incident like any other, whose
        requester never counts as a tier 3 approver. A str is why not.

        `key` is the request's own identity (Slack's trigger id): asked again with
        it, the request is not opened twice.
        """
        alert = self.planner.request(playbook_id, target, user, channel, key)
        if isinstance(alert, str):
            return alert
        try:
            await self.planner.propose(alert)
        except Refused as refusal:
            return str(refusal)
        intakes = await self.store.ingest_alerts([alert], delivery_key=alert.source_key)
        if not intakes or intakes[0].incident is None:
            return "This request was already handled; its incident has its card."
        [intake] = intakes
        assert intake.incident is not None and intake.opened, "a new request opens an incident"
        async with self.lock(intake.incident.id):
            await self.open(intake.incident)
        current = await self.store.get_incident(intake.incident.id)
        assert current is not None
        return current

    async def _follow_up(self, opened: list[Incident], seen: list[Intake]) -> None:
        for incident in opened:
            async with self.lock(incident.id):
                await self.open(incident)
        for intake in seen:
            assert intake.incident is not None
            async with self.lock(intake.incident.id):
                await self._seen_again(intake)

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

    async def open(self, incident: Incident) -> None:
        """Diagnose and plan a new incident, then post its card."""
        try:
            proposal = await self.planner.propose(incident.alert)
        except Refused as refusal:
            held = refusal.target if isinstance(refusal, TargetHeld) else None
            return await self._needs_human(incident, str(refusal), held)
        diagnosis, plan = proposal.diagnosis, proposal.plan
        diagnosed = await self.store.transition(
            incident.id, S.OPEN, S.DIAGNOSED, actor=GRACE, diagnosis=diagnosis, plan=plan
        )
        if diagnosed is not None:
            await self.present(diagnosed)

    async def present(self, incident: Incident) -> None:
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

    async def _needs_human(self, incident: Incident, reason: str, held: str | None) -> None:
        moved = await self.store.transition(
            incident.id, S.OPEN, S.NEEDS_HUMAN, actor=GRACE, reason=reason
        )
        if moved is not None:
            await self.narrator.post_card(moved)
            await self.narrator.tell(moved, NeedsHuman(reason=reason, held=held))
