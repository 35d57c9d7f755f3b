"""The PostgreSQL store's own parts (storage/pg_conn.py, storage/pg_store.py) on a
real server: what the contract suite cannot see from the ports."""

from __future__ import annotations

import asyncio
import sqlite3

import psycopg
import pytest

from storage.pg_conn import PgConnection, PgRow, translate
from storage.pg_store import PostgresStore
from storage.writer import BatchFailed
from tests.pg_server import PgServer
from tests.storage.conftest import FakeClock


def test_placeholders_become_psycopgs_outside_quotes_only():
    assert translate("SELECT a FROM t WHERE b = ? AND c LIKE '%?x' AND d = ?") == (
        "SELECT a FROM t WHERE b = %s AND c LIKE '%%?x' AND d = %s",
        False,
    )
    assert translate('SELECT "odd?name", ?1 % ?2, ?1') == (
        'SELECT "odd?name", %(p1)s %% %(p2)s, %(p1)s',
        True,
    )


def test_a_row_reads_by_position_and_by_name():
    row = PgRow((7, "x"), {"id": 0, "name": 1})
    assert (row[0], row["name"], list(row), row.keys(), len(row)) == (
        7,
        "x",
        [7, "x"],
        ["id", "name"],
        2,
    )
    id_, name = row
    assert (id_, name) == (7, "x")


@pytest.fixture
def conn(pg_server: PgServer):
    connection = PgConnection.connect(pg_server.fresh_database())
    yield connection
    connection.close()


def test_sqlites_values_and_errors_come_back_the_sqlite_way(conn: PgConnection):
    conn.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, flag BIGINT, note TEXT)")
    conn.execute("INSERT INTO t VALUES (?, ?, ?)", (1, True, "100%"))
    row = conn.execute("SELECT flag, note, SUM(id) AS total FROM t GROUP BY flag, note").fetchone()
    assert (row["flag"], row["note"], row["total"]) == (1, "100%", 1)
    assert type(row["total"]) is int  # PostgreSQL's SUM of a BIGINT is NUMERIC
    assert conn.execute("SELECT AVG(id) FROM t").fetchone()[0] == 1
    with pytest.raises(sqlite3.IntegrityError, match="duplicate key"):
        conn.execute("INSERT INTO t VALUES (?, ?, ?)", (1, 0, "again"))
    with pytest.raises(sqlite3.DatabaseError):
        conn.execute("SELECT nope FROM t WHERE id = ?", (1,))


async def test_a_connection_the_server_dropped_is_replaced(pg_server: PgServer, make_alert):
    dsn = pg_server.fresh_database()
    store = await PostgresStore.open(dsn, FakeClock())
    try:
        [before] = await store.ingest_alerts([make_alert()], "before")
        with psycopg.connect(dsn, autocommit=True) as admin:
            ended = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
        assert ended is not None and ended[0] >= 2  # the writer's and the pool's
        with pytest.raises(BatchFailed):
            await store.ingest_alerts([make_alert()], "lost")
        [after] = await store.ingest_alerts([make_alert()], "after")
        assert after.incident is not None and before.incident is not None
        stored = [i.id for i in await store.list_incidents()]
        assert stored == [after.incident.id, before.incident.id]  # nothing of the lost one
    finally:
        await store.close()


async def test_two_replicas_write_batches_one_at_a_time(pg_server: PgServer, make_alert):
    """Intake gives ids itself (MAX(id) + 1): only serialised batches keep them apart."""
    dsn = pg_server.fresh_database()
    one, two = (
        await PostgresStore.open(dsn, FakeClock()),
        await PostgresStore.open(dsn, FakeClock()),
    )
    try:
        intakes = await asyncio.gather(
            *((one, two)[k % 2].ingest_alerts([make_alert()], f"d{k}") for k in range(40))
        )
        ids = [intake.incident.id for [intake] in intakes if intake.incident is not None]
        assert len(ids) == 40 and len(set(ids)) == 40
    finally:
        await one.close()
        await two.close()
