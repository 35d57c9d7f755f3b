"""What the outbox sends for a row, rendered from the database when it is sent.

A card is drawn as the incident is now, so a coalesced update shows every
change before it; a rollup as its incidents are now. A row whose message can
never be drawn (its incident or card gone, Slack's block rules broken) is
`Refused`: the worker drops it rather than trying again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackObjectFormationError

from bot.cards import CardReader, card_message
from bot.rollup import rollup_message
from engine.models import Incident
from engine.records import OutboxItem, Rollup
from engine.storage_ports import CardStore


class Refused(Exception):
    """Slack (or the message itself) refuses this write for good; retrying cannot help."""


@dataclass(frozen=True)
class Render:
    """chat.postMessage's and chat.update's arguments for an outbox row."""

    store: CardStore
    cards: CardReader

    async def message(self, item: OutboxItem) -> dict[str, Any]:
        """chat.postMessage's arguments for a card, a thread reply or a notice."""
        if item.kind == "notice":  # text, and blocks when it asks something (buttons)
            return {"channel": item.channel, **item.payload}
        if item.kind == "rollup":
            return {"channel": item.channel, **rendered(rollup_message, await self.rollup(item))}
        assert item.incident_id is not None
        if item.kind == "post_card":
            incident = await self.store.get_incident(item.incident_id)
            if incident is None:
                raise Refused(f"incident {item.incident_id} does not exist")
            # A person's words are answered in their thread; an alert gets a card of its own.
            return {
                "channel": item.channel,
                **await self.card(incident),
                "thread_ts": incident.alert.thread_ts,
            }
        card = await self.store.card_of(item.incident_id)
        if card is None:
            raise Refused(f"the card of incident {item.incident_id} was never posted")
        return {"channel": card.channel, "thread_ts": card.story_ts, "text": item.payload["text"]}

    async def card_update(self, item: OutboxItem) -> tuple[str, str, dict[str, Any]]:
        """chat.update's channel, ts, text and blocks for an incident's card."""
        assert item.incident_id is not None
        card = await self.store.card_of(item.incident_id)
        incident = await self.store.get_incident(item.incident_id)
        if card is None or incident is None:
            raise Refused(f"the card of incident {item.incident_id} was never posted")
        return card.channel, card.ts, await self.card(incident)

    async def card(self, incident: Incident) -> dict[str, Any]:
        """The card as it is true now: its text and blocks."""
        facts = await self.cards.facts(incident)
        return rendered(card_message, incident, facts)

    async def rollup(self, item: OutboxItem) -> Rollup:
        rollup = await self.store.rollup(int(item.payload["rollup"]))
        if rollup is None:
            raise Refused(f"rollup {item.payload['rollup']} does not exist")
        return rollup


def rendered(render: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """A message's text and blocks; one that breaks Slack's rules is refused here."""
    try:
        return render(*args)
    except SlackObjectFormationError as exc:
        raise Refused(f"the message breaks Slack's block rules: {exc}") from None
