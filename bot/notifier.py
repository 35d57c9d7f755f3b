"""The engine's Notifier: every Slack write is stored in the outbox first.

The outbox worker delivers them; the engine never waits on Slack, and a Slack
outage or a restart delays what it says without losing a word of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bot.blocks import story_text
from bot.outbox import OutboxWorker
from engine.models import Incident
from engine.story import StoryEvent
from storage.store import SqliteStore


class OutboxNotifier:
    def __init__(
        self, store: SqliteStore, outbox: OutboxWorker, channels: Sequence[str] = ()
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.channels = tuple(dict.fromkeys(channels))
        """Where notices go: every alert channel, and the default channel."""

    async def announce(self, event: StoryEvent) -> None:
        text = story_text(event)
        for channel in self.channels:
            await self.store.enqueue(channel, "notice", {"text": text})
        self.outbox.wake()

    async def post_card(self, incident: Incident) -> None:
        await self._enqueue(incident, "post_card", {})

    async def post_card_once(self, incident: Incident) -> bool:
        if await self.store.card_queued(incident.id):
            return False
        await self.post_card(incident)
        return True

    async def update_card(self, incident: Incident) -> None:
        # Cards render when sent, so one waiting update shows every change before it.
        if self.outbox.refresh_waiting(incident.id):
            return
        await self._enqueue(incident, "update_card", {}, coalesce_key=f"card:{incident.id}")
        self.outbox.refresh_queued(incident.id)

    async def tell_thread(self, incident: Incident, event: StoryEvent) -> None:
        await self._enqueue(incident, "thread", {"text": story_text(event)})

    async def tell_user(self, channel: str, user: str, text: str) -> None:
        """Stored before it is sent, in the person's own lane (never behind a story);
        the same answer to them, not yet delivered, is that row, so a burst of one
        click is answered once."""
        await self.store.enqueue(channel, "ephemeral", {"text": text}, user_id=user)
        self.outbox.wake()

    async def tell_once(self, incident: Incident, event: StoryEvent, key: str) -> None:
        await self._enqueue(incident, "thread", {"text": story_text(event)}, f"once:{key}", True)

    async def _enqueue(
        self,
        incident: Incident,
        kind: str,
        payload: Mapping[str, Any],
        coalesce_key: str | None = None,
        once: bool = False,
    ) -> None:
        if incident.channel is None:
            raise ValueError(f"incident {incident.id} has no channel to speak in")
        await self.store.enqueue(
            incident.channel,
            kind,
            payload,
            incident_id=incident.id,
            coalesce_key=coalesce_key,
            once=once,
        )
        self.outbox.wake()
