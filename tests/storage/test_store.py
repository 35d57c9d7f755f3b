"""SqliteStore against real files: intake, CAS transitions, approvals, learning."""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.models import (
    Alert,
    Approval,
    BenchmarkResult,
    CheckResult,
    Decision,
    Diagnosis,
    IncidentState,
    Outcome,
    Plan,
    Snapshot,
    StepResult,
    Target,
    Verification,
)
from engine.ports import Store
from storage import audit
from storage.store import SqliteStore
from tests.storage.conftest import T0, FakeClock, open_incident

S = IncidentState


def _count(db_path: Path, table: str) -> int:
    with sqlite3.connect(db_path) as conn:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def _counts(db_path: Path) -> dict[str, int]:
    return {t: _count(db_path, t) for t in ("deliveries", "alerts", "incidents", "audit_log")}


def test_implements_the_store_port_exactly() -> None:
    port_methods = {
        name for name, value in vars(Store).items() if inspect.iscoroutinefunction(value)
    }
    assert port_methods, "the Store protocol has methods"
    for name in port_methods:
        assert inspect.signature(getattr(SqliteStore, name)) == inspect.signature(
            getattr(Store, name)
        ), name
        assert inspect.iscoroutinefunction(getattr(SqliteStore, name)), name


async def test_a_failing_write_leaves_nothing_behind(
    store: SqliteStore, db_path: Path, clock: FakeClock
) -> None:
    def half_done(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO deliveries (delivery_key, received_at) VALUES ('k', 'now')")
        audit.append(conn, at=clock.now(), actor="grace", action="half")
        raise RuntimeError("midway")

    before = _counts(db_path)
    with pytest.raises(RuntimeError, match="midway"):
        await store.writer.run(half_done)
    assert _counts(db_path) == before


# -- transitions ---------------------------------------------------------


async def test_every_transition_leaves_an_audit_row(
    store: SqliteStore, make_alert: Callable[..., Alert], diagnosis: Diagnosis, plan: Plan
) -> None:
    inc = await open_incident(store, make_alert(), "d-1")
    assert inc is not None
    path = [
        (S.OPEN, S.DIAGNOSED, {"diagnosis": diagnosis}),
        (S.DIAGNOSED, S.AWAITING_APPROVAL, {"plan": plan}),
        (S.AWAITING_APPROVAL, S.APPROVED, {}),
        (S.APPROVED, S.EXECUTING, {}),
        (S.EXECUTING, S.VERIFYING, {}),
        (S.VERIFYING, S.RESOLVED, {"reason": "disk at 40%"}),
    ]
    for expected, new, extra in path:
        assert await store.transition(inc.id, expected, new, actor="U0LEAD", **extra)

    entries = await store.audit_entries(inc.id)
    assert [e.action for e in entries] == ["alerts.received"] + [
        f"incident.{n}" for _, n, _ in path
    ]
    transitions = entries[1:]
    assert all(e.actor == "U0LEAD" for e in transitions)
    assert [(e.detail["from"], e.detail["to"]) for e in transitions] == [
        (a.value, b.value) for a, b, _ in path
    ]
    assert transitions[1].detail["plan_hash"] == plan.hash
    assert transitions[-1].detail["reason"] == "disk at 40%"
    final = await store.get_incident(inc.id)
    assert final is not None and final.reason == "disk at 40%"
    assert (await store.verify_audit()).ok


async def test_stale_transition_returns_none_and_writes_nothing(
    store: SqliteStore, make_alert: Callable[..., Alert], db_path: Path
) -> None:
    inc = await open_incident(store, make_alert(), "d-1")
    assert inc is not None
    assert await store.transition(inc.id, S.OPEN, S.NEEDS_HUMAN, actor="grace")
    before = _counts(db_path)
    assert await store.transition(inc.id, S.OPEN, S.DIAGNOSED, actor="grace") is None
    assert await store.transition(999, S.OPEN, S.DIAGNOSED, actor="grace") is None
    assert _counts(db_path) == before
    current = await store.get_incident(inc.id)
    assert current is not None and current.state is S.NEEDS_HUMAN


async def test_two_replicas_on_one_file_exactly_one_wins(
    db_path: Path, clock: FakeClock, make_alert: Callable[..., Alert]
) -> None:
    """Two stores are two connections, as two processes would have: the CAS is in the SQL."""
    first = await SqliteStore.open(db_path, clock)
    second = await SqliteStore.open(db_path, clock)
    try:
        incidents = [await open_incident(first, make_alert(), f"d-{n}") for n in range(20)]
        for inc in incidents:
            assert inc is not None
            results = await asyncio.gather(
                first.transition(inc.id, S.OPEN, S.DIAGNOSED, actor="replica-1"),
                second.transition(inc.id, S.OPEN, S.DIAGNOSED, actor="replica-2"),
            )
            assert sum(r is not None for r in results) == 1
        assert (await second.verify_audit()).ok
        assert len(await second.audit_entries()) == 40
    finally:
        await first.close()
        await second.close()


# -- listing -------------------------------------------------------------


async def test_list_incidents_newest_first_and_by_state(
    store: SqliteStore, make_alert: Callable[..., Alert]
) -> None:
    ids = []
    for n in range(4):
        inc = await open_incident(store, make_alert(), f"d-{n}")
        assert inc is not None
        ids.append(inc.id)
    await store.transition(ids[1], S.OPEN, S.NEEDS_HUMAN, actor="grace")
    await store.transition(ids[3], S.OPEN, S.DIAGNOSED, actor="grace")

    assert [i.id for i in await store.list_incidents()] == ids[::-1]
    assert [i.id for i in await store.list_incidents(limit=2)] == ids[:1:-1]
    assert [i.id for i in await store.list_incidents(states=[S.OPEN])] == [ids[2], ids[0]]
    both = await store.list_incidents(states=(S.NEEDS_HUMAN, S.DIAGNOSED))
    assert [i.id for i in both] == [ids[3], ids[1]]
    assert await store.list_incidents(states=[]) == []


async def test_active_incident_by_fingerprint(
    store: SqliteStore, make_alert: Callable[..., Alert]
) -> None:
    alert = make_alert()
    inc = await open_incident(store, alert, "d-1")
    assert inc is not None
    active = await store.active_incident(alert.fingerprint)
    assert active is not None and active.id == inc.id
    await store.transition(inc.id, S.OPEN, S.AUTO_RESOLVED, actor="grace")
    assert await store.active_incident(alert.fingerprint) is None


# -- approvals -----------------------------------------------------------


async def test_approvals_are_unique_per_user(
    store: SqliteStore, make_alert: Callable[..., Alert], plan: Plan, db_path: Path
) -> None:
    inc = await open_incident(store, make_alert(), "d-1")
    assert inc is not None
    first = Approval(
        incident_id=inc.id, user="U1", plan_hash=plan.hash, decision=Decision.APPROVE, at=T0
    )
    assert await store.add_approval(first) is True
    before = _counts(db_path)
    changed_mind = first.model_copy(update={"decision": Decision.REJECT, "reason": "no"})
    assert await store.add_approval(changed_mind) is False
    assert _counts(db_path) == before
    second = first.model_copy(update={"user": "U2", "reason": "looks right"})
    assert await store.add_approval(second) is True

    assert await store.approvals(inc.id) == [first, second]
    actions = [e.action for e in await store.audit_entries(inc.id)]
    assert actions.count("approval.approve") == 2


async def test_approval_for_unknown_incident_is_refused(store: SqliteStore, plan: Plan) -> None:
    ghost = Approval(
        incident_id=42, user="U1", plan_hash=plan.hash, decision=Decision.APPROVE, at=T0
    )
    with pytest.raises(sqlite3.IntegrityError):
        await store.add_approval(ghost)
    assert await store.approvals(42) == []


# -- snapshots, actions, verifications ------------------------------------


async def test_snapshots_actions_and_verifications_round_trip(
    store: SqliteStore, make_alert: Callable[..., Alert]
) -> None:
    inc = await open_incident(store, make_alert(), "d-1")
    assert inc is not None
    snap = Snapshot(
        incident_id=inc.id,
        target=Target(executor="sqlite", name="/var/lib/app/main.db"),
        location="/var/lib/grace/snapshots/1/main.db",
        size_bytes=123_456,
        taken_at=T0,
    )
    await store.add_snapshot(snap)
    assert await store.snapshots(inc.id) == [snap]

    steps = [
        StepResult(action="checkpoint", ok=True, detail="wal truncated", seconds=0.25),
        StepResult(action="vacuum", ok=False, detail="database is locked", seconds=5.0),
    ]
    for step in steps:
        await store.add_action(inc.id, step)
    assert await store.actions(inc.id) == steps

    passed = Verification(
        checks=(CheckResult(check="integrity", ok=True, detail="ok"),),
        benchmarks=(BenchmarkResult(benchmark="read", before_s=0.1, after_s=0.09, tolerance=0.2),),
    )
    failed = Verification(checks=(CheckResult(check="integrity", ok=False, detail="bad page"),))
    await store.add_verification(inc.id, passed)
    await store.add_verification(inc.id, failed)
    assert await store.verifications(inc.id) == [passed, failed]
    assert [v.ok for v in await store.verifications(inc.id)] == [True, False]
    assert await store.actions(inc.id + 1) == []


# -- learning ------------------------------------------------------------


async def test_median_covers_only_the_latest_hundred(
    store: SqliteStore, make_alert: Callable[..., Alert], clock: FakeClock
) -> None:
    inc = await open_incident(store, make_alert(), "d-1")
    assert inc is not None
    # 100 old slow runs, then 60 fast ones: over all 160 the median is 100 s,
    # over the latest 100 (60 fast, 40 slow) it is 1 s.
    for seconds in [100.0] * 100 + [1.0] * 60:
        stats = await store.record_outcome(
            Outcome(
                incident_id=inc.id,
                playbook_id="vacuum",
                success=True,
                seconds=seconds,
                final_state=S.RESOLVED,
                at=clock.advance(60),
            )
        )
    assert stats.attempts == 160
    assert stats.median_seconds == 1.0


async def test_outcome_for_unknown_incident_changes_no_stats(store: SqliteStore) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        await store.record_outcome(
            Outcome(
                incident_id=7,
                playbook_id="vacuum",
                success=True,
                seconds=1.0,
                final_state=S.RESOLVED,
                at=T0,
            )
        )
    assert (await store.playbook_stats("vacuum")).attempts == 0


async def test_data_survives_reopen(
    db_path: Path, clock: FakeClock, make_alert: Callable[..., Alert], plan: Plan
) -> None:
    async with await SqliteStore.open(db_path, clock) as store:
        inc = await open_incident(store, make_alert(), "d-1")
        assert inc is not None
        await store.transition(inc.id, S.OPEN, S.DIAGNOSED, actor="grace")
        saved = await store.transition(inc.id, S.DIAGNOSED, S.APPROVED, actor="grace", plan=plan)
    async with await SqliteStore.open(db_path, clock) as store:
        assert await store.get_incident(inc.id) == saved
        assert (await store.verify_audit()).rows == 3
