"""PostgreSQL's migrations (storage/migrations/postgresql) and their runner
(storage/pg_migrate.py), on a real server (tests/pg_server.py): they apply on a
fresh database, build the schema SQLite's migrations build (the same tables,
columns, keys, indexes, constraints and triggers), backfill the rows SQLite's
backfill does, and migrate once however many replicas start together; a
failing migration leaves the previous version and nothing of itself."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite
import psycopg
import pytest
from psycopg import errors

from storage.db import Migration, connect, load_migrations, migrate
from storage.pg_migrate import (
    MIGRATION_LOCK,
    MigrationError,
    current_version_pg,
    migrate_pg,
    migration_state,
)
from tests.pg_server import PgServer

Connect = Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]

SQLITE_TYPES = {"INTEGER": "bigint", "REAL": "double precision", "TEXT": "text", "BLOB": "bytea"}
FK_ACTIONS = {
    "a": "NO ACTION",
    "r": "RESTRICT",
    "c": "CASCADE",
    "n": "SET NULL",
    "d": "SET DEFAULT",
}


@pytest.fixture
async def connect_pg(pg_server: PgServer) -> AsyncIterator[Connect]:
    """Opens autocommit connections to one fresh database; all closed after the test."""
    dsn = pg_server.fresh_database()
    opened: list[psycopg.AsyncConnection[Any]] = []

    async def open_one() -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True, connect_timeout=10)
        opened.append(conn)
        return conn

    try:
        yield open_one
    finally:
        for conn in opened:
            await conn.close()


@pytest.fixture
async def sqlite_conn(tmp_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    conn = await connect(tmp_path / "grace.db")
    try:
        yield conn
    finally:
        await conn.close()


async def pg_rows(
    conn: psycopg.AsyncConnection[Any], query: str, params: Sequence[Any] = ()
) -> list[tuple[Any, ...]]:
    cursor = await conn.execute(query, params)
    return [tuple(row) for row in await cursor.fetchall()]


async def sqlite_rows(
    conn: aiosqlite.Connection, query: str, params: Sequence[Any] = ()
) -> list[tuple[Any, ...]]:
    async with conn.execute(query, params) as cursor:
        return [tuple(row) for row in await cursor.fetchall()]


def upto(dialect: str, version: int) -> list[Migration]:
    return [m for m in load_migrations(dialect) if m.version <= version]


async def advisory_locks(conn: psycopg.AsyncConnection[Any]) -> int:
    [(held,)] = await pg_rows(conn, "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory'")
    return int(held)


# -- the files --------------------------------------------------------------


def test_both_dialects_ship_the_same_numbers_and_names() -> None:
    sqlite = [(m.version, m.name) for m in load_migrations()]
    postgresql = [(m.version, m.name) for m in load_migrations("postgresql")]
    assert postgresql == sqlite
    assert sqlite[0] == (1, "initial")


def test_an_unknown_dialect_has_no_migrations() -> None:
    with pytest.raises(ValueError, match="mysql"):
        load_migrations("mysql")


# -- applying ---------------------------------------------------------------


async def test_shipped_migrations_apply_on_a_fresh_database(connect_pg: Connect) -> None:
    conn = await connect_pg()
    newest = load_migrations()[-1].version

    assert await migrate_pg(conn) == newest

    assert await current_version_pg(conn) == newest
    applied = await pg_rows(conn, "SELECT version, name FROM schema_version ORDER BY version")
    assert applied == [(m.version, m.name) for m in load_migrations("postgresql")]
    state = await migration_state(conn)
    assert (state.current, state.newest, state.pending) == (newest, newest, ())
    assert await advisory_locks(conn) == 0, "the migration lock is released"


async def test_state_of_a_database_never_migrated(connect_pg: Connect) -> None:
    conn = await connect_pg()
    shipped = load_migrations("postgresql")
    state = await migration_state(conn)
    assert (state.current, state.newest) == (0, shipped[-1].version)
    assert state.pending == tuple(shipped)
    assert await current_version_pg(conn) == 0

    await migrate_pg(conn, shipped[:3])
    state = await migration_state(conn)
    assert (state.current, state.pending) == (3, tuple(shipped[3:]))


async def test_migrating_again_changes_nothing(connect_pg: Connect) -> None:
    conn = await connect_pg()
    version = await migrate_pg(conn)
    before = await pg_rows(conn, "SELECT * FROM schema_version ORDER BY version")

    assert await migrate_pg(conn) == version

    assert await pg_rows(conn, "SELECT * FROM schema_version ORDER BY version") == before


async def test_replicas_starting_together_migrate_once(connect_pg: Connect) -> None:
    conns = [await connect_pg() for _ in range(3)]
    newest = load_migrations()[-1].version

    versions = await asyncio.gather(*(migrate_pg(conn) for conn in conns))

    assert versions == [newest] * len(conns)
    applied = await pg_rows(conns[0], "SELECT version FROM schema_version ORDER BY version")
    assert applied == [(m.version,) for m in load_migrations("postgresql")]
    assert await advisory_locks(conns[0]) == 0


async def test_a_replica_waits_for_the_one_migrating(connect_pg: Connect) -> None:
    holder, replica = await connect_pg(), await connect_pg()
    await holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    waiting = asyncio.create_task(migrate_pg(replica))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    [(exists,)] = await pg_rows(holder, "SELECT to_regclass('schema_version') IS NOT NULL")
    assert exists is False, "nothing is created before the lock is taken"

    await holder.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))

    assert await asyncio.wait_for(waiting, 30) == load_migrations()[-1].version


async def test_a_failing_migration_leaves_the_previous_version(connect_pg: Connect) -> None:
    conn = await connect_pg()
    shipped = load_migrations("postgresql")
    newest = shipped[-1].version
    broken = Migration(
        newest + 1,
        "broken",
        "CREATE TABLE half (id BIGINT);\n"
        "INSERT INTO half VALUES (1);\n"
        "INSERT INTO no_such_table VALUES (1);\n",
    )

    with pytest.raises(MigrationError) as failed:
        await migrate_pg(conn, [*shipped, broken])

    name = f"storage/migrations/postgresql/{newest + 1:03d}_broken.sql"
    assert name in str(failed.value) and "no_such_table" in str(failed.value)
    assert isinstance(failed.value.__cause__, errors.UndefinedTable)
    assert failed.value.migration == broken
    assert await current_version_pg(conn) == newest
    [(half,)] = await pg_rows(conn, "SELECT to_regclass('half')")
    assert half is None, "nothing of the failed migration is left"
    assert await advisory_locks(conn) == 0
    state = await migration_state(conn, [*shipped, broken])
    assert (state.current, state.newest, state.pending) == (newest, newest + 1, (broken,))

    fixed = Migration(newest + 1, "broken", "CREATE TABLE half (id BIGINT);\n")
    assert await migrate_pg(conn, [*shipped, fixed]) == newest + 1


async def test_a_failing_first_migration_leaves_version_zero(connect_pg: Connect) -> None:
    conn = await connect_pg()
    broken = Migration(1, "initial", "CREATE TABLE t (x BIGINT);\nSELECT 1/0;\n")
    with pytest.raises(MigrationError, match=r"001_initial\.sql"):
        await migrate_pg(conn, [broken])
    assert await current_version_pg(conn) == 0
    assert await pg_rows(conn, "SELECT to_regclass('t')") == [(None,)]


async def test_a_connection_inside_a_transaction_is_refused(pg_server: PgServer) -> None:
    dsn = pg_server.fresh_database()
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        await conn.execute("SELECT 1")  # not autocommit: a transaction is open now
        with pytest.raises(ValueError, match="outside a transaction"):
            await migrate_pg(conn)


async def test_an_idle_connection_without_autocommit_commits_each_migration(
    pg_server: PgServer,
) -> None:
    dsn = pg_server.fresh_database()
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        assert await migrate_pg(conn) == load_migrations()[-1].version
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as other:
        assert await current_version_pg(other) == load_migrations()[-1].version


# -- the schema -------------------------------------------------------------


async def sqlite_schema(conn: aiosqlite.Connection) -> dict[str, Any]:
    tables = [
        name
        for (name,) in await sqlite_rows(
            conn,
            "SELECT name FROM sqlite_master WHERE type = 'table'"
            " AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
    ]
    columns, keys, uniques, foreign, checks, indexes = {}, {}, {}, {}, {}, {}
    for table in tables:
        info = await sqlite_rows(conn, f"PRAGMA table_info({table})")
        columns[table] = [
            (name, SQLITE_TYPES[kind], bool(notnull or pk), default)
            for _, name, kind, notnull, default, pk in info
        ]
        keys[table] = [name for _, name, *_, pk in sorted(info, key=lambda c: c[5]) if pk]
        uniques[table] = set()
        for _, index, unique, origin, partial in await sqlite_rows(
            conn, f"PRAGMA index_list({table})"
        ):
            cols = tuple(c for _, _, c in await sqlite_rows(conn, f"PRAGMA index_info({index})"))
            if origin == "u":
                uniques[table].add(cols)
            elif origin == "c":
                indexes[index] = (table, bool(unique), cols, bool(partial))
        foreign[table] = {
            (src, ref, dst, on_update, on_delete)
            for _, _, ref, src, dst, on_update, on_delete, _ in await sqlite_rows(
                conn, f"PRAGMA foreign_key_list({table})"
            )
        }
        [(create,)] = await sqlite_rows(
            conn, "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        )
        checks[table] = len(re.findall(r"\bCHECK\s*\(", create, re.IGNORECASE))
    triggers = set()
    for (create,) in await sqlite_rows(
        conn, "SELECT sql FROM sqlite_master WHERE type = 'trigger'"
    ):
        found = re.match(r"CREATE TRIGGER (\w+) (BEFORE|AFTER) (\w+) ON (\w+)", create)
        assert found is not None, create
        triggers.add(found.groups())
    return {
        "tables": tables,
        "columns": columns,
        "primary keys": keys,
        "unique constraints": uniques,
        "foreign keys": foreign,
        "checks": checks,
        "indexes": indexes,
        "triggers": triggers,
    }


def _pg_default(default: str | None) -> str | None:
    """'{}'::text as SQLite declares it: '{}'."""
    return None if default is None else re.sub(r"::[a-z ]+$", "", default)


async def pg_schema(conn: psycopg.AsyncConnection[Any]) -> dict[str, Any]:
    tables = [
        name
        for (name,) in await pg_rows(
            conn,
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
            " ORDER BY table_name",
        )
    ]
    columns: dict[str, list[tuple[str, str, bool, str | None]]] = {t: [] for t in tables}
    for table, name, kind, nullable, default in await pg_rows(
        conn,
        "SELECT table_name, column_name, data_type, is_nullable, column_default"
        " FROM information_schema.columns WHERE table_schema = current_schema()"
        " ORDER BY table_name, ordinal_position",
    ):
        columns[table].append((name, kind, nullable == "NO", _pg_default(default)))
    keys: dict[str, list[str]] = {t: [] for t in tables}
    uniques: dict[str, set[tuple[str, ...]]] = {t: set() for t in tables}
    indexes = {}
    for table, index, unique, partial, cols, constraint in await pg_rows(
        conn,
        """
        SELECT t.relname, x.relname, i.indisunique, i.indpred IS NOT NULL,
               ARRAY(SELECT a.attname FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(n, o)
                     JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.n
                     ORDER BY k.o),
               (SELECT c.contype FROM pg_constraint AS c
                WHERE c.conindid = i.indexrelid AND c.contype IN ('p', 'u'))
        FROM pg_index AS i
        JOIN pg_class AS t ON t.oid = i.indrelid
        JOIN pg_class AS x ON x.oid = i.indexrelid
        WHERE t.relnamespace = current_schema()::text::regnamespace
        """,
    ):
        if constraint == "p":
            keys[table] = list(cols)
        elif constraint == "u":
            uniques[table].add(tuple(cols))
        else:
            indexes[index] = (table, unique, tuple(cols), partial)
    foreign: dict[str, set[tuple[str, str, str, str, str]]] = {t: set() for t in tables}
    checks = dict.fromkeys(tables, 0)
    for table, kind, src, ref, dst, on_update, on_delete in await pg_rows(
        conn,
        """
        SELECT t.relname, c.contype, a.attname, r.relname, ra.attname,
               c.confupdtype, c.confdeltype
        FROM pg_constraint AS c
        JOIN pg_class AS t ON t.oid = c.conrelid
        LEFT JOIN pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
        LEFT JOIN pg_class AS r ON r.oid = c.confrelid
        LEFT JOIN pg_attribute AS ra ON ra.attrelid = c.confrelid AND ra.attnum = c.confkey[1]
        WHERE t.relnamespace = current_schema()::text::regnamespace AND c.contype IN ('f', 'c')
        """,
    ):
        if kind == "f":
            foreign[table].add((src, ref, dst, FK_ACTIONS[on_update], FK_ACTIONS[on_delete]))
        else:
            checks[table] += 1
    triggers = set(
        await pg_rows(
            conn,
            "SELECT trigger_name, action_timing, event_manipulation, event_object_table"
            " FROM information_schema.triggers WHERE trigger_schema = current_schema()",
        )
    )
    return {
        "tables": tables,
        "columns": columns,
        "primary keys": keys,
        "unique constraints": uniques,
        "foreign keys": foreign,
        "checks": checks,
        "indexes": indexes,
        "triggers": triggers,
    }


async def test_postgresql_schema_is_sqlites(
    connect_pg: Connect, sqlite_conn: aiosqlite.Connection
) -> None:
    await migrate(sqlite_conn)
    conn = await connect_pg()
    await migrate_pg(conn)

    sqlite, postgresql = await sqlite_schema(sqlite_conn), await pg_schema(conn)

    assert "audit_log" in sqlite["tables"] and len(sqlite["indexes"]) > 20
    for part in sqlite:
        assert postgresql[part] == sqlite[part], part


async def test_postgresql_names_constraints_as_for_a_table_never_rebuilt(
    connect_pg: Connect,
) -> None:
    """alerts (002) and outbox (010) are rebuilt; their constraints and id sequence
    keep the names a later migration would expect of `alerts` and `outbox`."""
    conn = await connect_pg()
    await migrate_pg(conn)
    names = await pg_rows(
        conn,
        "SELECT conname FROM pg_constraint WHERE conrelid IN ('alerts'::regclass,"
        " 'outbox'::regclass) ORDER BY conname",
    )
    assert [n for (n,) in names] == [
        "alerts_incident_id_fkey",
        "alerts_pkey",
        "alerts_source_source_key_key",
        "outbox_incident_id_fkey",
        "outbox_pkey",
        "outbox_state_check",
    ]
    assert await pg_rows(conn, "SELECT pg_get_serial_sequence('outbox', 'id')") == [
        ("public.outbox_id_seq",)
    ]
    [(leftovers,)] = await pg_rows(
        conn,
        "SELECT COUNT(*) FROM pg_class"
        " WHERE relnamespace = current_schema()::text::regnamespace AND relname ~ '_v[0-9]+'",
    )
    assert leftovers == 0


async def test_audit_log_is_append_only(connect_pg: Connect) -> None:
    conn = await connect_pg()
    await migrate_pg(conn)
    await conn.execute(
        "INSERT INTO audit_log (seq, at, actor, action, incident_id, detail, prev_hash, hash)"
        " VALUES (1, '2025-03-01T12:00:00.000000+00:00', 'grace', 'x', NULL, '{}', '', 'h')"
    )

    with pytest.raises(errors.IntegrityError, match="audit_log is append-only"):
        await conn.execute("UPDATE audit_log SET actor = 'mallory'")
    with pytest.raises(errors.IntegrityError, match="audit_log is append-only"):
        await conn.execute("DELETE FROM audit_log")

    assert await pg_rows(conn, "SELECT seq, actor FROM audit_log") == [(1, "grace")]


async def test_checks_and_partial_unique_indexes_refuse_what_sqlite_refuses(
    connect_pg: Connect,
) -> None:
    conn = await connect_pg()
    await migrate_pg(conn)
    at = "'2025-03-01T12:00:00.000000+00:00'"
    with pytest.raises(errors.CheckViolation):
        await conn.execute(
            "INSERT INTO outbox (channel, lane, kind, payload, state, not_before, created_at)"
            f" VALUES ('C1', 'C1', 'post', '{{}}', 'lost', {at}, {at})"
        )
    proposal = (
        "INSERT INTO tier_proposals (playbook_id, from_tier, to_tier, attempts, successes,"
        f" lower_bound, channel, state, proposed_at) VALUES ('p', 1, 2, 9, 9, 0.7, 'C1', %s, {at})"
    )
    await conn.execute(proposal, ("open",))
    await conn.execute(proposal, ("dismissed",))
    with pytest.raises(errors.UniqueViolation):
        await conn.execute(proposal, ("open",))
    incident = (
        "INSERT INTO incidents (id, state, fingerprint, alert_name, created_at, updated_at)"
        f" VALUES (%s, %s, 'fp', 'A', {at}, {at})"
    )
    await conn.execute(incident, (1, "resolved"))
    await conn.execute(incident, (2, "open"))
    with pytest.raises(errors.UniqueViolation):
        await conn.execute(incident, (3, "awaiting_approval"))
    with pytest.raises(errors.ForeignKeyViolation):
        await conn.execute(
            f"INSERT INTO actions (incident_id, action, ok, detail, seconds, at)"
            f" VALUES (999, 'x', 1, '', 0, {at})"
        )


# -- the backfills ----------------------------------------------------------

T0 = datetime(1969, 12, 30, 22, 10, 0, 250_000, tzinfo=UTC)
"""Before 1970, so the hours of the first rows are negative (017 floors them)."""

STATES = ["resolved", "open", "rolled_back", "rejected", "awaiting_approval", "expired"]
STATES += ["safe_hold", "auto_resolved", "needs_human"]


ROUNDINGS = (125.0, 7.85, 0.125, 2.65, 14.5, 99.96, 0.000123456, 2.25, 1250.0, 3.33, 41.7, 0.15)
"""Heal seconds whose bucket (printf('%.1e')) is easily got wrong: exact ties go away
from zero (125 -> 130), a double just under a tie goes down (7.85 -> 7.8)."""


def _time(at: datetime) -> str:
    return at.isoformat(timespec="microseconds")


def _seeds() -> dict[int, list[tuple[str, list[tuple[Any, ...]]]]]:
    """Rows as the code of each version wrote them, by the version they are written at
    (`?` placeholders): incidents several active of one group (002), alerts, approvals,
    outcomes across hours and days and before 1970 (017), outbox rows (010, 012)."""
    incidents, alerts, approvals, outcomes, outbox = [], [], [], [], []
    for i in range(48):
        created = T0 + timedelta(hours=5 * i, minutes=7 * i, seconds=i, microseconds=3 * i)
        took = (30.0, 120.5, 45.25, 600.0, 24.0, 3600.0, 7.125)[i % 7]
        state = STATES[i % len(STATES)]
        ended = created + timedelta(seconds=took)
        incidents.append(
            (i + 1, state, f"fp{i % 5}", f"Alert{i % 3}", _time(created), _time(ended))
        )
        alerts.append(
            (i + 1, i + 1, "am", f"k{i}", f"Alert{i % 3}", "firing" if i % 4 else "resolved",
             "page", '{"a":"1"}', "{}", f"alert {i}", "C1", None, _time(created))
        )  # fmt: skip
        if i % 3 == 0:
            # No duration on a tie of 2 significant digits (95.5 s): SQLite takes a duration
            # by julianday, in ms and off by float noise that decides a tie; PostgreSQL's
            # EXTRACT(EPOCH) is exact, and a tie rounds half to even.
            wait = created + timedelta(seconds=(120, 30, 95.25)[i // 3 % 3])
            approvals.append((i + 1, "U1", "approve", _time(wait)))
            if i % 2 == 0:
                approvals.append((i + 1, "U2", "approve", _time(wait - timedelta(seconds=25))))
        elif state == "rejected":
            approvals.append((i + 1, "U1", "reject", _time(ended)))
        if state not in ("open", "awaiting_approval", "auto_resolved"):
            seconds = (24.0, 30.0, 41.7, 125.0, 3.33)[i % 5]
            outcomes.append((i + 1, f"pb{i % 2}", int(state == "resolved"), seconds, state,
                             _time(ended)))  # fmt: skip
        kind = ("post_card", "ephemeral", "thread")[i % 3]
        outbox.append(
            (f"C{i % 2}", kind, i + 1, f"U{i % 4}" if i % 5 else None, "{}",
             None, ("pending", "sent", "dropped")[i % 3], i % 2, _time(created), _time(created))
        )  # fmt: skip
    later = [
        (i + 1, "pb1", i % 2, seconds, "resolved", _time(T0 + timedelta(days=9, hours=i)), 1)
        for i, seconds in zip(range(0, 48, 4), ROUNDINGS, strict=True)
    ]
    later += [(2, "pb1", 0, 12.0, "rejected", _time(T0 + timedelta(days=9)), 0)]
    return {
        1: [
            (
                "INSERT INTO incidents (id, state, fingerprint, alert_name, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                incidents,
            ),
            (
                "INSERT INTO alerts (id, incident_id, source, source_key, name, status, severity,"
                " labels, annotations, text, channel, reporter, received_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                alerts,
            ),
            (
                "INSERT INTO approvals (incident_id, user_id, plan_hash, decision, at)"
                " VALUES (?, ?, 'p', ?, ?)",
                approvals,
            ),
            (
                "INSERT INTO outcomes (incident_id, playbook_id, success, seconds, final_state,"
                " at) VALUES (?, ?, ?, ?, ?, ?)",
                outcomes,
            ),
        ],
        9: [
            (
                "INSERT INTO outbox (channel, kind, incident_id, user_id, payload, coalesce_key,"
                " state, attempts, not_before, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                outbox,
            )
        ],
        16: [
            (
                "INSERT INTO outcomes (incident_id, playbook_id, success, seconds, final_state,"
                " at, heal) VALUES (?, ?, ?, ?, ?, ?, ?)",
                later,
            )
        ],
    }


# Compared by value, not by stats_keys' ids (the order a backfill names keys in is its own).
_STATS = (
    "SELECT k.metric, k.key, h.hours, h.hour, h.value, h.n, h.ok"
    " FROM stats_hourly AS h JOIN stats_keys AS k ON k.id = h.key_id"
)


async def test_backfills_write_what_sqlites_write(
    connect_pg: Connect, sqlite_conn: aiosqlite.Connection
) -> None:
    conn = await connect_pg()
    done = 0
    for version, inserts in sorted(_seeds().items()):
        await migrate(sqlite_conn, upto("sqlite", version))
        await migrate_pg(conn, upto("postgresql", version))
        for query, rows in inserts:
            await sqlite_conn.executemany(query, rows)
            async with conn.cursor() as cursor:
                await cursor.executemany(query.replace("?", "%s"), rows)
        done = version
    assert done < 17
    await migrate(sqlite_conn)
    await migrate_pg(conn)
    # A row added now takes the next id after those copied by a rebuild (010's outbox).
    added = (
        "INSERT INTO outbox (channel, lane, kind, payload, state, not_before, created_at)"
        " VALUES ('C9', 'C9', 'post_card', '{}', 'pending', 'n', 'c')"
    )
    await sqlite_conn.execute(added)
    await conn.execute(added)

    tables = [t for t in (await sqlite_schema(sqlite_conn))["tables"] if t != "schema_version"]
    for table in tables:
        query = _STATS if table == "stats_hourly" else f"SELECT * FROM {table}"
        if table == "stats_keys":
            query = "SELECT metric, key FROM stats_keys"
        expected = sorted(await sqlite_rows(sqlite_conn, query), key=repr)
        assert sorted(await pg_rows(conn, query), key=repr) == expected, table
    for table in ("incidents", "alerts", "incident_alerts", "outbox", "stats_hourly"):
        assert await sqlite_rows(sqlite_conn, f"SELECT * FROM {table}"), f"{table} has rows"
    [(renamed,)] = await pg_rows(conn, "SELECT COUNT(*) FROM incidents WHERE fingerprint ~ '#'")
    assert renamed > 0, "002 took older active incidents out of their group"
