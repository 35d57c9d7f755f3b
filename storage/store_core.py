"""What every part of a store stands on: how a write and a read are made, and its clock.

`StoreCore` names those primitives; the store's parts (storage/store_*.py)
use nothing else, so the same parts run on SQLite (`SqliteCore`, here) and on
PostgreSQL (storage/pg_core.py). Every write is a plain synchronous function
run by a GroupWriter in its own thread, batched with whatever other writes
are queued into one transaction; the caller resumes when that batch is
durable. Compare-and-set lives in the SQL itself (`WHERE state = ?`), so it
also holds between processes sharing the database.

On SQLite reads go through one aiosqlite connection: in WAL mode a read sees
every batch committed before it started.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

import aiosqlite

from engine.models import IncidentState
from engine.ports import Clock
from storage.db import connect, migrate
from storage.loop_commits import LoopCommits
from storage.writer import DEFAULT_MAX_BATCH, GroupWriter

T = TypeVar("T")


class Commits(Protocol):
    """Where a tiny write that an ack waits for is committed."""

    async def run(self, op: Callable[[sqlite3.Connection], T]) -> T: ...


DEFAULT_REPLICA = "local"
"""The replica a store writes for when it is not told (one GRACE on its own)."""


class StoreCore:
    """The primitives a store's parts share: a writer, a way to read, a clock."""

    replica: str = DEFAULT_REPLICA
    """The replica (`grace run` process) this store writes for: the runner a move into
    a running state records (storage/store_replicas.py)."""
    writer: GroupWriter
    loop_commits: Commits
    _clock: Clock
    _on_state: Callable[[IncidentState], None]

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _write(self, op: Callable[[sqlite3.Connection], T]) -> T:
        return await self.writer.run(op)

    def _reading(self) -> AbstractAsyncContextManager[Any]:
        """One read connection, for the reads that run several statements."""
        raise NotImplementedError

    async def _fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any:
        async with self._reading() as conn, conn.execute(sql, params) as cursor:
            return await cursor.fetchone()

    async def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        async with self._reading() as conn, conn.execute(sql, params) as cursor:
            return list(await cursor.fetchall())


class SqliteCore(StoreCore):
    """The connections, writer and clock of `SqliteStore`; `SqliteStore.open(path, clock)`
    is the way in."""

    def __init__(
        self,
        reader: aiosqlite.Connection,
        writer: GroupWriter,
        clock: Clock,
        on_state: Callable[[IncidentState], None] | None = None,
        replica: str = DEFAULT_REPLICA,
    ) -> None:
        self.replica = replica
        self._conn = reader
        self.writer = writer
        self._loop_commits = LoopCommits.open(writer.path, writer)
        self.loop_commits = self._loop_commits
        self._clock = clock
        # Told each state an incident enters, once it is durable (metrics count these).
        self._on_state = on_state or (lambda state: None)
        self._lock = asyncio.Lock()

    @classmethod
    async def open(
        cls,
        path: str | Path,
        clock: Clock,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        on_state: Callable[[IncidentState], None] | None = None,
        replica: str = DEFAULT_REPLICA,
    ) -> Self:
        """Connect, bring the schema up to date, then start the writer.

        Migrations run first, on the read connection, so the writer never
        sees a half-migrated schema.
        """
        reader = await connect(path)
        try:
            await migrate(reader)
            writer = await GroupWriter.start(path, max_batch=max_batch)
        except BaseException:
            await reader.close()
            raise
        return cls(reader, writer, clock, on_state, replica)

    async def close(self) -> None:
        """Finish the queued writes, then close both connections."""
        self._loop_commits.close()
        await self.writer.close()
        async with self._lock:
            await self._conn.close()

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[aiosqlite.Connection]:
        """One read at a time on the read connection.

        A cursor left open by one coroutine would hold its read snapshot
        open, and another coroutine's query on the same connection would
        then miss batches committed since: it could fail to see its own write.
        """
        async with self._lock:
            yield self._conn
