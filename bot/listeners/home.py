"""App Home: opening it, and the kill switch on it (Pause and Resume, admins only).

Opening the Home tab (`app_home_opened`) records who opened it and where
(committed before Slack is answered, so a restart still republishes theirs),
then bot/home_publisher.py publishes theirs first. The Messages tab opens
the same event with `tab: messages`: it shows nothing of GRACE's and is left
alone. The Home's decision buttons are the card's (bot/listeners/actions.py).

Pause opens a form (the reason is optional; bot/listeners/modals.py commits
it when submitted) and Resume asks Slack's confirm dialog first. Both are
carried out through the inbox like `/grace pause` and `/grace resume`, by the
engine's kill switch, which refuses (and audits) anyone not an admin; the
answer is shown on the person's Home. A Pause click from someone who is not
an admin (only a forged one: they are never shown the button) opens no form
and is refused the same way.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.blocks import escape
from bot.home_publisher import HomePublisher
from bot.ids import ActionId, slack_id, slack_id_at
from bot.inbox import Inbox
from bot.listeners.errors import refuse
from bot.modals import pause_modal
from engine.api import Healer

log = logging.getLogger(__name__)

SWITCH = "home.switch"
"""Inbox kind: Pause (its form submitted) or Resume, from App Home."""


def register(
    app: AsyncApp, healer: Healer, inbox: Inbox, home: HomePublisher, admins: frozenset[str]
) -> None:
    """`admins`: who may pull the kill switch from the Home."""
    app.event("app_home_opened")(_on_opened(home))
    app.action(ActionId.PAUSE)(_on_pause(healer, inbox, home, admins))
    app.action(ActionId.RESUME)(_on_resume(inbox))
    inbox.handle(SWITCH, lambda payload: _switch(healer, home, payload))


def _on_opened(home: HomePublisher) -> Any:
    async def on_opened(event: dict[str, Any]) -> BoltResponse | None:
        if event.get("tab", "home") != "home":
            return None
        user = slack_id_at(event, "user", "user")
        channel = slack_id_at(event, "channel", "channel")
        if user is None or channel is None:
            return refuse("app_home_opened needs Slack's user and channel")
        await home.opened(user, channel)
        return None

    return on_opened


def _switch_click(body: dict[str, Any], action: dict[str, Any]) -> tuple[str, str, str] | None:
    """Who clicked, the click's key and trigger_id; None without Slack's shapes."""
    user = slack_id_at(body, "user", "user", "id")
    trigger_id = slack_id_at(body, "trigger", "trigger_id")
    if user is None or trigger_id is None:
        return None
    key = f"action:{slack_id('ts', action.get('action_ts')) or trigger_id}:{user}"
    return user, key, trigger_id


def _on_pause(healer: Healer, inbox: Inbox, home: HomePublisher, admins: frozenset[str]) -> Any:
    async def on_pause(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient
    ) -> BoltResponse | None:
        click = _switch_click(body, action)
        if click is None:
            return refuse("a Pause click needs Slack's user and trigger_id")
        user, key, trigger_id = click
        if user not in admins:
            # The kill switch refuses it, audited, as it refuses `/grace pause`.
            await inbox.accept(key, SWITCH, {"sub": "pause", "user": user, "reason": None})
            await ack()
            return None
        await ack()
        # The trigger_id lives for 3 s: the form opens before anything else is done.
        try:
            await client.views_open(trigger_id=trigger_id, view=pause_modal())
        except SlackApiError as exc:
            error = str(exc.response.get("error", "unknown error"))
            log.warning("could not open the pause form for %s: %s", user, error)
            why = f"Slack would not open the pause form ({escape(error)}); nothing was paused."
            healer.spawn(home.tell(user, f"{why} Click Pause again."))
        return None

    return on_pause


def _on_resume(inbox: Inbox) -> Any:
    async def on_resume(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]
    ) -> BoltResponse | None:
        click = _switch_click(body, action)
        if click is None:
            return refuse("a Resume click needs Slack's user and trigger_id")
        user, key, _ = click
        # Committed before Slack's answer, like `/grace resume`: carried out once, even
        # if GRACE dies right after answering.
        await inbox.accept(key, SWITCH, {"sub": "resume", "user": user})
        await ack()
        return None

    return on_resume


async def _switch(healer: Healer, home: HomePublisher, payload: dict[str, Any]) -> None:
    """The kill switch, as the inbox hands it over; the answer goes on the person's Home."""
    user = str(payload["user"])
    if payload["sub"] == "pause":
        reason = payload.get("reason")
        text = await healer.pause(user, str(reason) if reason else None)
    else:
        text = await healer.resume(user)
    await home.tell(user, text)
