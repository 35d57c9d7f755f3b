"""Tiny writes committed on the event loop's own thread, when SQLite lets them at once.

An ack that waits for the group writer (storage/writer.py) waits for several
turns of the event loop: the hand-off to the writer thread, the batch's
result coming back, the caller resuming. Under load each turn serves many
requests, and a click's ack took ~14 ms where a request that commits nothing
took ~3 ms (bench/ack_latency.py). One INSERT committed here takes tens of
microseconds and no turn at all.

The loop must never block, so this connection never waits for SQLite's
write lock (busy_timeout 0): when the group writer holds it, the write is
tried again a few times, a turn of the loop later each, then handed to the
writer. It never checkpoints either (the writer's connection does), so a
commit here stays small. Only single, indexed statements belong here.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from storage.db import connect_sync
from storage.writer import GroupWriter

T = TypeVar("T")

TRIES, RETRY_AFTER_S = 5, 0.001
"""The writer holds the lock for a batch, about a millisecond: trying again a turn of
the loop later usually finds it free, where the writer's queue costs several turns."""


class LoopCommits:
    """`run(op)`: committed here if the write lock is free now, else by the writer.

    `here` and `handed_over` count which way writes went, for tests and benchmarks.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        writer: GroupWriter,
        *,
        tries: int = TRIES,
        retry_after_s: float = RETRY_AFTER_S,
    ) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._writer = writer
        self._tries = tries
        self._retry_after_s = retry_after_s
        self.here = 0
        self.handed_over = 0

    @classmethod
    def open(cls, path: str | Path, writer: GroupWriter, **retries: float) -> LoopCommits:
        """Open the connection in the event loop's thread, the only one that may use it."""
        conn = connect_sync(path)
        try:
            conn.execute("PRAGMA busy_timeout=0")
            conn.execute("PRAGMA wal_autocheckpoint=0")
        except BaseException:
            conn.close()
            raise
        return cls(conn, writer, **retries)  # type: ignore[arg-type]

    async def run(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """`op`'s result once it is committed; `op` follows GroupWriter.run's rules."""
        for attempt in range(self._tries):
            if attempt:
                await asyncio.sleep(self._retry_after_s)
            if self._conn is None:
                break
            if _begin(self._conn):
                self.here += 1
                return _commit(self._conn, op)
        self.handed_over += 1
        return await self._writer.run(op)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _begin(conn: sqlite3.Connection) -> bool:
    """Take the write lock if it is free now; False if another connection holds it."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
            raise
        return False
    return True


def _commit(conn: sqlite3.Connection, op: Callable[[sqlite3.Connection], T]) -> T:
    try:
        value = op(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return value
