"""The hourly counters behind period statistics: kept by every writer in its own
transaction, equal to a fresh count of the rows, and built for an old database
by migration 017 so its statistics read the same after the upgrade."""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import tempfile
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine.models import TRANSITIONS, Alert, Approval, Decision, Outcome, PlaybookStats
from engine.models import IncidentState as S
from engine.stats import PeriodStats, percentile
from storage.alert_rows import alert_row
from storage.db import connect, load_migrations, migrate, time_text
from storage.rows import INSERT_ALERT
from storage.stats import period_stats
from storage.store import SqliteStore
from tests.storage.conftest import T0, FakeClock, open_incident

COUNTERS = 17
HOUR0 = T0.replace(minute=0, second=0, microsecond=0)

# The scan storage/stats.py made before the counters: the reference they must equal.
_BY_STATE = (
    "SELECT state, COUNT(*) FROM incidents WHERE created_at >= ? AND created_at < ? GROUP BY state"
)
_APPROVED = """
SELECT i.id, i.state, max(0.0, (julianday(MIN(a.at)) - julianday(i.created_at)) * 86400.0)
FROM incidents AS i JOIN approvals AS a ON a.incident_id = i.id AND a.decision = 'approve'
WHERE i.created_at >= ? AND i.created_at < ? GROUP BY i.id
"""
_RESOLVED_TOOK = """
SELECT (julianday(updated_at) - julianday(created_at)) * 86400.0
FROM incidents WHERE created_at >= ? AND created_at < ? AND state = 'resolved'
"""
_ALERTS = (
    "SELECT alert_name, COUNT(*) AS n FROM incidents WHERE created_at >= ? AND created_at < ?"
    " GROUP BY alert_name ORDER BY n DESC, alert_name LIMIT 5"
)
_HEALS = "SELECT playbook_id, success, seconds FROM outcomes WHERE at >= ? AND at < ? AND heal = 1"

_COUNTS = """
SELECT s.hours, s.hour, k.metric, k.key, s.value, s.n, s.ok
FROM stats_hourly AS s JOIN stats_keys AS k ON k.id = s.key_id WHERE s.n != 0 ORDER BY 1, 2, 3, 4, 5
"""


def scan(path: Path, since: datetime, until: datetime, *, rounded: bool) -> PeriodStats:
    """The period as the old scan read it; `rounded` puts each duration in its bucket."""
    conn = sqlite3.connect(path)
    try:

        def bucket(value: float) -> float:
            if not rounded:
                return value
            return conn.execute("SELECT CAST(printf('%.1e', ?) AS REAL)", (value,)).fetchone()[0]

        span = (time_text(since), time_text(until))
        by_state = dict(conn.execute(_BY_STATE, span).fetchall())
        approved = conn.execute(_APPROVED, span).fetchall()
        resolved = by_state.get("resolved", 0)
        took = [bucket(v) for (v,) in conn.execute(_RESOLVED_TOOK, span)]
        waits = [bucket(w) for _, _, w in approved]
        heals: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for playbook, ok, seconds in conn.execute(_HEALS, span):
            heals[playbook].append((ok, bucket(seconds)))
        playbooks = [
            PlaybookStats(
                playbook_id=p,
                attempts=len(h),
                successes=sum(ok for ok, _ in h),
                median_seconds=statistics.median(s for _, s in h),
            )
            for p, h in heals.items()
        ]
        return PeriodStats(
            since=since,
            until=until,
            incidents=sum(by_state.values()),
            resolved=resolved,
            healed_alone=resolved - sum(1 for _, state, _ in approved if state == "resolved"),
            approved=len(approved),
            rejected=by_state.get("rejected", 0),
            expired=by_state.get("expired", 0),
            needed_human=sum(
                by_state.get(s, 0) for s in ("needs_human", "safe_hold", "interrupted")
            ),
            heals=sum(p.attempts for p in playbooks),
            heal_successes=sum(p.successes for p in playbooks),
            resolve_p50_s=percentile(took, 0.5),
            resolve_p90_s=percentile(took, 0.9),
            approve_p50_s=percentile(waits, 0.5),
            approve_p90_s=percentile(waits, 0.9),
            top_alerts=tuple(conn.execute(_ALERTS, span).fetchall()),
            playbooks=tuple(sorted(playbooks, key=lambda p: (-p.attempts, p.playbook_id))),
        )
    finally:
        conn.close()


def counts(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(_COUNTS).fetchall()


def recounted(path: Path) -> list[tuple[Any, ...]]:
    """The counters as migration 017's backfill makes them from the rows stored now."""
    [migration] = [m for m in load_migrations() if m.version == COUNTERS]
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        conn.execute("DELETE FROM stats_hourly")
        conn.execute("DELETE FROM stats_keys")
        for statement in migration.statements():
            if "CREATE TABLE stats_" not in statement:
                conn.execute(statement)
        return conn.execute(_COUNTS).fetchall()
    finally:
        conn.execute("ROLLBACK")
        conn.close()


async def read(path: Path, since: datetime, until: datetime) -> PeriodStats:
    conn = await connect(path)
    try:
        return await period_stats(conn, since, until)
    finally:
        await conn.close()


def alert(n: int, name: str) -> Alert:
    return Alert(
        source="test",
        source_key=f"k{n}",
        name=name,
        labels={"n": str(n)},
        channel="C0",
        received_at=T0,
    )


# The steps of a heal that needed an approval.
FORWARD = {
    S.OPEN: S.DIAGNOSED,
    S.DIAGNOSED: S.AWAITING_APPROVAL,
    S.AWAITING_APPROVAL: S.APPROVED,
    S.APPROVED: S.EXECUTING,
    S.EXECUTING: S.VERIFYING,
    S.VERIFYING: S.RESOLVED,
}
NAMES = ("DiskAlmostFull", "SQLiteWALTooLarge", "CPUThrottling")
PLAYBOOKS = ("rotate-logs", "wal-checkpoint")
WAITS = (1, 59, 600, 3599, 3600, 7200, 86400, 3 * 86400, 9 * 86400)
SECONDS = st.one_of(
    st.sampled_from([0.0, 1.05, 24.0, 30.0, 125.0, 995.0]),
    st.floats(min_value=0, max_value=1e5, allow_nan=False),
)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("open"), st.lists(st.sampled_from(NAMES), min_size=1, max_size=3)),
        st.tuples(st.just("move"), st.integers(0, 99), st.integers(0, 9)),
        st.tuples(st.just("forward"), st.integers(0, 99), st.integers(1, 6)),
        st.tuples(st.just("stale"), st.integers(0, 99), st.integers(0, 9)),
        st.tuples(
            st.just("decide"),
            st.integers(0, 99),
            st.sampled_from(["U1", "U2", "U3"]),
            st.booleans(),
            st.sampled_from([0, 1, 30, 125, 4000]),
        ),
        st.tuples(
            st.just("heal"), st.integers(0, 99), st.sampled_from(PLAYBOOKS), st.booleans(), SECONDS
        ),
        st.tuples(st.just("wait"), st.sampled_from(WAITS)),
    ),
    max_size=40,
)


async def play(path: Path, ops: list[tuple[Any, ...]]) -> datetime:
    """Run the operations on a real store; returns the time after the last one."""
    clock = FakeClock()
    ids: list[int] = []
    n = 0
    async with await SqliteStore.open(path, clock) as store:
        for op, *args in ops:
            if op == "open":
                n += len(args[0])
                alerts = [alert(n - i, name) for i, name in enumerate(args[0])]
                intakes = await store.ingest_alerts(alerts, f"d{n}")
                ids += [i.incident.id for i in intakes if i.opened and i.incident]
            elif op == "wait":
                clock.advance(args[0])
            elif ids:
                incident = await store.get_incident(ids[args[0] % len(ids)])
                assert incident is not None
                await _act(store, clock, incident.id, incident.state, op, args)
        return clock.now()


async def _act(
    store: SqliteStore, clock: FakeClock, id_: int, state: S, op: str, args: list[Any]
) -> None:
    if op == "forward":
        for _ in range(args[1]):
            if state not in FORWARD:
                return
            assert await store.transition(id_, state, FORWARD[state], actor="grace") is not None
            state = FORWARD[state]
    elif op in ("move", "stale"):
        targets = sorted(TRANSITIONS[state])
        if not targets:
            return
        new = targets[args[1] % len(targets)]
        if op == "move":
            assert await store.transition(id_, state, new, actor="grace") is not None
        else:  # a compare-and-set that lost: the incident is no longer where it was
            for stale in (s for s in S if s is not state and new in TRANSITIONS[s]):
                assert await store.transition(id_, stale, new, actor="grace") is None
    elif op == "decide":
        user, approve, earlier = args[1:]
        decision = Decision.APPROVE if approve else Decision.REJECT
        at = clock.now() - timedelta(seconds=earlier)
        approval = Approval(incident_id=id_, user=user, plan_hash="p", decision=decision, at=at)
        await store.add_approval(approval)
    else:
        playbook, ok, seconds = args[1:]
        await store.record_outcome(
            Outcome(
                incident_id=id_,
                playbook_id=playbook,
                success=ok,
                seconds=seconds,
                final_state=S.RESOLVED if ok else S.ROLLED_BACK,
                at=clock.now(),
                heal=seconds != 0.0,  # an end that is no heal is not counted
            )
        )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
# Paths too narrow to trust to chance: approved then resolved; a second approval
# stamped before the first; one delivery opening incidents of one name and another.
@example(ops=[("open", ["A"]), ("decide", 0, "U1", True, 0), ("forward", 0, 6)], windows=[])
@example(
    ops=[
        ("open", ["A"]),
        ("wait", 7200),
        ("decide", 0, "U1", True, 0),
        ("decide", 0, "U2", True, 4000),
        ("forward", 0, 6),
    ],
    windows=[],
)
@example(ops=[("open", ["A", "B", "A"]), ("wait", 3600), ("open", ["A"])], windows=[(0, 1)])
@given(ops=OPS, windows=st.lists(st.tuples(st.integers(-2, 400), st.integers(1, 400)), max_size=3))
def test_the_counters_equal_a_fresh_count_after_any_mix_of_writes(
    ops: list[tuple[Any, ...]], windows: list[tuple[int, int]]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "grace.db"
        end = asyncio.run(play(path, ops))
        assert counts(path) == recounted(path)
        hours = int((end - HOUR0).total_seconds() // 3600) + 2
        for first, length in [(-1, hours + 1), *windows]:
            since = HOUR0 + timedelta(hours=first)
            until = since + timedelta(hours=length)
            assert asyncio.run(read(path, since, until)) == scan(path, since, until, rounded=True)


def _loosely(value: Any) -> Any:
    """Every number in a nested value, to within the histograms' 5%."""
    if isinstance(value, float):
        return pytest.approx(value, rel=0.05)
    if isinstance(value, dict):
        return {k: _loosely(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_loosely(v) for v in value)
    return value


def _old_rows(n: int) -> tuple[list[tuple[Any, ...]], ...]:
    """Incidents (with their alert), approvals and outcomes as the code before
    migration 017 wrote them: across hours, days and weeks, every kind of end,
    second approvals earlier than the first, durations on and off 2 significant
    digits."""
    ends = ["resolved", "rolled_back", "rejected", "expired", "needs_human", "safe_hold"]
    ends += ["interrupted", "open", "awaiting_approval", "auto_resolved"]
    incidents, alerts, approvals, outcomes = [], [], [], []
    for i in range(n):
        created = T0 + timedelta(hours=7 * i, seconds=i)
        state, took = ends[i % len(ends)], (30, 120, 45.5, 600, 24, 3600, 7)[i % 7]
        ended = created + timedelta(seconds=took)
        incidents.append(
            (i + 1, state, f"fp{i}", NAMES[i % 3], time_text(created), time_text(ended))
        )
        alerts.append(alert_row(alert(i, NAMES[i % 3]), i + 1, i + 1))
        if i % 3 == 0:
            wait = created + timedelta(seconds=(120, 30, 95)[i // 3 % 3])
            approvals.append((i + 1, "U1", "approve", time_text(wait)))
            if i % 2 == 0:
                approvals.append((i + 1, "U2", "approve", time_text(wait - timedelta(seconds=25))))
        elif state == "rejected":
            approvals.append((i + 1, "U1", "reject", time_text(ended)))
        if state in ("open", "awaiting_approval", "auto_resolved"):
            continue  # no outcome row: not ended, or ended before any plan
        heal = int(state in ("resolved", "rolled_back", "safe_hold"))
        seconds = (24.0, 30.0, 41.7, 125.0, 3.33)[i % 5] if heal else took
        ok, playbook = int(state == "resolved"), PLAYBOOKS[i // 10 % 2]
        outcomes.append((i + 1, playbook, ok, seconds, state, time_text(ended), heal))
    return incidents, alerts, approvals, outcomes


async def test_an_old_database_reads_the_same_statistics_after_migration_017(db_path: Path):
    conn = await connect(db_path)
    try:
        await migrate(conn, [m for m in load_migrations() if m.version < COUNTERS])
        incidents, alerts, approvals, outcomes = _old_rows(120)
        await conn.executemany(
            "INSERT INTO incidents (id, state, fingerprint, alert_name, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            incidents,
        )
        await conn.executemany(INSERT_ALERT, alerts)
        await conn.executemany(
            "INSERT INTO approvals (incident_id, user_id, plan_hash, decision, at)"
            " VALUES (?, ?, 'p', ?, ?)",
            approvals,
        )
        await conn.executemany(
            "INSERT INTO outcomes (incident_id, playbook_id, success, seconds, final_state, at,"
            " heal) VALUES (?, ?, ?, ?, ?, ?, ?)",
            outcomes,
        )
    finally:
        await conn.close()
    windows = [
        (HOUR0, HOUR0 + timedelta(days=40)),
        (HOUR0 + timedelta(days=9), HOUR0 + timedelta(days=16)),
    ]
    windows += [(HOUR0 + timedelta(hours=13), HOUR0 + timedelta(days=1, hours=5))]
    before = [scan(db_path, *window, rounded=False) for window in windows]
    assert before[0].incidents == 120 and before[0].approved == 40 and before[0].heals == 36

    async with await SqliteStore.open(db_path, FakeClock(T0 + timedelta(days=40))) as store:
        for window, old in zip(windows, before, strict=True):
            new = await read(db_path, *window)
            assert new.model_dump() == _loosely(old.model_dump())
            assert new == scan(db_path, *window, rounded=True)
        # Counted on from there by the writers, as if they had counted all along.
        waiting = await store.incidents_in([S.AWAITING_APPROVAL])
        for incident in waiting:
            await store.transition(incident.id, S.AWAITING_APPROVAL, S.APPROVED, actor="U1")
        assert waiting and counts(db_path) == recounted(db_path)


async def test_a_transition_or_decision_that_changes_nothing_counts_nothing(
    store: SqliteStore, make_alert, db_path: Path
):
    incident = await open_incident(store, make_alert(), "d1")
    assert await store.transition(incident.id, S.OPEN, S.DIAGNOSED, actor="grace")
    decision = Approval(
        incident_id=incident.id, user="U1", plan_hash="p", decision=Decision.APPROVE, at=T0
    )
    assert await store.add_approval(decision)
    counted = counts(db_path)
    assert await store.transition(incident.id, S.OPEN, S.NEEDS_HUMAN, actor="grace") is None
    assert await store.transition(incident.id, S.OPEN, S.DIAGNOSED, actor="grace") is None
    assert not await store.add_approval(decision.model_copy(update={"at": T0 - timedelta(1)}))
    assert counts(db_path) == counted


async def test_a_period_reads_whole_hours_and_stats_count_the_hour_in_progress(
    store: SqliteStore, clock: FakeClock, make_alert, db_path: Path
):
    await open_incident(store, make_alert(), "d1")  # at T0, 12:00:00.25
    half = timedelta(minutes=30)
    # A bound inside an hour stands for the start of its hour.
    assert (await read(db_path, T0 + half, T0 + 3 * half)).incidents == 1  # 12:00 to 13:00
    assert (await read(db_path, T0 - half, T0 + half)).incidents == 0  # 11:00 to 12:00
    clock.advance(600)
    report = await store.stats(until=clock.now(), days=7)
    assert (
        report.current.until == HOUR0 + timedelta(hours=1) == report.previous.until + timedelta(7)
    )
    assert (report.current.incidents, report.previous.incidents) == (1, 0)
