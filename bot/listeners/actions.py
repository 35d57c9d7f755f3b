"""Approve and Reject buttons: ack at once, decide after the ack."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck

from bot.ids import ActionId, CardButton
from engine.healer import Healer
from engine.models import Decision

_DECISIONS = {ActionId.APPROVE: Decision.APPROVE, ActionId.REJECT: Decision.REJECT}


def register(app: AsyncApp, healer: Healer) -> None:
    for action_id, decision in _DECISIONS.items():
        app.action(action_id)(_decider(healer, decision))


def _decider(healer: Healer, decision: Decision) -> Any:
    async def on_click(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        user = body["user"]["id"]
        channel = body["channel"]["id"]
        try:
            button = CardButton.decode(str(action.get("value", "")))
        except ValueError:
            await healer.narrator.tell_user(
                channel, user, "That button is not one of GRACE's; nothing was done."
            )
            return
        await healer.decide(
            incident_id=button.incident_id,
            plan_hash=button.plan_hash,
            user=user,
            decision=decision,
            channel=channel,
        )

    return on_click
