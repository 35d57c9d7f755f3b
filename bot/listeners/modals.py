"""Modal submissions: the rejection form. The answer is the ack itself (close,
or errors that keep the modal open); the decision is committed to the inbox
before that answer and runs after it."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck

from bot.ids import ActionId, BlockId, CallbackId, RejectForm
from bot.inbox import Inbox
from bot.listeners.actions import DECIDE
from bot.modals import REASON_MAX
from engine.models import Decision

log = logging.getLogger(__name__)

NOT_OURS = "This form is not one of GRACE's; nothing was done. Close it and use the card's buttons."
BLANK = "Say why you reject the plan: the reason goes on the record."
TOO_LONG = f"Keep the reason under {REASON_MAX + 1} characters."


def register(app: AsyncApp, inbox: Inbox) -> None:
    app.view(CallbackId.REJECT)(_on_reject_submitted(inbox))


def _reason(view: dict[str, Any]) -> str:
    values = view.get("state", {}).get("values", {})
    entry = values.get(BlockId.REJECT_REASON, {}).get(ActionId.REJECT_REASON, {})
    value = entry.get("value") if isinstance(entry, dict) else None
    return value.strip() if isinstance(value, str) else ""


def _on_reject_submitted(inbox: Inbox) -> Any:
    async def on_submit(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        user = body["user"]["id"]
        try:
            form = RejectForm.decode(str(view.get("private_metadata") or ""))
        except ValueError:
            log.warning("rejection form from %s with foreign metadata; refused", user)
            await ack(response_action="errors", errors={BlockId.REJECT_REASON: NOT_OURS})
            return
        reason = _reason(view)
        problem = BLANK if not reason else TOO_LONG if len(reason) > REASON_MAX else None
        if problem is not None:
            await ack(response_action="errors", errors={BlockId.REJECT_REASON: problem})
            return
        # Who may reject, and whether the plan is still the one awaiting approval, is
        # decide's to say: a refusal reaches the person privately in the card's channel.
        payload = {
            "incident_id": form.incident_id,
            "plan_hash": form.plan_hash,
            "user": user,
            "channel": form.channel,
            "decision": Decision.REJECT.value,
            "reason": reason,
        }
        await inbox.accept(
            f"view:{view.get('id') or body.get('trigger_id')}:{user}", DECIDE, payload
        )
        await ack()

    return on_submit
