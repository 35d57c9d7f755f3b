"""A proposed promotion's Accept and Dismiss (bot/promotion.py draws the message).

The click is committed to the inbox before Slack is answered and decided after
it (engine/earned.py), once even if Slack sends it again. Only an admin
decides: anyone else is told privately who can, nothing changes, and the
refusal is audited. An admin's Accept promotes the playbook, a Dismiss closes
the proposal; either way the message is redrawn in place through the outbox
(chat.update, like a card), saying who decided and when, without buttons. A
click on a proposal decided already is told so, and redraws it too: it came
from a message that still showed buttons.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.response import BoltResponse

from bot.blocks import mention
from bot.ids import ActionId, ProposalButton, slack_id, slack_id_at
from bot.inbox import Inbox
from bot.listeners.actions import FOREIGN
from bot.listeners.errors import refuse
from bot.notifier import OutboxNotifier
from bot.promotion import decided_line, proposal_message
from engine.api import Decided, Healer, ProposalState, Verdict

DECIDE = "promotion"
"""Inbox kind: an Accept or a Dismiss."""


def register(
    app: AsyncApp,
    healer: Healer,
    inbox: Inbox,
    notifier: OutboxNotifier,
    admins: frozenset[str],
) -> None:
    """`admins`: who decides on a promotion, named to anyone else who clicks."""
    app.action(ActionId.PROMOTION_ACCEPT)(_on_click(healer, inbox, accept=True))
    app.action(ActionId.PROMOTION_DISMISS)(_on_click(healer, inbox, accept=False))
    inbox.handle(DECIDE, lambda payload: _decide(healer, notifier, admins, payload))


def _on_click(healer: Healer, inbox: Inbox, *, accept: bool) -> Any:
    async def on_click(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]
    ) -> BoltResponse | None:
        user = slack_id_at(body, "user", "user", "id")
        channel = slack_id_at(body, "channel", "channel", "id")
        ts = slack_id_at(body, "ts", "container", "message_ts")
        trigger_id = slack_id_at(body, "trigger", "trigger_id")
        if user is None or channel is None or ts is None or trigger_id is None:
            return refuse("a click on a proposal needs Slack's user, channel, message and trigger")
        try:
            button = ProposalButton.decode(str(action.get("value", "")))
        except ValueError:
            await ack()
            healer.spawn(healer.tell_user(channel, user, FOREIGN))
            return None
        key = f"action:{slack_id('ts', action.get('action_ts')) or trigger_id}:{user}"
        payload = {
            "proposal_id": button.proposal_id,
            "accept": accept,
            "user": user,
            "channel": channel,
            "ts": ts,
        }
        await inbox.accept(key, DECIDE, payload)
        await ack()
        return None

    return on_click


async def _decide(
    healer: Healer, notifier: OutboxNotifier, admins: frozenset[str], payload: dict[str, Any]
) -> None:
    """A click, as the inbox hands it over: safe to run twice (the decision is a
    compare-and-set, and a redraw of a decided proposal draws the same)."""
    user, channel = str(payload["user"]), str(payload["channel"])
    decided = await healer.decide_promotion(
        int(payload["proposal_id"]), user, accept=bool(payload["accept"])
    )
    proposal = decided.proposal
    if (
        proposal is not None
        and proposal.state is not ProposalState.OPEN
        and proposal.channel == channel
    ):
        await notifier.redraw(channel, str(payload["ts"]), proposal_message(proposal))
    answer = _answer(decided, admins)
    if answer is not None:
        await healer.tell_user(channel, user, answer)


def _answer(decided: Decided, admins: Collection[str]) -> str | None:
    """What the person who clicked is told privately; None: the message says it."""
    if decided.verdict is Verdict.REFUSED:
        if not admins:
            return (
                "Only GRACE's admins decide on a promotion, and none are configured"
                " (`admins` in the config). Nothing was changed."
            )
        who = ", ".join(mention(admin) for admin in sorted(admins))
        return f"Only GRACE's admins decide on a promotion: {who}. Nothing was changed."
    if decided.verdict is Verdict.DECIDED_BEFORE and decided.proposal is not None:
        return f"This proposal was decided already: {decided_line(decided.proposal)}"
    if decided.verdict is Verdict.UNKNOWN:
        return "This proposal is unknown to GRACE; nothing was done."
    return None
