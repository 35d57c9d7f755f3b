"""The card's buttons, also on App Home: the click is committed, answered, then acted on.

Approve and Dry run are committed to the inbox (bot/inbox.py) before Slack is
answered, and handled after the answer; a click Slack sends again is handled
once. Reject opens a modal that asks why (bot/listeners/modals.py commits it
when it is submitted); the modal must open within the click's three seconds,
so it opens at once.

The same buttons on a person's App Home (bot/home.py) carry the same values
and are handled here the same way. Slack sends such a click with the Home's
view and no channel: the view names the person's App Home channel, where the
engine's answer goes, and bot/home_publisher.py shows it on the Home.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.blocks import TEXT_LIMIT, approval_waits_text, cap, escape
from bot.ids import ActionId, CardButton, RejectForm, home_channel, slack_id, slack_id_at
from bot.inbox import Inbox
from bot.listeners.errors import refuse
from bot.modals import reject_modal
from bot.playbook_text import dry_run_text
from engine.api import Healer
from engine.models import Decision

log = logging.getLogger(__name__)
FOREIGN = "That button is not one of GRACE's; nothing was done."


DECIDE = "decision"
DRY_RUN = "dry_run"


def register(app: AsyncApp, healer: Healer, inbox: Inbox) -> None:
    approve = {"decision": Decision.APPROVE.value}
    app.action(ActionId.APPROVE)(_card_click(healer, _committed(inbox, DECIDE, approve)))
    app.action(ActionId.REJECT)(_card_click(healer, _ask_why))
    app.action(ActionId.DRY_RUN)(_card_click(healer, _committed(inbox, DRY_RUN, {})))
    inbox.handle(DECIDE, lambda payload: decide(healer, payload))
    inbox.handle(DRY_RUN, lambda payload: _dry_run(healer, payload))


@dataclass(frozen=True)
class Click:
    """One click on a card button whose value GRACE wrote."""

    user: str
    channel: str
    """Where the answer goes: the card's channel, or the App Home channel of a Home click."""
    button: CardButton
    trigger_id: str
    key: str
    """Slack's identity of this click: a click Slack sends again has the same."""


OnClick = Callable[[Healer, Click, AsyncWebClient], Awaitable[None]]


def _card_click(healer: Healer, then: OnClick) -> Any:
    """Refuse a click without whom and where to answer; else ack at once, answer a
    value GRACE did not write privately, and hand the click on."""

    async def on_click(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient
    ) -> BoltResponse | None:
        user = slack_id_at(body, "user", "user", "id")
        channel = slack_id_at(body, "channel", "channel", "id") or home_channel(body)
        trigger_id = slack_id_at(body, "trigger", "trigger_id")
        if user is None or channel is None or trigger_id is None:
            return refuse("a click needs Slack's user, channel (or GRACE's Home) and trigger_id")
        await ack()
        try:
            button = CardButton.decode(str(action.get("value", "")))
        except ValueError:
            healer.spawn(healer.tell_user(channel, user, FOREIGN))
            return None
        key = f"action:{slack_id('ts', action.get('action_ts')) or trigger_id}:{user}"
        await then(healer, Click(user, channel, button, trigger_id, key), client)
        return None

    return on_click


def _committed(inbox: Inbox, kind: str, extra: dict[str, Any]) -> OnClick:
    """Commit the click to the inbox, to be handled after Slack's answer."""

    async def commit(healer: Healer, click: Click, client: AsyncWebClient) -> None:
        payload = {
            "incident_id": click.button.incident_id,
            "plan_hash": click.button.plan_hash,
            "user": click.user,
            "channel": click.channel,
            **extra,
        }
        await inbox.accept(click.key, kind, payload)

    return commit


async def decide(healer: Healer, payload: dict[str, Any]) -> None:
    """An Approve click or a submitted rejection, as the inbox hands it over; an
    approval that counts while GRACE is paused is told what it waits for."""
    channel, user = str(payload["channel"]), str(payload["user"])
    pause = await healer.decide(
        incident_id=int(payload["incident_id"]),
        plan_hash=str(payload["plan_hash"]),
        user=user,
        decision=Decision(payload["decision"]),
        channel=channel,
        reason=payload.get("reason"),
    )
    if pause is not None:
        await healer.tell_user(channel, user, approval_waits_text(pause))


async def _ask_why(healer: Healer, click: Click, client: AsyncWebClient) -> None:
    # The trigger_id lives for 3 s: the modal opens before anything else is done.
    form = RejectForm(click.button.incident_id, click.button.plan_hash, click.channel)
    try:
        await client.views_open(trigger_id=click.trigger_id, view=reject_modal(form))
    except SlackApiError as exc:
        error = str(exc.response.get("error", "unknown error"))
        log.warning("could not open the rejection form for %s: %s", click.user, error)
        why = (
            f"Slack would not open the rejection form ({escape(error)}); nothing was "
            "rejected. Click Reject again."
        )
        healer.spawn(healer.tell_user(click.channel, click.user, why))


async def _dry_run(healer: Healer, payload: dict[str, Any]) -> None:
    """Anyone may look: a dry run reads the stored plan and changes nothing."""
    channel, user = str(payload["channel"]), str(payload["user"])
    dry = await healer.dry_run(int(payload["incident_id"]))
    if isinstance(dry, str):
        text = escape(dry)
    else:
        text = dry_run_text(dry)
        if dry.plan.hash != payload["plan_hash"]:
            changed = ":warning: The plan changed since this card was posted; here is the new one."
            text = cap(f"{changed}\n{text}", TEXT_LIMIT)
    await healer.tell_user(channel, user, text)
