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

from bot.ids import CallbackId
from bot.readings import NOT_AN_ALERT, reading_text
from engine.healer import Healer
from engine.intake.slack import parse_slack_message
from engine.ports import Clock


def register(app: AsyncApp, healer: Healer, clock: Clock) -> None:
    @app.shortcut(CallbackId.HEAL_THIS)
    async def heal_this(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        healer.spawn(_answer(healer, clock, body, respond))


async def _answer(
    healer: Healer, clock: Clock, body: Mapping[str, Any], respond: AsyncRespond
) -> None:
    message = body.get("message")
    channel = body.get("channel")
    channel_id = channel.get("id") if isinstance(channel, Mapping) else None
    if not isinstance(message, Mapping) or not isinstance(channel_id, str):
        await respond(NOT_AN_ALERT)
        return
    alert = parse_slack_message(_as_posted(message), channel=channel_id, received_at=clock.now())
    if alert is None:
        await respond(NOT_AN_ALERT)
        return
    await respond(reading_text(await healer.read(alert)))


def _as_posted(message: Mapping[str, Any]) -> dict[str, Any]:
    """The message as if posted at the top of the channel: asked about, a reply
    in a thread is read like any report, and the thread it was in is kept out
    of the reading."""
    return {key: value for key, value in message.items() if key != "thread_ts"}
