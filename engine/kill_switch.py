"""The kill switch: admins pause GRACE, and everyone sees it.

While paused nothing new runs, tier 1 included; approvals are still taken and
count once GRACE is resumed (every plan is checked again just before it
runs), and a tier 1 plan that waited runs then as it would have at once.
Pausing and resuming are announced in every alert channel, and every card a
person may be looking at gains or loses the banner at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from engine.models import GRACE, Incident, IncidentState, Pause
from engine.narration import Narrator
from engine.ports import Clock, Store
from engine.recovery import SHOWN
from engine.story import Approved, Paused, Resumed

S = IncidentState


@dataclass(frozen=True)
class KillSwitch:
    store: Store
    narrator: Narrator
    clock: Clock
    admins: frozenset[str]
    run: Callable[[int], None]
    """Starts an approved plan (after the caller's answer)."""

    async def pause(self, user: str, reason: str | None) -> str:
        if user not in self.admins:
            await self.store.audit(user, "pause.refused", detail={"reason": reason})
            return "Only GRACE's admins may pause it."
        pause = Pause(by=user, reason=reason, at=self.clock.now())
        await self.store.set_pause(pause, actor=user)
        await self.narrator.announce(Paused(pause=pause))
        await self._show_every_card()
        return (
            "GRACE is paused: nothing new will run. Steps already running finish their "
            "current call. Every alert channel was told."
        )

    async def resume(self, user: str) -> str:
        if user not in self.admins:
            await self.store.audit(user, "resume.refused")
            return "Only GRACE's admins may resume it."
        if await self.store.paused() is None:
            return "GRACE is not paused."
        await self.store.set_pause(None, actor=user)
        waiting = [i.id for i in await self.store.incidents_in([S.APPROVED])]
        for incident in await self.store.incidents_in([S.AWAITING_APPROVAL]):
            if await self.release(incident):
                waiting.append(incident.id)
        await self.narrator.announce(Resumed(user=user, waiting=len(waiting)))
        await self._show_every_card()
        for incident_id in waiting:
            self.run(incident_id)
        return f"GRACE resumed; {len(waiting)} approved plan(s) that waited will now run."

    async def release(self, incident: Incident) -> bool:
        """A tier 1 plan that waited only for the pause is approved as it would have
        been at once; True when this moved it (it is the caller's to run)."""
        if incident.plan is None or incident.plan.tier != 1:
            return False
        approved = await self.store.transition(
            incident.id, S.AWAITING_APPROVAL, S.APPROVED, actor=GRACE
        )
        if approved is None:
            return False
        await self.narrator.tell(approved, Approved(user=GRACE, automatic=True))
        return True

    async def _show_every_card(self) -> None:
        """Cards render the pause when sent: an update of each gains or drops the banner."""
        for incident in await self.store.incidents_in(SHOWN):
            await self.narrator.show(incident)
