"""The PostgreSQL test server (tests/pg_server.py) and the primitives the
PostgreSQL store relies on, through psycopg 3 as the store uses it: the server
is the installed one and runs unprivileged, the DSN's user logs in with its
password, advisory locks make a second session wait, and FOR UPDATE SKIP LOCKED
passes over a row another transaction holds."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import psycopg
import pytest
from psycopg import errors, sql

from tests.pg_server import PgServer, server_account

Connect = Callable[[], Awaitable[psycopg.AsyncConnection]]

WITHIN_S = 10.0
"""How long a test waits for another session to get somewhere."""


@pytest.fixture
async def connect(pg_dsn: str) -> AsyncIterator[Connect]:
    """Opens autocommit connections to `pg_dsn`; all are closed after the test."""
    opened: list[psycopg.AsyncConnection] = []

    async def open_one() -> psycopg.AsyncConnection:
        conn = await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True, connect_timeout=10)
        opened.append(conn)
        return conn

    try:
        yield open_one
    finally:
        for conn in opened:
            await conn.close()


async def scalar(conn: psycopg.AsyncConnection, query: str, *params: object) -> object:
    cur = await conn.execute(query, params or None)
    row = await cur.fetchone()
    assert row is not None
    return row[0]


def uid_of(pid: int) -> int:
    """The real uid of a process on this machine, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line in /proc/{pid}/status")


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + WITHIN_S
    while not await check():
        assert time.monotonic() < deadline, f"not within {WITHIN_S} s: {what}"
        await asyncio.sleep(0.02)


async def test_server_is_the_installed_postgresql(connect: Connect, pg_server: PgServer) -> None:
    conn = await connect()
    version = await scalar(conn, "SHOW server_version")
    assert isinstance(version, str)
    assert version.split()[0] == pg_server.version()
    assert conn.info.server_version // 10_000 == int(pg_server.version().split(".")[0])
    assert (conn.info.host, conn.info.port) == ("127.0.0.1", pg_server.port)


async def test_server_runs_as_the_unprivileged_user(connect: Connect, pg_server: PgServer) -> None:
    conn = await connect()
    backend = await scalar(conn, "SELECT pg_backend_pid()")
    postmaster = pg_server.postmaster_pid()
    assert isinstance(backend, int) and postmaster is not None
    expected = server_account().pw_uid
    assert expected != 0
    assert uid_of(postmaster) == expected
    assert uid_of(backend) == expected


async def test_dsn_user_logs_in_with_its_password_and_is_no_superuser(
    connect: Connect, pg_server: PgServer
) -> None:
    conn = await connect()
    assert await scalar(conn, "SELECT current_user") == pg_server.user
    assert await scalar(conn, "SELECT current_database()") == pg_server.dbname
    assert await scalar(conn, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user") is False
    wrong = pg_server.dsn.replace(pg_server.password, "not-the-password")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        await psycopg.AsyncConnection.connect(wrong, connect_timeout=10)


async def test_fresh_database_is_empty_and_the_users_own(pg_server: PgServer) -> None:
    dsn = pg_server.fresh_database()
    assert dsn != pg_server.dsn and dsn != pg_server.fresh_database()
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        assert await scalar(conn, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0
        await conn.execute("CREATE TABLE mine (id int)")
        owner = "SELECT tableowner FROM pg_tables WHERE tablename = 'mine'"
        assert await scalar(conn, owner) == pg_server.user


async def test_advisory_lock_makes_a_second_session_wait(connect: Connect) -> None:
    holder, waiter, observer = await connect(), await connect(), await connect()
    key = secrets.randbits(62)
    waiter_pid = await scalar(waiter, "SELECT pg_backend_pid()")
    await holder.execute("SELECT pg_advisory_lock(%s)", (key,))
    assert await scalar(waiter, "SELECT pg_try_advisory_lock(%s)", key) is False

    async def waiter_granted() -> bool | None:
        """None while the waiter has no advisory lock request, else whether granted."""
        cur = await observer.execute(
            "SELECT granted FROM pg_locks WHERE locktype = 'advisory' AND pid = %s",
            (waiter_pid,),
        )
        row = await cur.fetchone()
        return None if row is None else bool(row[0])

    async def waiter_waits() -> bool:
        return await waiter_granted() is False

    waiting = asyncio.create_task(waiter.execute("SELECT pg_advisory_lock(%s)", (key,)))
    try:
        await until(waiter_waits, "the second session waits for the lock")
        assert not waiting.done()
        assert await scalar(holder, "SELECT pg_advisory_unlock(%s)", key) is True
        await asyncio.wait_for(waiting, WITHIN_S)
        assert await waiter_granted() is True
    finally:
        if not waiting.done():
            waiting.cancel()
            with contextlib.suppress(BaseException):
                await waiting
    assert await scalar(waiter, "SELECT pg_advisory_unlock(%s)", key) is True


async def test_transaction_advisory_lock_ends_with_the_transaction(connect: Connect) -> None:
    first, second = await connect(), await connect()
    key = secrets.randbits(62)
    async with first.transaction():
        await first.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
        assert await scalar(second, "SELECT pg_try_advisory_xact_lock(%s)", key) is False
    assert await scalar(second, "SELECT pg_try_advisory_lock(%s)", key) is True
    assert await scalar(second, "SELECT pg_advisory_unlock(%s)", key) is True


async def test_skip_locked_passes_over_a_row_another_transaction_holds(connect: Connect) -> None:
    first, second = await connect(), await connect()
    table = sql.Identifier(f"jobs_{secrets.token_hex(4)}")
    await first.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY)").format(table))
    try:
        await first.execute(sql.SQL("INSERT INTO {} VALUES (1), (2), (3)").format(table))
        claim = sql.SQL("SELECT id FROM {} ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED").format(
            table
        )
        # A wait instead of a skip would be an error here, not a hang.
        await second.execute("SET lock_timeout = '5s'")
        async with first.transaction():
            assert await scalar(first, claim) == 1
            async with second.transaction():
                assert await scalar(second, claim) == 2
                # Row 1 really is locked: taking it without skipping fails at once.
                nowait = sql.SQL("SELECT id FROM {} WHERE id = 1 FOR UPDATE NOWAIT")
                with pytest.raises(errors.LockNotAvailable):
                    async with second.transaction():
                        await second.execute(nowait.format(table))
        async with second.transaction():
            assert await scalar(second, claim) == 1
    finally:
        await first.execute(sql.SQL("DROP TABLE {}").format(table))
