"""Connection setup and numbered migrations against real database files."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

import storage.db as db
from engine.models import TRANSITIONS, Alert, IncidentState, canonical_json
from storage.db import Migration, connect, load_migrations, migrate, split_statements, time_text
from storage.rows import RELEASING_STATES
from storage.store import SqliteStore
from tests.storage.conftest import FakeClock


async def _pragma(conn, name: str):
    async with conn.execute(f"PRAGMA {name}") as cursor:
        return (await cursor.fetchone())[0]


async def _tables(conn) -> set[str]:
    async with conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'") as cursor:
        return {row[0] for row in await cursor.fetchall()}


async def _versions(conn) -> list[tuple[int, str, str]]:
    async with conn.execute(
        "SELECT version, name, applied_at FROM schema_version ORDER BY version"
    ) as cursor:
        return [tuple(row) for row in await cursor.fetchall()]


async def test_connect_sets_pragmas_and_explicit_transactions(db_path: Path) -> None:
    conn = await connect(db_path)
    try:
        assert await _pragma(conn, "journal_mode") == "wal"
        assert await _pragma(conn, "foreign_keys") == 1
        assert await _pragma(conn, "busy_timeout") == 5000
        assert await _pragma(conn, "synchronous") == 1  # NORMAL
        assert conn.isolation_level is None
        await conn.execute("CREATE TABLE t (x INTEGER)")
        await conn.execute("INSERT INTO t VALUES (1)")
        assert not conn.in_transaction, "no implicit BEGIN may hold a write open"
    finally:
        await conn.close()


async def test_foreign_keys_are_enforced(db_path: Path) -> None:
    conn = await connect(db_path)
    try:
        await migrate(conn)
        with pytest.raises(sqlite3.IntegrityError):
            await conn.execute(
                "INSERT INTO actions (incident_id, action, ok, detail, seconds, at)"
                " VALUES (999, 'x', 1, '', 0, '2025-01-01T00:00:00+00:00')"
            )
    finally:
        await conn.close()


def test_shipped_migrations_are_found_in_order() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations][:1] == [1]
    assert migrations[0].name == "initial"
    assert [m.version for m in migrations] == sorted(m.version for m in migrations)


def test_split_keeps_trigger_bodies_whole() -> None:
    sql = """
    -- a comment
    CREATE TABLE a (x INTEGER);
    CREATE TRIGGER a_no_delete BEFORE DELETE ON a
    BEGIN
        SELECT RAISE(ABORT, 'no; really');
    END;
    -- trailing comment
    """
    statements = split_statements(sql)
    assert len(statements) == 2
    assert statements[1].startswith("CREATE TRIGGER") and statements[1].endswith("END;")


def test_split_refuses_an_unterminated_statement() -> None:
    with pytest.raises(ValueError, match="unterminated"):
        split_statements("CREATE TABLE a (x INTEGER);\nCREATE TABLE b (y INTEGER)\n")


async def test_migrations_apply_once_and_reopen_does_not_reapply(
    db_path: Path, clock: FakeClock
) -> None:
    latest = load_migrations()[-1].version
    conn = await connect(db_path)
    try:
        assert await migrate(conn) == latest
        first = await _versions(conn)
        assert [v for v, _, _ in first] == [m.version for m in load_migrations()]
        assert {"incidents", "alerts", "audit_log", "deliveries"} <= await _tables(conn)
        assert await migrate(conn) == latest
        assert await _versions(conn) == first
    finally:
        await conn.close()

    store = await SqliteStore.open(db_path, clock)
    await store.close()
    conn = await connect(db_path)
    try:
        assert await _versions(conn) == first, "re-open must not re-apply or re-stamp"
    finally:
        await conn.close()


async def test_failing_migration_rolls_back_entirely(db_path: Path) -> None:
    good = Migration(1, "first", "CREATE TABLE kept (x INTEGER);\n")
    bad = Migration(
        2,
        "broken",
        "CREATE TABLE half (x INTEGER);\n"
        "INSERT INTO half VALUES (1);\n"
        "INSERT INTO no_such_table VALUES (1);\n",
    )
    conn = await connect(db_path)
    try:
        with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
            await migrate(conn, [bad, good])  # out of order on purpose: sorted by number
        assert not conn.in_transaction
        tables = await _tables(conn)
        assert "kept" in tables
        assert "half" not in tables
        assert [v for v, _, _ in await _versions(conn)] == [1]

        fixed = Migration(2, "fixed", "CREATE TABLE half (x INTEGER);\n")
        assert await migrate(conn, [good, fixed]) == 2
        assert "half" in await _tables(conn)
    finally:
        await conn.close()


async def test_failing_shipped_migration_leaves_store_unopened(
    db_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = load_migrations()
    broken = Migration(shipped[-1].version + 1, "broken", "CREATE TABLE x (;\n")
    monkeypatch.setattr(db, "load_migrations", lambda: [*shipped, broken])
    with pytest.raises(sqlite3.OperationalError):
        await SqliteStore.open(db_path, clock)

    conn = await connect(db_path)
    try:
        assert [v for v, _, _ in await _versions(conn)] == [m.version for m in shipped]
        assert "x" not in await _tables(conn)
    finally:
        await conn.close()


def test_the_active_group_index_names_exactly_the_releasing_states() -> None:
    """The newest migration that creates the index spells the releasing states
    out; the engine's list must not drift from it."""
    [*_, index] = [
        s
        for m in load_migrations()
        for s in m.statements()
        if s.lstrip().startswith("CREATE UNIQUE INDEX incidents_active_group")
    ]
    listed = re.search(r"state NOT IN \(([^)]*)\)", index)
    assert listed is not None
    assert tuple(v.strip().strip("'") for v in listed.group(1).split(",")) == RELEASING_STATES
    assert set(RELEASING_STATES) == {s.value for s in IncidentState if not s.holds_group}
    assert all(TRANSITIONS[IncidentState(s)] == frozenset() for s in RELEASING_STATES)


async def test_a_001_database_is_upgraded_in_place(
    db_path: Path, clock: FakeClock, make_alert: Callable[..., Alert]
) -> None:
    """A database written by the first schema, with what that code did: one
    incident per alert, so several active incidents of one group."""
    conn = await connect(db_path)
    try:
        await migrate(conn, load_migrations()[:1])
        alerts = [
            make_alert(labels={"instance": "db-1"}),  # incident 1: open, older duplicate
            make_alert(labels={"instance": "db-1"}),  # incident 2: diagnosed, the newest
            make_alert(labels={"instance": "db-1"}, status="resolved"),  # 3: resolved
            make_alert(labels={"instance": "db-2"}),  # incident 4: open, alone
        ]
        states = ["open", "diagnosed", "resolved", "open"]
        for n, (alert, state) in enumerate(zip(alerts, states, strict=True), 1):
            created = time_text(alert.received_at + timedelta(seconds=n))
            await conn.execute(
                "INSERT INTO incidents (id, state, fingerprint, alert_name, channel,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (n, state, alert.fingerprint, alert.name, alert.channel, created, created),
            )
            await conn.execute(
                "INSERT INTO alerts (incident_id, source, source_key, name, status, severity,"
                " labels, annotations, text, channel, reporter, received_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    n,
                    alert.source,
                    alert.source_key,
                    alert.name,
                    alert.status.value,
                    alert.severity,
                    canonical_json(alert.labels),
                    canonical_json(alert.annotations),
                    alert.text,
                    alert.channel,
                    alert.reporter,
                    time_text(alert.received_at),
                ),
            )
    finally:
        await conn.close()

    async with await SqliteStore.open(db_path, clock) as store:
        group = alerts[0].fingerprint
        incidents = {n: await store.get_incident(n) for n in range(1, 5)}
        for n, incident in incidents.items():
            assert incident is not None
            assert incident.alert == alerts[n - 1], "legacy alerts read back unchanged"
            assert incident.alert_count == 1
            assert incident.firing_count == (0 if n == 3 else 1)
            assert incident.first_seen == incident.last_seen == alerts[n - 1].received_at
        assert incidents[1].fingerprint == f"{group}#1", "the older duplicate left the group"
        assert incidents[2].fingerprint == incidents[3].fingerprint == group
        assert incidents[1].state is IncidentState.OPEN, "its state and history are kept"

        [joined] = await store.ingest_alerts([make_alert(labels={"instance": "db-1"})], "d-9")
        assert joined.incident is not None and not joined.opened
        assert (joined.incident.id, joined.incident.alert_count) == (2, 2)
        [alone] = await store.ingest_alerts(
            [make_alert(labels={"instance": "db-9"}, status="resolved")], "d-10"
        )
        assert alone.incident is None, "an alert without an incident can now be stored"
