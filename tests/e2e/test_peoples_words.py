"""A person's own words in an alert channel: answered in their thread when GRACE can help."""

from __future__ import annotations

from bot.demo import APPROVER, CHANNEL
from bot.ids import ActionId
from engine.models import IncidentState

S = IncidentState


async def said(h, words: str, user: str = APPROVER) -> str:
    """Post as a person; the ts of their message."""
    delivery = await h.slack.post_message_as(CHANNEL, words, user=user)
    assert delivery.status == 200
    return str(delivery.payload()["event"]["ts"])


async def test_a_report_naming_a_database_is_answered_in_its_thread(make_harness):
    h = await make_harness()
    ts = await said(h, f"db at {h.app_db} is locked again, anyone?")
    card = await h.slack.wait_for(lambda: next((m for m in h.slack.thread(CHANNEL, ts)), None))
    assert card.blocks, "the answer is the incident's card, with its buttons"
    assert any(b["type"] == "actions" for b in card.blocks)
    # Nothing new at the top of the channel: the person's message is all there is.
    assert [m.ts for m in h.slack.messages(CHANNEL)] == [ts]
    await h.grace.healer.drain()
    [incident] = await h.incidents()
    assert incident.state is S.AWAITING_APPROVAL
    assert incident.diagnosis.problem == "sqlite_database_locked"
    assert incident.plan.target.name == str(h.app_db)
    assert incident.alert.reporter == APPROVER and incident.alert.thread_ts == ts


async def test_approving_in_the_thread_tells_the_story_there(make_harness):
    h = await make_harness()
    ts = await said(h, f"the WAL of {h.app_db} is huge again")
    card = await h.slack.wait_for(lambda: next(iter(h.slack.thread(CHANNEL, ts)), None))
    await h.slack.click(CHANNEL, card.ts, ActionId.APPROVE, user=APPROVER)
    # The whole story follows the card in the person's thread, and ends resolved.
    await h.slack.wait_for(
        lambda: any("Learned" in m.text for m in h.slack.thread(CHANNEL, ts)), timeout=15
    )
    await h.grace.healer.drain()
    [incident] = await h.incidents()
    assert incident.state is S.RESOLVED
    assert [m.ts for m in h.slack.messages(CHANNEL)] == [ts]


async def test_chatter_and_questions_get_no_answer_and_store_nothing(make_harness):
    h = await make_harness()
    for words in (
        "morning all, quiet night",
        f"is {h.app_db} locked?",
        f"db at {h.app_db} isn't locked anymore, all good",
        "db at /etc/passwd is locked",  # a file no allowlist admits
        "the orders db is locked",  # names nothing GRACE may act on
    ):
        await said(h, words)
    # A later alert is answered, so the ones before it were read and passed over.
    await h.alert()
    await h.card()
    await h.grace.healer.drain()
    incidents = await h.incidents()
    assert [i.alert.labels["integration"] for i in incidents] == ["text"]
    assert all(not h.slack.thread(CHANNEL, m.ts) for m in h.slack.messages(CHANNEL)[:-2])
