"""Modal submissions: the rejection form, and App Home's pause form. The answer
is the ack itself (close, or errors that keep the modal open); the decision
or the pause is committed to the inbox before that answer and runs after it."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.response import BoltResponse

from bot.ids import ActionId, BlockId, CallbackId, RejectForm, slack_id, slack_id_at
from bot.inbox import Inbox
from bot.listeners.actions import DECIDE
from bot.listeners.errors import refuse
from bot.listeners.home import SWITCH
from bot.modals import PAUSE_REASON_MAX, REASON_MAX
from engine.api import storable
from engine.models import Decision

log = logging.getLogger(__name__)

NOT_OURS = "This form is not one of GRACE's; nothing was done. Close it and use the card's buttons."
BLANK = "Say why you reject the plan: the reason goes on the record."
TOO_LONG = f"Keep the reason under {REASON_MAX + 1} characters."
PAUSE_TOO_LONG = f"Keep the reason under {PAUSE_REASON_MAX + 1} characters."


def register(app: AsyncApp, inbox: Inbox) -> None:
    app.view(CallbackId.REJECT)(_on_reject_submitted(inbox))
    app.view(CallbackId.PAUSE)(_on_pause_submitted(inbox))


def _values(view: dict[str, Any]) -> dict[str, Any] | None:
    """The form's values; None when Slack could not have sent them (not an object)."""
    state = view.get("state")
    values = state.get("values") if isinstance(state, dict) else None
    return values if isinstance(values, dict) else None


def _reason(values: dict[str, Any], block_id: str, action_id: str) -> str:
    block = values.get(block_id)
    entry = block.get(action_id) if isinstance(block, dict) else None
    value = entry.get("value") if isinstance(entry, dict) else None
    return storable(value.strip()) if isinstance(value, str) else ""


def _on_reject_submitted(inbox: Inbox) -> Any:
    async def on_submit(
        ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]
    ) -> BoltResponse | None:
        user = slack_id_at(body, "user", "user", "id")
        values = _values(view)
        submitted = slack_id("view", view.get("id")) or slack_id("trigger", body.get("trigger_id"))
        if user is None or values is None or submitted is None:
            return refuse("a submitted form needs Slack's user, view id and state.values")
        try:
            form = RejectForm.decode(str(view.get("private_metadata") or ""))
        except ValueError:
            log.warning("rejection form from %s with foreign metadata; refused", user)
            await ack(response_action="errors", errors={BlockId.REJECT_REASON: NOT_OURS})
            return None
        reason = _reason(values, BlockId.REJECT_REASON, ActionId.REJECT_REASON)
        problem = BLANK if not reason else TOO_LONG if len(reason) > REASON_MAX else None
        if problem is not None:
            await ack(response_action="errors", errors={BlockId.REJECT_REASON: problem})
            return None
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
        await inbox.accept(f"view:{submitted}:{user}", DECIDE, payload)
        await ack()
        return None

    return on_submit


def _on_pause_submitted(inbox: Inbox) -> Any:
    """Pause from App Home: the reason is optional; whether the person may pause is
    the kill switch's to say (bot/listeners/home.py), as for `/grace pause`."""

    async def on_submit(
        ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]
    ) -> BoltResponse | None:
        user = slack_id_at(body, "user", "user", "id")
        values = _values(view)
        submitted = slack_id("view", view.get("id")) or slack_id("trigger", body.get("trigger_id"))
        if user is None or values is None or submitted is None:
            return refuse("a submitted form needs Slack's user, view id and state.values")
        reason = _reason(values, BlockId.PAUSE_REASON, ActionId.PAUSE_REASON)
        if len(reason) > PAUSE_REASON_MAX:
            await ack(response_action="errors", errors={BlockId.PAUSE_REASON: PAUSE_TOO_LONG})
            return None
        payload = {"sub": "pause", "user": user, "reason": reason or None}
        await inbox.accept(f"view:{submitted}:{user}", SWITCH, payload)
        await ack()
        return None

    return on_submit
