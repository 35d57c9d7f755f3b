"""A plan waits for its approval only so long: approvers are reminded once, then it expires.

Driven by the database at each tick, so a deadline that passed while GRACE was
down expires at the first tick after it starts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from engine.approval import ApprovalPolicy
from engine.models import GRACE, Incident, IncidentState
from engine.narration import Narrator
from engine.ports import Clock, Store
from engine.story import Expired, Reminder

S = IncidentState
# Seconds a plan may wait for approval, per tier (tier 1 only waits while paused).
DEFAULT_EXPIRY: Mapping[int, float] = {1: 1800.0, 2: 1800.0, 3: 3600.0}


@dataclass(frozen=True)
class Expiry:
    store: Store
    narrator: Narrator
    policy: ApprovalPolicy
    clock: Clock
    lock: Callable[[int], AbstractAsyncContextManager[object]]
    expiry: Mapping[int, float]
    """Seconds a plan may wait for approval, per tier."""

    async def tick(self) -> None:
        """Remind approvers once, then expire what nobody decided on in time."""
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
            async with self.lock(incident.id):
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


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"
