"""The engine's Notifier: every Slack write is stored in the outbox first.

The outbox worker delivers them; the engine never waits on Slack, and a Slack
outage or a restart delays what it says without losing a word of it. In a
storm (bot/storm.py) an incident may be shown as a line of its channel's
rollup instead of a card: then its changes redraw the rollup, and its thread
lines wait in the database, told as its story when it gets a card (someone
must act on it, or asked for it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bot.blocks import story_text
from bot.outbox import OutboxWorker
from bot.promotion import proposal_message
from bot.reports import story_answer
from bot.storm import NEEDS_SOMEONE, URGENT, Storms, card_priority, story_priority
from engine.api import PromotionProposed, StoryEvent
from engine.models import Incident
from engine.storage_ports import CardStore


class OutboxNotifier:
    def __init__(
        self,
        store: CardStore,
        outbox: OutboxWorker,
        channels: Sequence[str] = (),
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.storms = Storms(outbox.rate, outbox.burst)
        self.channels = tuple(dict.fromkeys(channels))
        """Where notices go: every alert channel, and the default channel."""
        self.on_change = on_change
        """Called when an incident or the pause changed: views that show them redraw."""
        self._rolled: dict[int, int] | None = None
        """Incidents shown only as rollup lines, and their rollup: asked on every word
        said about an incident, so kept here (read from the database once)."""

    async def announce(self, event: StoryEvent) -> None:
        text = story_text(event)
        for channel in self.channels:
            await self.store.enqueue(channel, "notice", {"text": text}, priority=URGENT)
        self.outbox.wake()
        self.on_change()

    async def propose_promotion(self, event: PromotionProposed) -> None:
        """A message of its own in the incident's channel: a notice with buttons.
        Once per proposal: it is asked again at every start (see EarnedAutonomy.resume)."""
        proposal = event.proposal
        message = proposal_message(proposal)
        key = f"proposal:{proposal.id}"
        await self.store.enqueue(proposal.channel, "notice", message, coalesce_key=key, once=True)
        self.outbox.wake()

    async def redraw(self, channel: str, ts: str, message: Mapping[str, Any]) -> None:
        """A message GRACE posted, drawn again in place (`message`: its text and blocks);
        queued behind the channel's notices, so never before the message itself."""
        await self.store.enqueue(channel, "update", {"ts": ts, **message})
        self.outbox.wake()

    async def post_card(self, incident: Incident) -> None:
        """Its card, or (in a storm, when nobody needs to act on it) a rollup line."""
        if incident.channel is None:
            raise ValueError(f"incident {incident.id} has no channel to speak in")
        rolled = await self._rolled_up()
        placed = await self.store.place_card(
            incident,
            priority=card_priority(incident),
            needs_someone=incident.state in NEEDS_SOMEONE,
            rule=self.storms.rule(self.outbox.clock.now()),
        )
        if placed.rollup is not None:
            rolled.update(dict.fromkeys(placed.joined, placed.rollup))
            self.outbox.refresh_queued(f"rollup:{placed.rollup}")
        self.outbox.wake()
        self.on_change()

    async def post_card_once(self, incident: Incident) -> bool:
        if incident.id in await self._rolled_up() or await self.store.card_queued(incident.id):
            return False
        await self.post_card(incident)
        return True

    async def show_card(self, incident: Incident) -> bool:
        """A card of its own for an incident shown in a rollup, its story so far under
        it; False when it has one already."""
        story = await self.store.incident_story(incident.id)
        if story is None:
            return False
        told = story_answer(story, team_domain="")
        text = f"*The story so far* (shown in the channel's rollup until now)\n{told}"
        promoted = await self.store.promote(
            incident.id,
            priority=card_priority(incident),
            story_priority=story_priority(incident),
            story_text=text,
        )
        (await self._rolled_up()).pop(incident.id, None)
        self.outbox.wake()
        self.on_change()
        return promoted

    async def update_card(self, incident: Incident) -> None:
        rollup = (await self._rolled_up()).get(incident.id)
        if rollup is not None:
            await self._update_rollup(incident, rollup)
            return
        # Cards render when sent, so one waiting update shows every change before it.
        if await self.outbox.refresh_waiting(f"card:{incident.id}"):
            self.on_change()
            return
        queued = await self._enqueue(
            incident,
            "update_card",
            {},
            coalesce_key=f"card:{incident.id}",
            priority=card_priority(incident),
        )
        if not queued:  # its queued card joined a rollup just now
            self._rolled = None
            await self.update_card(incident)
            return
        self.outbox.refresh_queued(f"card:{incident.id}")
        self.on_change()

    async def _update_rollup(self, incident: Incident, rollup: int) -> None:
        """Someone must act now: its own card. Else its line: one waiting write of
        the rollup renders it when sent, so it shows this change too."""
        if incident.state in NEEDS_SOMEONE:
            await self.show_card(incident)
        elif not await self.outbox.refresh_waiting(f"rollup:{rollup}"):
            await self.store.refresh_rollup_of(incident.id)
            self.outbox.refresh_queued(f"rollup:{rollup}")
            self.outbox.wake()
        self.on_change()

    async def _rolled_up(self) -> dict[int, int]:
        if self._rolled is None:
            self._rolled = await self.store.rolled_up_incidents()
        return self._rolled

    async def tell_thread(self, incident: Incident, event: StoryEvent) -> None:
        if incident.id in await self._rolled_up():
            return  # told from the records as its story, if it ever gets a card
        await self._enqueue(
            incident, "thread", {"text": story_text(event)}, priority=story_priority(incident)
        )

    async def tell_user(self, channel: str, user: str, text: str) -> None:
        """Stored before it is sent, in the person's own lane (never behind a story);
        the same answer to them, not yet delivered, is that row, so a burst of one
        click is answered once."""
        await self.store.enqueue(channel, "ephemeral", {"text": text}, user_id=user)
        self.outbox.wake()

    async def tell_once(self, incident: Incident, event: StoryEvent, key: str) -> None:
        if incident.id in await self._rolled_up():
            return
        await self._enqueue(
            incident,
            "thread",
            {"text": story_text(event)},
            f"once:{key}",
            once=True,
            priority=story_priority(incident),
        )

    async def _enqueue(
        self,
        incident: Incident,
        kind: str,
        payload: Mapping[str, Any],
        coalesce_key: str | None = None,
        *,
        once: bool = False,
        priority: int,
    ) -> bool:
        """Queued, unless its incident is (by now) shown only as a rollup line: the
        check is made where the write is, so a card joining a rollup meanwhile counts."""
        if incident.channel is None:
            raise ValueError(f"incident {incident.id} has no channel to speak in")
        queued = await self.store.enqueue(
            incident.channel,
            kind,
            payload,
            incident_id=incident.id,
            coalesce_key=coalesce_key,
            once=once,
            priority=priority,
            unless_rolled_up=True,
        )
        self.outbox.wake()
        return queued is not None
