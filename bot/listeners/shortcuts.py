"""The "Heal this" message shortcut: how GRACE reads any message, for whoever asks.

It diagnoses and answers the person privately (through the shortcut's
response_url, so it works in any channel), touching nothing and storing
nothing: the answer says how to ask for the plan when there is one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.response import BoltResponse

from bot.ids import CallbackId, slack_id_at
from bot.listeners.errors import refuse
from bot.readings import NOT_AN_ALERT, reading_text
from engine.api import Healer, parse_slack_message
from engine.ports import Clock


def register(app: AsyncApp, healer: Healer, clock: Clock) -> None:
    @app.shortcut(CallbackId.HEAL_THIS)
    async def heal_this(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond
    ) -> BoltResponse | None:
        channel = slack_id_at(body, "channel", "channel", "id")
        message = body.get("message")
        if (
            slack_id_at(body, "user", "user", "id") is None
            or channel is None
            or not isinstance(message, dict)
            or not body.get("response_url")
        ):
            return refuse("a message shortcut needs Slack's user, channel, message, response_url")
        if "user" in message and slack_id_at(message, "user", "user") is None:
            return refuse("the message's user is not a Slack user ID")
        await ack()
        healer.spawn(_answer(healer, clock, message, channel, respond))
        return None


async def _answer(
    healer: Healer, clock: Clock, message: Mapping[str, Any], channel: str, respond: AsyncRespond
) -> None:
    alert = parse_slack_message(_as_posted(message), channel=channel, received_at=clock.now())
    if alert is None:
        await respond(NOT_AN_ALERT)
        return
    await respond(reading_text(await healer.read(alert)))


def _as_posted(message: Mapping[str, Any]) -> dict[str, Any]:
    """The message as if posted at the top of the channel: asked about, a reply
    in a thread is read like any report, and the thread it was in is kept out
    of the reading."""
    return {key: value for key, value in message.items() if key != "thread_ts"}
