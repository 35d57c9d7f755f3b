"""Every end leaves one outcome row; only heals that ran count in a playbook's record."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from engine.models import Approval, Decision, Diagnosis, Outcome, Plan
from engine.models import IncidentState as S
from storage.store import SqliteStore
from tests.storage.conftest import FakeClock, open_incident


def _rows(db_path: Path) -> list[sqlite3.Row]:
    conn = sqlite3.connect(db_path)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute("SELECT * FROM outcomes ORDER BY id").fetchall()
    finally:
        conn.close()


async def _planned(store, clock, make_alert, key, diagnosis: Diagnosis, plan: Plan):
    incident = await open_incident(store, make_alert(name="DiskAlmostFull"), key)
    clock.advance(5)
    await store.transition(incident.id, S.OPEN, S.DIAGNOSED, actor="grace", diagnosis=diagnosis)
    moved = await store.transition(
        incident.id, S.DIAGNOSED, S.AWAITING_APPROVAL, actor="grace", plan=plan
    )
    assert moved is not None
    return moved


async def test_a_rejection_leaves_a_row_with_its_playbook_target_and_who_decided(
    store: SqliteStore, clock: FakeClock, make_alert, db_path: Path, diagnosis, plan
):
    incident = await _planned(store, clock, make_alert, "d1", diagnosis, plan)
    clock.advance(55)
    approval = Approval(
        incident_id=incident.id,
        user="U0ONCALL",
        plan_hash=plan.hash,
        decision=Decision.APPROVE,
        at=clock.now(),
    )
    assert await store.add_approval(approval)
    clock.advance(20)
    await store.transition(incident.id, S.AWAITING_APPROVAL, S.REJECTED, actor="U0LEAD")

    [row] = _rows(db_path)
    assert row["final_state"] == "rejected"
    assert (row["heal"], row["success"]) == (0, 0)
    assert (row["playbook_id"], row["pattern_id"]) == ("rotate-logs", "disk-full")
    assert (row["target_kind"], row["target"]) == ("files", "/var/log/app")
    assert json.loads(row["approvers"]) == ["U0ONCALL"]
    assert row["approval_wait_s"] == 60.0
    assert row["seconds"] == 80.0  # opened to ended
    # Nothing ran: the playbook's record is untouched.
    assert (await store.playbook_stats("rotate-logs")).attempts == 0
    story = await store.incident_story(incident.id)
    assert story is not None and story.outcome is None  # no heal to tell of


async def test_expiry_needs_a_human_and_an_interruption_each_leave_one_row(
    store: SqliteStore, clock: FakeClock, make_alert, db_path: Path, diagnosis, plan
):
    expired = await _planned(store, clock, make_alert, "d1", diagnosis, plan)
    await store.transition(expired.id, S.AWAITING_APPROVAL, S.EXPIRED, actor="grace")
    unplanned = await open_incident(store, make_alert(name="CPUThrottling"), "d2")
    await store.transition(unplanned.id, S.OPEN, S.NEEDS_HUMAN, actor="grace", reason="no plan")
    cut = await _planned(store, clock, make_alert, "d3", diagnosis, plan)
    for current, new in [
        (S.AWAITING_APPROVAL, S.APPROVED),
        (S.APPROVED, S.EXECUTING),
        (S.EXECUTING, S.INTERRUPTED),
    ]:
        assert await store.transition(cut.id, current, new, actor="grace") is not None

    rows = _rows(db_path)
    assert [(r["incident_id"], r["final_state"]) for r in rows] == [
        (expired.id, "expired"),
        (unplanned.id, "needs_human"),
        (cut.id, "interrupted"),
    ]
    assert all(r["heal"] == 0 for r in rows)
    assert (rows[1]["playbook_id"], rows[1]["pattern_id"], rows[1]["target"]) == ("", None, "")


async def test_a_heal_counts_once_and_its_own_end_row_is_not_doubled(
    store: SqliteStore, clock: FakeClock, make_alert, db_path: Path, diagnosis, plan
):
    incident = await _planned(store, clock, make_alert, "d1", diagnosis, plan)
    for current, new in [
        (S.AWAITING_APPROVAL, S.APPROVED),
        (S.APPROVED, S.EXECUTING),
        (S.EXECUTING, S.ROLLED_BACK),
    ]:
        await store.transition(incident.id, current, new, actor="grace")
    stats = await store.record_outcome(
        Outcome(
            incident_id=incident.id,
            playbook_id="rotate-logs",
            success=False,
            seconds=12.0,
            final_state=S.ROLLED_BACK,
            at=clock.now(),
        )
    )
    [row] = _rows(db_path)
    assert (row["heal"], row["final_state"]) == (1, "rolled_back")
    assert (stats.attempts, stats.successes, stats.median_seconds) == (1, 0, 12.0)
    story = await store.incident_story(incident.id)
    assert story is not None and story.outcome is not None
