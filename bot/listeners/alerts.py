"""Messages in alert channels become alerts.

The alert is committed to the inbox (bot/inbox.py) before Bolt answers the
event, so an alert Slack delivered is never lost to a crash after the answer;
it is read again and handled after the answer. Bolt's self-events middleware
drops GRACE's own messages before they get here. A person's own words are
stored as an incident only when they lead to a plan, and answered in their
thread; an integration's alert always opens or joins an incident.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse

from bot.ids import slack_id
from bot.inbox import Inbox
from bot.listeners.errors import refuse
from bot.metrics import Metrics
from engine.api import PERSON, Healer, parse_slack_message, storable, storable_json
from engine.ports import Clock

KIND = "message"

# Edits, deletions, joins and the like are not new alerts.
_ALERT_SUBTYPES = {None, "bot_message"}


def register(
    app: AsyncApp,
    healer: Healer,
    inbox: Inbox,
    alert_channels: frozenset[str],
    clock: Clock,
    metrics: Metrics,
) -> None:
    @app.event("message")
    async def on_message(event: dict[str, Any], body: dict[str, Any]) -> BoltResponse | None:
        channel = event.get("channel")
        if not isinstance(channel, str) or channel not in alert_channels:
            return None
        if event.get("subtype") not in _ALERT_SUBTYPES:
            return None
        # What becomes a reply's thread, a mention of who posted, a stored key: Slack's shapes.
        if (
            slack_id("ts", event.get("ts")) is None
            or ("user" in event and slack_id("user", event["user"]) is None)
            or ("thread_ts" in event and slack_id("ts", event["thread_ts"]) is None)
        ):
            return refuse("a message event needs a ts, and Slack's shapes for user and thread_ts")
        # A lone surrogate (JSON's "\\ud83d") is stored nowhere: U+FFFD before it is kept.
        event = storable_json(event)
        received_at = clock.now()
        alert = parse_slack_message(event, channel=channel, received_at=received_at)
        if alert is None:
            return None  # chatter never reaches the inbox
        delivery_key = storable(str(body.get("event_id") or alert.source_key))
        payload = {
            "event": event,
            "channel": channel,
            "delivery_key": delivery_key,
            "received_at": received_at.isoformat(),
        }
        await inbox.accept(f"event:{delivery_key}", KIND, payload)
        return None

    async def handle(payload: dict[str, Any]) -> None:
        channel = str(payload["channel"])
        received_at = datetime.fromisoformat(payload["received_at"])
        alert = parse_slack_message(payload["event"], channel=channel, received_at=received_at)
        if alert is None:
            return
        delivery_key = str(payload["delivery_key"])
        if alert.labels.get("integration") == PERSON:
            if await healer.answer_words(alert, delivery_key) is not None:
                metrics.alerts("slack", 1)
        elif await healer.receive([alert], delivery_key):
            metrics.alerts("slack", 1)

    inbox.handle(KIND, handle)
