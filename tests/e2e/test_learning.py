"""Learning that changes what GRACE does: competing playbooks ranked by their record."""

from __future__ import annotations

import json
import sqlite3

from bot.demo import APPROVER, CHANNEL
from engine.models import IncidentState as S
from tests.e2e.test_governance import open_form, submit
from tests.e2e.test_wal_incident import IMPOSSIBLE_CHECK, TIER1

# Two playbooks for one diagnosis, both tier 1: the first in the catalog never
# passes its verification, the second does.
STRICT, NOW = "sqlite-wal-checkpoint-strict", "sqlite-wal-checkpoint-now"
COMPETING = IMPOSSIBLE_CHECK + TIER1.split("playbooks:\n", 1)[1]


def _field(card, name: str) -> str:
    for block in card.blocks:
        for field in block.get("fields", []):
            title, _, value = field["text"].partition("\n")
            if title == f"*{name}*":
                return value
    raise AssertionError(f"no {name} field on the card")


async def test_competing_playbooks_are_ranked_by_their_record_and_the_card_says_why(
    make_harness,
):
    h = await make_harness(playbooks=COMPETING)

    async def heal(db_name: str):
        """An integration's alert about another database: a new incident, healed at once."""
        db = h.app_db.with_name(db_name)
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY)")
        before = len(h.cards())
        await h.integration_alert(f"[FIRING:1] SQLiteWALTooLarge db_path={db} severity=warning")
        card = await h.slack.wait_for(
            lambda: h.cards()[before] if len(h.cards()) > before else None
        )
        incident = await h.finished(card)
        return incident, h.slack.message(CHANNEL, card.ts)

    # None has run (the built-in competes too): the catalog's order decides.
    first, card = await heal("first.db")
    assert first.plan.playbook_id == STRICT and first.state is S.ROLLED_BACK
    assert _field(card, "Why this playbook") == (
        f"`{STRICT}`: never run yet. Ranked above `{NOW}`: never run yet;"
        " `sqlite-wal-checkpoint`: never run yet"
    )

    # All are 0% at worst now; those that have not failed get their chance, in order.
    second, card = await heal("second.db")
    assert second.plan.playbook_id == NOW and second.state is S.RESOLVED
    why = _field(card, "Why this playbook")
    assert why.startswith("`sqlite-wal-checkpoint-now`: never run yet. Ranked above ")
    assert "`sqlite-wal-checkpoint-strict`: 0/1 succeeded, 0% at worst, median " in why

    # One success is evidence (21% at worst); a failure and no run are none.
    third, card = await heal("third.db")
    assert third.plan.playbook_id == NOW and third.state is S.RESOLVED
    why = _field(card, "Why this playbook")
    assert why.startswith("`sqlite-wal-checkpoint-now`: 1/1 succeeded, 21% at worst, median ")
    assert why.endswith(
        "Ranked above `sqlite-wal-checkpoint`: never run yet;"
        " `sqlite-wal-checkpoint-strict`: 0/1 succeeded, 0% at worst, median 0 s"
    )


# A problem only the failing playbook treats: nothing else competes for its runs.
FAILING_TIER1 = """
patterns:
  - id: events-missing
    problem: events_missing
    alertname: [EventsMissing]
    target: {db_path: {labels: [db_path], value: '(/.+)', text: '(/\\S+[.]db)'}}
    explanation: Events are missing from {db_path}.
""" + IMPOSSIBLE_CHECK.replace("[sqlite_wal_too_large]", "[events_missing]")


async def test_a_tier1_playbook_that_keeps_failing_is_demoted_and_the_next_card_asks(
    make_harness,
):
    h = await make_harness(playbooks=FAILING_TIER1)

    async def alert(n: int):
        db = h.app_db.with_name(f"db{n}.db")
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY)")
        before = len(h.cards())
        await h.integration_alert(f"[FIRING:1] EventsMissing db_path={db} severity=warning")
        cards = h.cards
        return await h.slack.wait_for(lambda: cards()[before] if len(cards()) > before else None)

    for n in range(1, 5):  # four failures are too few runs to judge
        card = await alert(n)
        assert (await h.finished(card)).state is S.ROLLED_BACK
        assert not any("Demoted" in line for line in h.thread(card))
    card = await alert(5)
    assert (await h.finished(card)).state is S.ROLLED_BACK
    [demoted] = [line for line in h.thread(card) if "Demoted" in line]
    assert demoted.startswith(
        ":arrow_down: Demoted `sqlite-wal-checkpoint-strict` from tier 1 to tier 2 (one approver)"
        " from now on: 0/5 succeeded, 0% at worst, median "
    )
    assert "under the 80% floor after 5 runs" in demoted

    # The next alert's plan waits for an approval, and says which tier it is at.
    card = await alert(6)
    await h.grace.healer.drain()
    await h.grace.outbox.idle()
    incident = await h.grace.store.incident_for_card(CHANNEL, card.ts)
    assert incident.state is S.AWAITING_APPROVAL
    assert (incident.plan.tier, incident.plan.required_approvals) == (2, 1)
    assert "2 (one approver)" in _field(h.slack.message(CHANNEL, card.ts), "Tier")
    asked = await h.slack.slash_command("playbooks", user=APPROVER, channel=CHANNEL)
    listed = json.loads(asked.body)["text"]
    assert f"`{STRICT}`: Checkpoint the WAL and expect a billion rows · *tier 2*" in listed
    assert "demoted from tier 1" in listed
    stats = await h.slack.slash_command("stats", user=APPROVER, channel=CHANNEL)
    assert stats.body == ""  # answered after the ack, through the response_url
    answer = await h.slack.wait_for(lambda: next(iter(h.slack.ephemerals(APPROVER)), None))
    assert f"• `{STRICT}` (tier 2, demoted from 1): 5 runs, 0/5 succeeded" in answer.text


def _outcomes(h) -> list[sqlite3.Row]:
    with sqlite3.connect(h.grace.settings.db) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute("SELECT * FROM outcomes ORDER BY id").fetchall()


async def test_an_outcome_tells_the_whole_heal_who_approved_and_how_long_each_stage_took(
    make_harness,
):
    h = await make_harness()
    await h.alert()
    card = await h.card()
    await h.click(card)
    incident = await h.finished(card)
    assert incident.state is S.RESOLVED
    [row] = _outcomes(h)
    assert (row["playbook_id"], row["pattern_id"], row["success"]) == (
        "sqlite-wal-checkpoint",
        "sqlite-wal-too-large",
        1,
    )
    assert (row["target_kind"], row["target"]) == ("sqlite", str(h.app_db))
    assert json.loads(row["approvers"]) == [APPROVER]
    assert 0 <= row["approval_wait_s"] < 60
    stages = json.loads(row["stages"])
    assert set(stages) == {"measure", "steps", "verify"}
    assert all(0 <= took <= row["seconds"] for took in stages.values())


async def test_a_rolled_back_heal_records_its_rollback_stage_and_no_approver(make_harness):
    h = await make_harness(playbooks=IMPOSSIBLE_CHECK)
    await h.integration_alert()
    assert (await h.finished(await h.card())).state is S.ROLLED_BACK
    [row] = _outcomes(h)
    assert row["success"] == 0 and row["final_state"] == "rolled_back"
    assert "rollback" in json.loads(row["stages"])
    assert json.loads(row["approvers"]) == [] and row["approval_wait_s"] is None


async def test_a_rejected_card_leaves_an_end_row_that_no_record_counts(make_harness):
    h = await make_harness()
    await h.alert()
    card = await h.card()
    await h.grace.healer.drain()
    form = await open_form(h, card)
    await submit(h, form, "a migration runs until 18:00")
    await h.slack.wait_for(lambda: any("Rejected by" in t for t in h.thread(card)))
    await h.grace.healer.drain()
    [row] = _outcomes(h)
    assert (row["final_state"], row["heal"], row["success"]) == ("rejected", 0, 0)
    assert (row["playbook_id"], row["target"]) == ("sqlite-wal-checkpoint", str(h.app_db))
    assert (await h.grace.store.playbook_stats("sqlite-wal-checkpoint")).attempts == 0
