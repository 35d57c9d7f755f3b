"""What GRACE would propose for an alert, at its playbook's current tier, touching nothing.

Opening an incident, a person's request by name, "Heal this" and a dry run all
ask here, so they propose the same plan and refuse the same things: a target
in safe hold is refused before anything else is stored or told.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.autonomy import effective
from engine.availability import Availabilities
from engine.catalog import Catalog
from engine.models import Alert, PlaybookStats
from engine.ports import Clock, Executor, Store
from engine.proposal import (
    MANUAL,
    DryRun,
    Proposal,
    Reading,
    Refused,
    TargetHeld,
    dry_run,
    for_people,
    manual_request,
    propose,
    read,
)


@dataclass(frozen=True)
class Planner:
    store: Store
    catalog: Catalog
    executors: Mapping[str, Executor]
    allowlists: Mapping[str, Sequence[str]]
    availabilities: Availabilities
    clock: Clock

    async def propose(self, alert: Alert) -> Proposal:
        """A plan for the alert, refused when its target is held."""
        proposal = await self._plan(alert)
        hold = await self.store.target_hold(proposal.plan.target)
        if hold is not None:
            raise TargetHeld(hold.target.name, hold.incident_id)
        return proposal

    async def read(self, alert: Alert) -> Reading:
        """How GRACE reads an alert and what it would propose, touching nothing."""
        reading = await read(alert, *self._inputs())
        if reading.proposal is None:
            return reading
        proposal = await self._at_current_tier(reading.proposal, alert)
        reading = dataclasses.replace(reading, proposal=proposal)
        hold = await self.store.target_hold(proposal.plan.target)
        if hold is None:
            return reading
        why = str(TargetHeld(hold.target.name, hold.incident_id))
        return dataclasses.replace(reading, proposal=None, refusal=why)

    def request(
        self, playbook_id: str, target: str, user: str, channel: str | None, key: str | None = None
    ) -> Alert | str:
        """A person's request for a playbook by name, as an alert; a str is why not."""
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

    async def dry_run_request(self, playbook_id: str, target: str, *, user: str) -> DryRun | str:
        """What a person's request by name would do, touching nothing and storing nothing."""
        alert = self.request(playbook_id, target, user, channel=None)
        if isinstance(alert, str):
            return alert
        try:
            proposal = await self._plan(alert)
        except Refused as refusal:
            return str(refusal)
        return dry_run(proposal.plan, self.executors)

    async def dry_run(self, incident_id: int) -> DryRun | str:
        """What approving this incident's plan would do, touching nothing."""
        incident = await self.store.get_incident(incident_id)
        if incident is None or incident.plan is None:
            return "This incident has no plan to dry-run."
        return dry_run(incident.plan, self.executors)

    async def _plan(self, alert: Alert) -> Proposal:
        proposal = await propose(alert, *self._inputs())
        return await self._at_current_tier(proposal, alert)

    def _inputs(self) -> tuple[Any, ...]:
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
