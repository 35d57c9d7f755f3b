"""GRACE killed between Slack's commit and its own: after the restart, nothing is
posted twice, and the card Slack already had is the one the incident goes on with.

DevSlack carries the post out and holds its answer back; the outbox worker is
cancelled mid-call (what a kill does to it), GRACE stops, and a new GRACE
starts on the same database, as after a crash.
"""

from __future__ import annotations

from typing import Any

from bot.app import build
from bot.demo import APPROVER, CHANNEL
from bot.devslack import Message
from bot.ids import ActionId
from tests.e2e.conftest import Harness

STAGES = ["Plan", "Approved", "Snapshot", "Step", "Verification", "Learned"]


def is_card(args: dict[str, Any]) -> bool:
    return "blocks" in args


def is_reply(args: dict[str, Any]) -> bool:
    return "thread_ts" in args and "blocks" not in args


async def killed_and_restarted(h: Harness) -> None:
    """The worker dies with the post in flight; a new GRACE opens the same database."""
    await h.grace.outbox.stop(flush_within=0)
    await h.grace.stop()
    h.grace = await build(h.grace.settings)
    await h.grace.start()
    h.slack.connect(f"{h.grace.url}/slack/events")


def card_messages(h: Harness) -> list[Message]:
    """Every card GRACE posted, at the top of the channel or in a person's thread."""
    everywhere = [*h.slack.messages(CHANNEL)]
    for top in h.slack.messages(CHANNEL):
        everywhere += h.slack.thread(CHANNEL, top.ts)
    return [m for m in everywhere if m.bot_id == h.slack.bot_id and m.blocks]


def story(h: Harness, card: Message) -> list[str]:
    thread_ts = card.thread_ts or card.ts
    return [m.text for m in h.slack.thread(CHANNEL, thread_ts) if not m.blocks]


def stage_of(text: str) -> str:
    return next(s for s in STAGES if s in text)


async def healed_once(h: Harness, card: Message) -> None:
    """Approve on the card; the story is told once, in order, under that card."""
    await h.slack.click(CHANNEL, card.ts, ActionId.APPROVE, user=APPROVER)
    await h.slack.wait_for(lambda: any("Learned" in t for t in story(h, card)), timeout=15)
    await h.grace.healer.drain()
    await h.grace.outbox.idle()
    assert [stage_of(t) for t in story(h, card)] == STAGES
    final = h.slack.message(CHANNEL, card.ts)
    assert final.edits and "Resolved" in h.slack.render_message(final)


async def test_a_card_posted_as_grace_died_is_adopted_not_posted_again(make_harness):
    h = await make_harness()
    h.slack.lose_answer("chat.postMessage", hang=2.0, match=is_card)
    await h.alert()
    await h.slack.wait_for(lambda: card_messages(h))
    await killed_and_restarted(h)

    await h.grace.outbox.idle()
    [card] = card_messages(h)
    incident = await h.grace.store.incident_for_card(CHANNEL, card.ts)
    assert incident is not None, "the card Slack had is the incident's card"
    assert [stage_of(t) for t in story(h, card)] == ["Plan"]
    lookups = [c.method for c in h.slack.calls if c.method.startswith("conversations.")]
    assert "conversations.history" in lookups or "conversations.replies" in lookups
    await healed_once(h, card)
    assert len(card_messages(h)) == 1


async def test_a_thread_reply_posted_as_grace_died_is_told_once(make_harness):
    h = await make_harness()
    h.slack.lose_answer("chat.postMessage", hang=2.0, match=is_reply)
    await h.alert()
    await h.slack.wait_for(lambda: any(story(h, c) for c in card_messages(h)))
    await killed_and_restarted(h)

    await h.grace.outbox.idle()
    [card] = card_messages(h)
    assert [stage_of(t) for t in story(h, card)] == ["Plan"]
    await healed_once(h, card)
