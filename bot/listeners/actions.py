"""The card's buttons: ack at once, do the work after the ack.

Approve decides; Reject opens a modal that asks why (bot/listeners/modals.py
decides when it is submitted); Dry run tells the clicker alone what approving
would do, touching nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.blocks import TEXT_LIMIT, cap, dry_run_text, escape
from bot.ids import ActionId, CardButton, RejectForm
from bot.modals import reject_modal
from engine.healer import Healer
from engine.models import Decision

log = logging.getLogger(__name__)
FOREIGN = "That button is not one of GRACE's; nothing was done."


def register(app: AsyncApp, healer: Healer) -> None:
    app.action(ActionId.APPROVE)(_card_click(healer, _approve))
    app.action(ActionId.REJECT)(_card_click(healer, _ask_why))
    app.action(ActionId.DRY_RUN)(_card_click(healer, _dry_run_click))


@dataclass(frozen=True)
class Click:
    """One click on a card button whose value GRACE wrote."""

    user: str
    channel: str
    button: CardButton
    trigger_id: str


OnClick = Callable[[Healer, Click, AsyncWebClient], Awaitable[None]]


def _card_click(healer: Healer, then: OnClick) -> Any:
    """Ack at once; answer a value GRACE did not write privately; else hand the click on."""

    async def on_click(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient
    ) -> None:
        await ack()
        user, channel = body["user"]["id"], body["channel"]["id"]
        try:
            button = CardButton.decode(str(action.get("value", "")))
        except ValueError:
            healer.spawn(healer.narrator.tell_user(channel, user, FOREIGN))
            return
        await then(healer, Click(user, channel, button, str(body.get("trigger_id", ""))), client)

    return on_click


async def _approve(healer: Healer, click: Click, client: AsyncWebClient) -> None:
    healer.spawn(
        healer.decide(
            incident_id=click.button.incident_id,
            plan_hash=click.button.plan_hash,
            user=click.user,
            decision=Decision.APPROVE,
            channel=click.channel,
        )
    )


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
        healer.spawn(healer.narrator.tell_user(click.channel, click.user, why))


async def _dry_run_click(healer: Healer, click: Click, client: AsyncWebClient) -> None:
    healer.spawn(_dry_run(healer, click.button, click.channel, click.user))


async def _dry_run(healer: Healer, button: CardButton, channel: str, user: str) -> None:
    """Anyone may look: a dry run reads the stored plan and changes nothing."""
    dry = await healer.dry_run(button.incident_id)
    if isinstance(dry, str):
        text = escape(dry)
    else:
        text = dry_run_text(dry)
        if dry.plan.hash != button.plan_hash:
            changed = ":warning: The plan changed since this card was posted; here is the new one."
            text = cap(f"{changed}\n{text}", TEXT_LIMIT)
    await healer.narrator.tell_user(channel, user, text)
