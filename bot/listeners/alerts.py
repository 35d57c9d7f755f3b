"""Messages in alert channels become alerts.

Bolt acks events before this runs, so parsing and storing never delay Slack;
its self-events middleware drops GRACE's own messages before they get here.
A person's own words are stored only when they lead to a plan, and answered
in their thread; an integration's alert always opens or joins an incident.
"""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.metrics import Metrics
from engine.healer import Healer
from engine.intake.slack import parse_slack_message
from engine.intake.slack_people import PERSON
from engine.ports import Clock

# Edits, deletions, joins and the like are not new alerts.
_ALERT_SUBTYPES = {None, "bot_message"}


def register(
    app: AsyncApp, healer: Healer, alert_channels: frozenset[str], clock: Clock, metrics: Metrics
) -> None:
    @app.event("message")
    async def on_message(event: dict[str, Any], body: dict[str, Any]) -> None:
        channel = event.get("channel")
        if channel not in alert_channels or event.get("subtype") not in _ALERT_SUBTYPES:
            return
        alert = parse_slack_message(event, channel=channel, received_at=clock.now())
        if alert is None:
            return
        delivery_key = str(body.get("event_id") or alert.source_key)
        if alert.labels.get("integration") == PERSON:
            if await healer.answer_words(alert, delivery_key) is not None:
                metrics.alerts("slack", 1)
        elif await healer.receive([alert], delivery_key):
            metrics.alerts("slack", 1)
