"""Every storage port on PostgreSQL, for several GRACE replicas on one database.

`PostgresStore` is the SQLite store's parts (storage/store.py `StoreParts`)
over `PgCore`: the same row modules, the same SQL (storage/pg_conn.py adapts
it), so both stores keep one contract (tests/storage/contract/).

Writes keep the SQLite store's model: one writer thread per replica groups
queued writes into one transaction, and each such transaction first takes
one transaction-level advisory lock, so write batches of all replicas run
one at a time, as writers to one SQLite file do. That is what makes the
row code's read-then-write steps (intake's next ids, the audit chain's next
link, compare-and-set transitions) as safe across replicas as within one.
Reads run on a pool of connections, concurrently, each multi-statement read
in one REPEATABLE READ snapshot.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Final, Self

import psycopg
from psycopg_pool import AsyncConnectionPool

from engine.models import IncidentState
from engine.ports import Clock
from storage.pg_conn import AsyncPgConnection, PgConnection, prepare
from storage.pg_migrate import migrate_pg
from storage.store import StoreParts
from storage.store_core import DEFAULT_REPLICA, StoreCore
from storage.writer import DEFAULT_MAX_BATCH, GroupWriter

WRITE_LOCK: Final = 0x47524143455752
"""The advisory lock key every write batch holds ("GRACEWR")."""

READ_POOL_SIZE: Final = 4
"""Read connections per replica: reads of a Slack surface are short and few at a time."""


async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
    prepare(conn)


class PgCore(StoreCore):
    """A read pool, a group writer under the shared write lock, and the clock."""

    def __init__(
        self,
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]],
        writer: GroupWriter,
        clock: Clock,
        on_state: Callable[[IncidentState], None] | None = None,
        replica: str = DEFAULT_REPLICA,
    ) -> None:
        self._pool = pool
        self.replica = replica
        self.writer = writer
        # No commit on the event loop's thread here: the writer is the only way in.
        self.loop_commits = writer
        self._clock = clock
        self._on_state = on_state or (lambda state: None)

    @classmethod
    async def open(
        cls,
        dsn: str,
        clock: Clock,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        on_state: Callable[[IncidentState], None] | None = None,
        replica: str = DEFAULT_REPLICA,
    ) -> Self:
        """Migrate (once across replicas starting together), then open the pool and writer."""
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await migrate_pg(conn)
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            dsn,
            min_size=1,
            max_size=READ_POOL_SIZE,
            kwargs={"autocommit": True},
            configure=_configure,
            # A pooled connection the server dropped is replaced, not handed to a read.
            check=AsyncConnectionPool.check_connection,
            open=False,
            name="grace-read",
        )
        await pool.open(wait=True)
        try:
            writer = await GroupWriter.start(
                "postgresql",
                max_batch=max_batch,
                connect=lambda: PgConnection.connect(dsn),
                begin=("BEGIN", f"SELECT pg_advisory_xact_lock({WRITE_LOCK})"),
            )
        except BaseException:
            await pool.close()
            raise
        return cls(pool, writer, clock, on_state, replica)

    async def close(self) -> None:
        """Finish the queued writes, then close the writer's connection and the pool."""
        await self.writer.close()
        await self._pool.close()

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncPgConnection]:
        async with self._pool.connection() as conn:
            yield AsyncPgConnection(conn)


class PostgresStore(StoreParts, PgCore):
    """The store for replicas; `PostgresStore.open(dsn, clock)` is the way in."""
