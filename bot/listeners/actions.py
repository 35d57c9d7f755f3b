"""The card's buttons: ack at once, do the work after the ack.

Approve decides; Reject opens a modal that asks why (bot/listeners/modals.py
decides when it is submitted); Dry run tells the clicker alone what approving
would do, touching nothing.
"""

from __future__ import annotations

import logging
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
    app.action(ActionId.APPROVE)(_approver(healer))
    app.action(ActionId.REJECT)(_rejecter(healer))
    app.action(ActionId.DRY_RUN)(_dry_runner(healer))


def _clicked(body: dict[str, Any], action: dict[str, Any]) -> tuple[str, str, CardButton | None]:
    """Who clicked, in which channel, and the button's value (None if not GRACE's)."""
    user, channel = body["user"]["id"], body["channel"]["id"]
    try:
        return user, channel, CardButton.decode(str(action.get("value", "")))
    except ValueError:
        return user, channel, None


def _approver(healer: Healer) -> Any:
    async def on_approve(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        user, channel, button = _clicked(body, action)
        if button is None:
            healer.spawn(healer.narrator.tell_user(channel, user, FOREIGN))
            return
        healer.spawn(
            healer.decide(
                incident_id=button.incident_id,
                plan_hash=button.plan_hash,
                user=user,
                decision=Decision.APPROVE,
                channel=channel,
            )
        )

    return on_approve


def _rejecter(healer: Healer) -> Any:
    async def on_reject(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient
    ) -> None:
        await ack()
        user, channel, button = _clicked(body, action)
        if button is None:
            healer.spawn(healer.narrator.tell_user(channel, user, FOREIGN))
            return
        # The trigger_id lives for 3 s: the modal opens before anything else is done.
        form = RejectForm(button.incident_id, button.plan_hash, channel)
        try:
            await client.views_open(trigger_id=body["trigger_id"], view=reject_modal(form))
        except SlackApiError as exc:
            error = str(exc.response.get("error", "unknown error"))
            log.warning("could not open the rejection form for %s: %s", user, error)
            why = (
                f"Slack would not open the rejection form ({escape(error)}); nothing was "
                "rejected. Click Reject again."
            )
            healer.spawn(healer.narrator.tell_user(channel, user, why))

    return on_reject


def _dry_runner(healer: Healer) -> Any:
    async def on_dry_run(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        user, channel, button = _clicked(body, action)
        if button is None:
            healer.spawn(healer.narrator.tell_user(channel, user, FOREIGN))
            return
        healer.spawn(_dry_run(healer, button, channel, user))

    return on_dry_run


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
