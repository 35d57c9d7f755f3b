"""`/grace status`, `/grace incidents` and `/grace help` over signed requests to the real
server: what each answers, only to the person who asked, and the usage for words it cannot
read."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest

from bot.demo import APPROVER, CHANNEL
from bot.devslack import Delivery, Message
from engine.models import IncidentState
from tests.e2e.conftest import Harness
from tests.e2e.test_governance import HOSTILE_REASON, open_form, submit

S = IncidentState
LEAD = "U0LEAD"
DOMAIN = "grace-dev"  # DevSlack's team domain


def ack_text(delivery: Delivery) -> str:
    """An answer given in the ack: Slack shows it to the person who typed the command alone."""
    assert delivery.status == 200 and delivery.elapsed < 3
    answer = json.loads(delivery.body)
    assert answer["response_type"] == "ephemeral"
    return answer["text"]


async def command(h: Harness, text: str, user: str = APPROVER) -> str:
    return ack_text(await h.slack.slash_command(text, user=user, channel=CHANNEL))


async def answered_later(h: Harness, text: str, user: str = APPROVER) -> Message:
    """A command acked at once and answered through its response_url."""
    before = len(h.slack.ephemerals(user))
    delivery = await h.slack.slash_command(text, user=user, channel=CHANNEL)
    assert delivery.status == 200 and delivery.elapsed < 3 and delivery.body == ""
    return await h.slack.wait_for(
        lambda: h.slack.ephemerals(user)[before] if len(h.slack.ephemerals(user)) > before else None
    )


async def reported(h: Harness, text: str) -> str:
    """The text of a report answered after the ack, through the command's response_url."""
    return (await answered_later(h, text)).text


def link(incident_id: int, card: Message) -> str:
    url = f"https://{DOMAIN}.slack.com/archives/{CHANNEL}/p{card.ts.replace('.', '')}"
    return f"<{url}|#{incident_id}>"


def date(at) -> str:
    return f"<!date^{int(at.timestamp())}^"


def unsettled(h: Harness, lane: str) -> int:
    """Slack writes of a lane not delivered yet, read from GRACE's database file itself."""
    with sqlite3.connect(h.grace.settings.db) as conn:
        [(count,)] = conn.execute(
            "SELECT COUNT(*) FROM outbox WHERE lane = ? AND state IN ('pending', 'sending')",
            (lane,),
        )
    return count


async def test_status_says_who_paused_what_waits_what_is_held_and_what_is_queued(make_harness):
    h = await make_harness(admins=[LEAD])
    await h.alert()
    card = await h.card()
    other = h.app_db.with_name("orders.db")
    sqlite3.connect(other).close()
    await h.alert(f"[FIRING:1] SQLiteWALTooLarge db_path={other} severity=warning")
    await h.slack.wait_for(lambda: len(h.cards()) == 2)
    await h.grace.healer.drain()
    first, second = sorted(await h.incidents(), key=lambda i: i.id)
    # A run whose restore failed leaves its target held (the move holds it, as in a heal).
    store = h.grace.store
    for was, now in [
        (S.AWAITING_APPROVAL, S.APPROVED),
        (S.APPROVED, S.EXECUTING),
        (S.EXECUTING, S.SAFE_HOLD),
    ]:
        reason = (
            "verification failed; restore failed: disk <full> & more"
            if now is S.SAFE_HOLD
            else None
        )
        assert await store.transition(second.id, was, now, actor="grace", reason=reason)
    [hold] = await store.holds()

    pause = await answered_later(h, "pause db migration <until 18:00> & after", user=LEAD)
    assert "paused" in pause.text
    paused = await store.paused()
    # Slack is down: a new incident's card waits in the outbox.
    h.slack.outage_status, h.slack.outage_retry_after = 429, 1
    h.slack.outage = True
    third_db = h.app_db.with_name("payments.db")
    sqlite3.connect(third_db).close()
    await h.alert(f"[FIRING:1] SQLiteWALTooLarge db_path={third_db} severity=warning")
    await h.grace.healer.drain()
    third = max(await h.incidents(), key=lambda i: i.id)
    assert third.state is S.AWAITING_APPROVAL and third.card_ts is None

    answer = await answered_later(h, "status")

    assert answer.recipient == APPROVER and answer not in h.slack.messages(CHANNEL)
    text = answer.text
    assert f":double_vertical_bar: *Paused* by <@{LEAD}> since {date(paused.at)}" in text
    assert ": db migration &lt;until 18:00&gt; &amp; after. Nothing new runs" in text
    assert (
        "*Open incidents:* 3 (:hourglass_flowing_sand: Awaiting approval 2 · "
        ":octagonal_sign: Safe hold 1)"
    ) in text
    assert "*Waiting for approval:* 2" in text
    pending = [line for line in text.splitlines() if "needs one approver" in line]
    assert len(pending) == 2
    assert pending[0].startswith(f"• {link(first.id, card)} · `sqlite-wal-checkpoint` on sqlite `")
    assert f"expires {date(first.deadline)}" in pending[0] and "(in 29 min)" in pending[0]
    assert pending[1].startswith(f"• #{third.id} (no card yet) · ")
    assert "*Executors that cannot act:*" in text
    assert "• `service`: no services are configured" in text
    assert f"• `{other}` (sqlite) since {date(hold.held_at)}" in text
    assert (
        f"incident #{second.id}: verification failed; restore failed: disk &lt;full&gt; &amp; "
        f"more. An admin runs `/grace clear {other}` once it is checked."
    ) in text
    assert "*Open breakers:* none" in text
    queued = unsettled(h, CHANNEL)
    assert f"• <#{CHANNEL}>: {queued} waiting, the oldest for " in text

    # Slack back, GRACE resumed: the answer says so and the outbox is empty.
    h.slack.outage = False
    await h.grace.outbox.idle()
    await answered_later(h, "resume", user=LEAD)
    await h.grace.healer.drain()
    await h.grace.outbox.idle()
    text = (await answered_later(h, "status")).text
    assert ":arrow_forward: *Running*: not paused." in text
    assert "*Slack outbox:* empty, everything is delivered" in text
    posted = await store.get_incident(third.id)
    assert f"• {link(third.id, h.slack.message(CHANNEL, posted.card_ts))} · " in text


async def test_incidents_lists_open_then_all_with_links_and_tells_one_story(make_harness):
    h = await make_harness()
    assert await reported(h, "incidents") == (
        "No open incidents. `/grace incidents all` lists the ended ones too."
    )
    assert await reported(h, "incidents all") == "GRACE has had no incidents yet."
    await h.alert()
    card = await h.card()
    await h.click(card)
    healed = await h.finished(card)
    assert healed.state is S.RESOLVED
    await h.alert()  # the group was released: a new incident, rejected below
    await h.slack.wait_for(lambda: len(h.cards()) == 2)
    second_card = h.cards()[1]
    await h.grace.healer.drain()
    await h.grace.outbox.idle()
    rejected = await h.grace.store.incident_for_card(CHANNEL, second_card.ts)

    listed = await reported(h, "incidents")
    assert listed.startswith("*Open incidents* (1, newest first)\n")
    [line] = [x for x in listed.splitlines() if x.startswith("• ")]
    assert line.startswith(f"• {link(rejected.id, second_card)} · :hourglass_flowing_sand: ")
    assert re.search(
        r" · opened \d+ s ago · `SQLiteWALTooLarge` · `sqlite-wal-checkpoint` on ", line
    )

    form = await open_form(h, second_card)
    await submit(h, form, HOSTILE_REASON)
    await h.slack.wait_for(lambda: any("Rejected by" in t for t in h.thread(second_card)))
    await h.grace.healer.drain()

    everything = await reported(h, "incidents all")
    lines = [x for x in everything.splitlines() if x.startswith("• ")]
    assert everything.startswith("*Incidents* (2, newest first)\n")
    assert lines[0].startswith(f"• {link(rejected.id, second_card)} · :no_entry_sign: Rejected")
    assert lines[1].startswith(f"• {link(healed.id, card)} · :white_check_mark: Resolved")

    story = await reported(h, f"incidents {healed.id}")
    assert story == await reported(h, f"incidents #{healed.id}")
    assert story.startswith(
        f"*Incident #{healed.id}: SQLiteWALTooLarge* · :white_check_mark: Resolved · <https://"
    )
    assert "*Alert:* `SQLiteWALTooLarge` from `slack`, severity `warning`" in story
    assert "received 1 time(s) from 1 alert(s), 1 of 1 still firing" in story
    assert "*Plan:* Checkpoint the WAL (`sqlite-wal-checkpoint`, tier 2: one approver)" in story
    states = [
        "open",
        "diagnosed",
        "awaiting approval, expires <!date^",
        f"approved by <@{APPROVER}>",
        "executing",
        "verifying",
        "resolved",
    ]
    at = [story.index(f"> {s}") for s in states]
    assert at == sorted(at)
    assert "*Decisions:* 1\n• <!date^" in story and f"<@{APPROVER}> approved" in story
    assert "Snapshot taken: `" in story
    assert "Step `wal_checkpoint` succeeded" in story
    assert "*Verification passed:*" in story and "`integrity_ok`" in story
    assert "*Outcome:* :white_check_mark: success: ended resolved after " in story

    told = await reported(h, f"incidents {rejected.id}")
    assert f"<@{APPROVER}> rejected: " in told
    assert "&lt;!channel&gt; a migration runs until 18:00 &amp; &lt;https://evil" in told
    assert "<!channel>" not in told and "<https://evil" not in told
    assert "*Outcome:* ended rejected " in told and "What was done" not in told

    assert await reported(h, "incidents 999") == (
        "There is no incident #999. `/grace incidents all` lists them."
    )


INCIDENTS_USAGE = "Usage: `/grace incidents [open|all|N]`"


@pytest.mark.parametrize(
    ("text", "usage"),
    [
        ("incidents yesterday", INCIDENTS_USAGE),
        ("incidents 1 2", INCIDENTS_USAGE),
        ("incidents 0", INCIDENTS_USAGE),
        ("incidents -3", INCIDENTS_USAGE),
        ("incidents #", INCIDENTS_USAGE),
        ("status now", "Usage: `/grace status`"),
        ("playbooks all", "Usage: `/grace playbooks`"),
        ("cloud aws", "Usage: `/grace cloud`"),
        ("stats 7", "Usage: `/grace stats [7d|30d|90d]`"),
        ("stats 7d 30d", "Usage: `/grace stats [7d|30d|90d]`"),
        ("stats week", "Usage: `/grace stats [7d|30d|90d]`"),
        ("resume now", "Usage: `/grace resume`"),
        ("clear", "Usage: `/grace clear TARGET`"),
        ("heal sqlite-wal-checkpoint", "Usage: `/grace heal PLAYBOOK TARGET [--dry-run]`"),
    ],
)
async def test_words_a_command_cannot_read_are_answered_with_its_usage(make_harness, text, usage):
    h = await make_harness()
    answer = await command(h, text)
    assert usage in answer
    await h.grace.healer.drain()
    assert await h.grace.store.paused() is None and await h.incidents() == []


@pytest.mark.parametrize(("text", "word"), [("frobnicate <@U0BOSS>", "frobnicate")])
async def test_an_unknown_subcommand_lists_the_commands(make_harness, text, word):
    h = await make_harness()
    answer = await command(h, text)
    assert answer.startswith(f"Unknown subcommand `{word}`.\n*GRACE* heals")
    assert "/grace status" in answer and "/grace incidents [open|all|N]" in answer
    assert "/grace stats [7d|30d|90d]" in answer


@pytest.mark.parametrize("text", ["", "help", "  HELP  "])
async def test_help_lists_only_what_exists(make_harness, text):
    h = await make_harness()
    answer = await command(h, text)
    for usage in [
        "/grace help",
        "/grace status",
        "/grace incidents [open|all|N]",
        "/grace playbooks",
        "/grace heal PLAYBOOK TARGET",
        "--dry-run",
        "/grace pause [reason]",
        "/grace resume",
        "/grace clear TARGET",
        "/grace cloud",
        "/grace stats [7d|30d|90d]",
    ]:
        assert usage in answer
    assert "not built" not in answer.lower()


async def test_stats_say_what_grace_did_and_an_empty_period_says_so(make_harness):
    h = await make_harness()
    empty = await reported(h, "stats")
    assert empty.startswith("*GRACE over the last 7 days* (")
    assert "No incidents and no heals in this period. The 7 days before: 0 incidents." in empty

    await h.alert()
    card = await h.card()
    await h.click(card)
    await h.finished(card)
    answer = await reported(h, "stats 30D")
    assert answer.startswith("*GRACE over the last 30 days* (")
    assert (
        "*Incidents:* 1 (:arrow_up: 1 from 0 the period before) · healed without a human 0"
        in answer
    )
    assert "approved 1 · rejected 0 · expired 0 · needed a human 0" in answer
    assert "*Heals:* 1 ran, 1 succeeded (100%; none ran the period before)" in answer
    assert "*Top alerts:* `SQLiteWALTooLarge` 1" in answer
    assert (
        "• `sqlite-wal-checkpoint` (tier 2): 1 run, 1/1 succeeded, 21% at worst, median " in answer
    )
