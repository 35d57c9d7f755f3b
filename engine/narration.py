"""Telling Slack what happened without letting Slack decide what happens.

A failed Slack call must never stop a heal half-way (the snapshot is taken,
the step has run: verification must still happen), so narration errors are
logged and swallowed here, in one place.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from engine.models import Incident
from engine.ports import Notifier
from engine.story import PromotionProposed, StoryEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Narrator:
    notifier: Notifier

    async def post_card(self, incident: Incident) -> None:
        try:
            await self.notifier.post_card(incident)
        except Exception:
            log.exception("could not post the card of incident %s", incident.id)

    async def post_card_once(self, incident: Incident) -> bool:
        """Post the card unless it was ever queued; True when it is posted now."""
        try:
            return await self.notifier.post_card_once(incident)
        except Exception:
            log.exception("could not post the owed card of incident %s", incident.id)
            return False

    async def show(self, incident: Incident) -> None:
        try:
            await self.notifier.update_card(incident)
        except Exception:
            log.exception("could not update the card of incident %s", incident.id)

    async def tell(self, incident: Incident, event: StoryEvent) -> None:
        try:
            await self.notifier.tell_thread(incident, event)
        except Exception:
            log.exception("could not tell incident %s: %s", incident.id, type(event).__name__)

    async def tell_once(self, incident: Incident, event: StoryEvent, key: str) -> None:
        try:
            await self.notifier.tell_once(incident, event, key)
        except Exception:
            log.exception("could not tell incident %s: %s", incident.id, type(event).__name__)

    async def announce(self, event: StoryEvent) -> None:
        try:
            await self.notifier.announce(event)
        except Exception:
            log.exception("could not announce %s", type(event).__name__)

    async def propose_promotion(self, event: PromotionProposed) -> None:
        try:
            await self.notifier.propose_promotion(event)
        except Exception:
            log.exception("could not propose promoting %s", event.proposal.playbook_id)

    async def tell_user(self, channel: str, user: str, text: str) -> None:
        try:
            await self.notifier.tell_user(channel, user, text)
        except Exception:
            log.exception("could not answer %s in %s", user, channel)
