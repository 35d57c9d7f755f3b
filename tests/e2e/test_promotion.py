"""Earned autonomy, promotion, through the real server and the Slack stand-in: a
record over the bar is proposed once, only an admin's Accept promotes, every
step is audited, and the next card of that playbook heals without anyone."""

from __future__ import annotations

import asyncio
import json
import sqlite3

from bot.app import build
from bot.demo import APPROVER, CHANNEL
from bot.devslack import Message
from bot.ids import ActionId, BlockId
from bot.settings import Approvers
from engine.autonomy import Autonomy
from engine.models import Incident
from engine.models import IncidentState as S
from tests.e2e.conftest import Harness

LEAD = "U0LEAD"
CHECKPOINT, GUARDED = "events-checkpoint", "events-guarded"
# LB(n/n) = n / (n + 1.96²): 2/2 is 34% at worst, 3/3 is 44%, so the third success proposes.
EAGER = {
    "admins": [LEAD],
    "autonomy": Autonomy(promote_above=0.4, min_runs=3),
    "approvers": Approvers(tier2=[APPROVER], tier3=[APPROVER, LEAD]),
}
PLAYBOOKS = """
patterns:
  - id: events-missing
    problem: events_missing
    alertname: [EventsMissing]
    target: {db_path: {labels: [db_path], value: '(/.+)', text: '(/\\S+[.]db)'}}
    explanation: Events are missing from {db_path}.
  - id: events-corrupt
    problem: events_corrupt
    alertname: [EventsCorrupt]
    target: {db_path: {labels: [db_path], value: '(/.+)', text: '(/\\S+[.]db)'}}
    explanation: Events may be corrupt in {db_path}.
playbooks:
  - id: events-checkpoint
    title: Checkpoint the events database
    treats: [events_missing]
    tier: 2
    target: {executor: sqlite, from_label: db_path}
    steps: [{action: wal_checkpoint, params: {mode: TRUNCATE}}]
    checks: [{check: integrity_ok}]
  - id: events-guarded
    title: Checkpoint the events database, two people watching
    treats: [events_corrupt]
    tier: 3
    target: {executor: sqlite, from_label: db_path}
    steps: [{action: wal_checkpoint, params: {mode: TRUNCATE}}]
    checks: [{check: integrity_ok}]
"""


def is_proposal(message: Message) -> bool:
    return any(block.get("block_id") == BlockId.PROMOTION for block in message.blocks)


def proposals(h: Harness) -> list[Message]:
    return [m for m in h.slack.messages(CHANNEL) if m.bot_id == h.slack.bot_id and is_proposal(m)]


def cards(h: Harness) -> list[Message]:
    return [m for m in h.cards() if not is_proposal(m)]


def buttons(message: Message) -> list[dict]:
    return [e for b in message.blocks if b["type"] == "actions" for e in b["elements"]]


def told(h: Harness, user: str) -> list[str]:
    return [m.text for m in h.slack.ephemerals(user)]


async def settled(h: Harness) -> None:
    await h.grace.healer.drain()
    await h.grace.outbox.idle()


async def heal(h: Harness, n: int, alert: str = "EventsMissing", approvers=(APPROVER,)) -> Incident:
    """An integration's alert about a database of its own: a new incident each time,
    approved by `approvers` (none: it must heal at once), healed and learned from."""
    db = h.app_db.with_name(f"db{n}.db")
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY)")
    before = len(cards(h))
    await h.integration_alert(f"[FIRING:1] {alert} db_path={db} severity=warning")
    card = await h.slack.wait_for(lambda: cards(h)[before] if len(cards(h)) > before else None)
    await settled(h)
    for user in approvers:
        await h.click(card, user=user)
    incident = await h.finished(card)
    assert incident.state is S.RESOLVED
    assert len(await h.grace.store.approvals(incident.id)) == len(approvers)
    return incident


async def audited(h: Harness) -> list[tuple[str, str]]:
    return [
        (e.actor, e.action)
        for e in await h.grace.store.audit_entries()
        if e.action.startswith(("promotion.", "playbook."))
    ]


async def proposed(h: Harness, runs: int) -> Message:
    for n in range(1, runs):
        await heal(h, n)
        assert proposals(h) == [], f"proposed after {n} runs"
    await heal(h, runs)
    [proposal] = proposals(h)
    return proposal


async def test_a_proposal_is_refused_to_others_accepted_once_by_an_admin_and_heals_alone(
    make_harness,
):
    h = await make_harness(playbooks=PLAYBOOKS, **EAGER)
    proposal = await proposed(h, 3)
    [record, tier] = [f["text"] for f in proposal.blocks[0]["fields"]]
    assert record.startswith("*Record*\n3/3 succeeded, 44% at worst, median ")
    assert tier == "*Tier*\n2 → 1: heals without asking anyone"
    assert f"`{CHECKPOINT}` has earned a promotion: 3/3 succeeded" in proposal.text
    accept, dismiss = buttons(proposal)
    assert (accept["action_id"], accept["style"]) == (ActionId.PROMOTION_ACCEPT, "primary")
    assert accept["confirm"]["confirm"]["text"] == "Promote"
    assert dismiss["action_id"] == ActionId.PROMOTION_DISMISS
    await heal(h, 4)  # another success while it is open: not proposed again
    assert [m.ts for m in proposals(h)] == [proposal.ts]

    # Someone who is not an admin: told who decides, nothing changes.
    refused = await h.slack.click(CHANNEL, proposal.ts, ActionId.PROMOTION_ACCEPT, user=APPROVER)
    assert refused.status == 200 and refused.elapsed < 3
    [answer] = await h.slack.wait_for(lambda: told(h, APPROVER))
    assert answer == f"Only GRACE's admins decide on a promotion: <@{LEAD}>. Nothing was changed."
    await settled(h)
    assert await h.grace.store.playbook_tiers() == {}
    assert buttons(h.slack.message(CHANNEL, proposal.ts)) == buttons(proposal)

    # The admin clicks Accept twice before the message changes: promoted once.
    clicks = [
        h.slack.click(CHANNEL, proposal.ts, ActionId.PROMOTION_ACCEPT, user=LEAD) for _ in "12"
    ]
    assert [c.status for c in await asyncio.gather(*clicks)] == [200, 200]
    [again] = await h.slack.wait_for(lambda: told(h, LEAD))
    assert again.startswith("This proposal was decided already: Accepted by <@U0LEAD> ")
    await settled(h)
    assert len(told(h, LEAD)) == 1
    decided = h.slack.message(CHANNEL, proposal.ts)
    assert buttons(decided) == [] and decided.edits
    assert f"*Promoted `{CHECKPOINT}`* to tier 1." in decided.blocks[0]["text"]["text"]
    assert decided.blocks[-1]["elements"][0]["text"].startswith(f"Accepted by <@{LEAD}> <!date^")
    change = (await h.grace.store.playbook_tiers())[CHECKPOINT]
    assert (change.tier, change.base_tier, change.by) == (1, 2, LEAD)
    assert change.reason.startswith("3/3 succeeded, 44% at worst")
    assert await audited(h) == [
        ("grace", "promotion.proposed"),
        (APPROVER, "promotion.refused"),
        (LEAD, "promotion.accepted"),
        (LEAD, "playbook.tier"),
    ]
    assert (await h.grace.store.verify_audit()).ok

    # The next card of that playbook heals at tier 1, asking nobody.
    alone = await heal(h, 5, approvers=())
    assert (alone.plan.tier, alone.plan.required_approvals) == (1, 0)
    asked = await h.slack.slash_command("playbooks", user=APPROVER, channel=CHANNEL)
    listed = json.loads(asked.body)["text"]
    assert f"`{CHECKPOINT}`: Checkpoint the events database · *tier 1* (heals at once;" in listed
    assert f"promoted from tier 2 by <@{LEAD}>" in listed

    # A restart keeps the tier, and so does the next heal.
    await h.grace.stop()
    h.grace = await build(h.grace.settings)
    await h.grace.start()
    h.slack.connect(f"{h.grace.url}/slack/events")
    assert (await h.grace.store.playbook_tiers())[CHECKPOINT] == change
    after = await heal(h, 6, approvers=())
    assert after.plan.tier == 1
    await h.slack.slash_command("stats", user=APPROVER, channel=CHANNEL)
    stats = await h.slack.wait_for(lambda: next(iter(told(h, APPROVER)[1:]), None))
    assert f"• `{CHECKPOINT}` (tier 1, promoted from 2 by <@{LEAD}>): 6 runs, 6/6" in stats


async def test_dismiss_closes_the_proposal_and_changes_no_tier(make_harness):
    h = await make_harness(playbooks=PLAYBOOKS, **EAGER)
    proposal = await proposed(h, 3)
    await h.slack.click(CHANNEL, proposal.ts, ActionId.PROMOTION_DISMISS, user=LEAD)
    await h.slack.wait_for(lambda: not buttons(h.slack.message(CHANNEL, proposal.ts)))
    decided = h.slack.message(CHANNEL, proposal.ts)
    assert f"*Not promoted:* `{CHECKPOINT}` stays at tier 2." in decided.blocks[0]["text"]["text"]
    assert decided.blocks[-1]["elements"][0]["text"].startswith(f"Dismissed by <@{LEAD}> ")
    await settled(h)
    assert await h.grace.store.playbook_tiers() == {}
    assert told(h, LEAD) == []
    assert await audited(h) == [("grace", "promotion.proposed"), (LEAD, "promotion.dismissed")]
    # Dismissed after 3 runs: not proposed again before 3 more.
    for n in (4, 5):
        await heal(h, n)
    assert [m.ts for m in proposals(h)] == [proposal.ts]


async def test_a_tier3_playbook_is_never_proposed(make_harness):
    h = await make_harness(playbooks=PLAYBOOKS, **EAGER)
    for n in range(1, 5):
        incident = await heal(h, n, alert="EventsCorrupt", approvers=(APPROVER, LEAD))
        assert incident.plan.playbook_id == GUARDED
    assert (await h.grace.store.playbook_stats(GUARDED)).successes == 4
    assert proposals(h) == []
    assert await audited(h) == []


async def test_a_proposal_stored_before_a_stop_is_posted_at_the_next_start_once(make_harness):
    h = await make_harness(playbooks=PLAYBOOKS, **EAGER)
    posted = await proposed(h, 3)
    # As if GRACE stopped between storing a proposal and queueing its message.
    [stored] = await h.grace.store.open_proposals()
    await h.slack.click(CHANNEL, posted.ts, ActionId.PROMOTION_DISMISS, user=LEAD)
    await h.slack.wait_for(lambda: not buttons(h.slack.message(CHANNEL, posted.ts)))
    record = await h.grace.store.playbook_stats(CHECKPOINT)
    unposted = stored.model_copy(update={"id": 0, "attempts": record.attempts + 3})
    assert await h.grace.store.propose_tier(unposted, quiet_runs=3) is not None
    await settled(h)
    assert [m.ts for m in proposals(h)] == [posted.ts]

    for _ in range(2):  # the first start posts it, the second does not post it again
        await h.grace.stop()
        h.grace = await build(h.grace.settings)
        await h.grace.start()
        h.slack.connect(f"{h.grace.url}/slack/events")
        await settled(h)
    first, second = proposals(h)
    assert first.ts == posted.ts and second.ts != posted.ts
    assert [b["action_id"] for b in buttons(second)] == [
        ActionId.PROMOTION_ACCEPT,
        ActionId.PROMOTION_DISMISS,
    ]
