"""Group commit: one writer thread, one transaction for whatever is queued.

A commit is the expensive part of a small write (a WAL append and, with
synchronous=NORMAL, no fsync but still a lock round trip), and an aiosqlite
round trip per statement caps throughput long before SQLite does. So writes
are plain synchronous functions queued here; a single writer task hands
everything queued to one dedicated thread, which runs it as one
`BEGIN IMMEDIATE ... COMMIT` with a SAVEPOINT around each function. A caller
resumes when the transaction holding its write is durable, and a function
that raises is rolled back to its savepoint alone: its batch-mates commit.

Writes that many callers make alike (alert intake) can instead be queued
with `run_merged`: those queued back to back then run as one call, in one
savepoint, for the statements they have in common, and only if that call
fails does each run again alone.

The thread owns its stdlib `sqlite3` connection outright, so no other code
can leave a transaction open on it, and functions run in submission order.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from storage.db import connect_sync

T = TypeVar("T")
Item = TypeVar("Item")

Op = Callable[[sqlite3.Connection], Any]
Merge = Callable[[sqlite3.Connection, Sequence[Item]], Sequence[T]]

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 1000
"""Ops per transaction at most: bounds how long one caller can wait behind others."""

_SAVEPOINT = "grace_op"


class BatchFailed(sqlite3.DatabaseError):
    """The transaction holding this write failed as a whole (its COMMIT, or an
    error after which SQLite had already rolled everything back): nothing of
    the batch was written. The original error is the `__cause__`."""


class WriterClosed(RuntimeError):
    """`run` after `close`: the write was not queued."""


@dataclass(slots=True)
class _Queued:
    future: asyncio.Future[Any]
    merge: Merge[Any, Any] | None
    """None for a `run` op, else the `run_merged` function that takes `item`."""
    item: Any
    """The op itself for `run`, the item for `run_merged`."""


@dataclass(slots=True)
class _Result:
    ok: bool
    value: Any


class GroupWriter:
    """Owns the one write connection; `await GroupWriter.start(path)` is the way in.

    `batches` and `ops` count transactions attempted and functions run, so
    tests and benchmarks can see how much grouping happened.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        connect: Callable[[], Any] | None = None,
        begin: Sequence[str] = ("BEGIN IMMEDIATE",),
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.path = path
        self._max_batch = max_batch
        # Another database (PostgreSQL) brings its own connection and the
        # statements that open a batch's transaction with its write lock.
        self._open = connect or (lambda: connect_sync(path))
        self._begin = tuple(begin)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="grace-writer")
        self._conn: sqlite3.Connection | None = None
        self._queue: collections.deque[_Queued] = collections.deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._closed: asyncio.Future[None] | None = None
        self.batches = 0
        self.ops = 0

    @classmethod
    async def start(
        cls,
        path: str | Path,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        connect: Callable[[], Any] | None = None,
        begin: Sequence[str] = ("BEGIN IMMEDIATE",),
    ) -> GroupWriter:
        """Open the connection in the writer thread and start the writer task."""
        writer = cls(path, max_batch=max_batch, connect=connect, begin=begin)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(writer._thread, writer._connect)
        except BaseException:
            writer._thread.shutdown(wait=False)
            raise
        writer._task = loop.create_task(writer._serve(), name="grace-group-writer")
        return writer

    async def run(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Queue `op`; return its result once the transaction that ran it committed.

        `op` runs in the writer thread inside an open transaction, so it must
        only execute statements (never BEGIN, COMMIT or ROLLBACK) and return
        values that outlive it (models, numbers; never a cursor). Its
        exception, if it raises, is re-raised here. A caller
        cancelled before its batch starts is skipped; after that, the write
        happens or not with its batch, as with any cancelled request.
        """
        return await self._enqueue(None, op)

    async def run_merged(self, merge: Merge[Item, T], item: Item) -> T:
        """Queue `item` for `merge`; return its result once its transaction committed.

        `merge(conn, items)` does for several items at once what one call
        per item would do in order, and returns one result per item, in
        order. Items queued back to back for the same `merge` (the same
        function object) are merged into one call, in one savepoint; if it
        raises, each of them runs again alone, `merge(conn, [item])` in its
        own savepoint, so a bad item fails its own caller only, as with
        `run`, whose rules `merge` follows too.
        """
        return await self._enqueue(merge, item)

    async def _enqueue(self, merge: Merge[Any, T] | None, item: Any) -> T:
        if self._closing:
            raise WriterClosed("the group writer is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append(_Queued(future, merge, item))
        self._wake.set()
        return await future

    async def close(self) -> None:
        """Finish everything already queued, then close the connection.

        Idempotent, and safe to call from several tasks at once: they all
        wait for the one shutdown.
        """
        if self._closed is None:
            self._closing = True
            self._wake.set()
            self._closed = asyncio.ensure_future(self._shut_down())
        await asyncio.shield(self._closed)

    async def _shut_down(self) -> None:
        if self._task is not None:
            await self._task
        await asyncio.get_running_loop().run_in_executor(self._thread, self._disconnect)
        self._thread.shutdown(wait=True)

    # -- the writer task (event loop side) ---------------------------------

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while batch := self._take():
                self.batches += 1
                self.ops += len(batch)
                try:
                    results = await loop.run_in_executor(self._thread, self._transact, batch)
                except asyncio.CancelledError:
                    self._abandon(batch)
                    raise
                except BaseException as exc:
                    # The thread itself failed (it should not): nobody may hang on it.
                    log.exception("group writer batch crashed")
                    results = [_Result(False, _batch_failed(exc)) for _ in batch]
                for queued, result in zip(batch, results, strict=True):
                    _settle(queued.future, result)
            if self._closing:
                return

    def _take(self) -> list[_Queued]:
        """Everything queued (up to max_batch), minus callers that gave up already."""
        batch: list[_Queued] = []
        while self._queue and len(batch) < self._max_batch:
            queued = self._queue.popleft()
            if not queued.future.done():
                batch.append(queued)
        return batch

    def _abandon(self, batch: list[_Queued]) -> None:
        for queued in [*batch, *self._queue]:
            queued.future.cancel()
        self._queue.clear()

    # -- the writer thread -------------------------------------------------

    def _connect(self) -> None:
        self._conn = self._open()

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _reconnect_if_lost(self, conn: Any) -> None:
        """A server's connection can drop (PostgreSQL restarted); the next batch gets
        a new one. A SQLite file's connection is never `lost`."""
        if not getattr(conn, "lost", False):
            return
        try:
            conn.close()
            self._conn = self._open()
        except Exception:
            log.exception("the database connection was lost and could not be opened again")

    def _transact(self, batch: list[_Queued]) -> list[_Result]:
        """One transaction for the batch; per-op results, or every op failed."""
        conn = self._conn
        if conn is None:
            raise RuntimeError("the group writer has no connection")
        try:
            for statement in self._begin:
                conn.execute(statement)
            results = _run_all(conn, batch)
            conn.execute("COMMIT")
        except Exception as exc:
            _rollback_quietly(conn)
            self._reconnect_if_lost(conn)
            return [_Result(False, _batch_failed(exc)) for _ in batch]
        except BaseException:
            _rollback_quietly(conn)
            raise
        return results


def _run_all(conn: sqlite3.Connection, batch: list[_Queued]) -> list[_Result]:
    """Each op in its savepoint, in order; each run of merged items as one call."""
    results: list[_Result] = []
    for merge, run in itertools.groupby(batch, key=lambda queued: queued.merge):
        if merge is None:
            results += [_savepointed(conn, queued.item) for queued in run]
        else:
            results += _merged(conn, merge, [queued.item for queued in run])
    return results


def _merged(conn: sqlite3.Connection, merge: Merge[Any, Any], items: list[Any]) -> list[_Result]:
    """All items in one call; if it fails, each alone, so only the bad ones fail."""
    if len(items) > 1:
        together = _savepointed(conn, _merged_op(merge, items))
        if together.ok:
            return [_Result(True, value) for value in together.value]
        log.debug("a merged write failed, so its %d items run one by one", len(items))
    results = []
    for item in items:
        alone = _savepointed(conn, _merged_op(merge, [item]))
        results.append(_Result(True, alone.value[0]) if alone.ok else alone)
    return results


def _merged_op(merge: Merge[Any, Any], items: list[Any]) -> Op:
    def op(conn: sqlite3.Connection) -> Sequence[Any]:
        values = merge(conn, items)
        if len(values) != len(items):
            raise RuntimeError(f"a merged write gave {len(values)} results for {len(items)} items")
        return values

    return op


def _savepointed(conn: sqlite3.Connection, op: Op) -> _Result:
    """Run one op; undo only its own writes if it raises.

    Some errors (a full disk, an interrupt) make SQLite roll back the whole
    transaction on its own; then earlier ops' writes are gone too, so that
    is raised to fail the batch rather than reported as this op's failure.
    """
    conn.execute(f"SAVEPOINT {_SAVEPOINT}")
    try:
        value = op(conn)
    except Exception as exc:
        if not conn.in_transaction:
            raise
        conn.execute(f"ROLLBACK TO {_SAVEPOINT}")
        conn.execute(f"RELEASE {_SAVEPOINT}")
        return _Result(False, exc)
    if not conn.in_transaction:
        raise RuntimeError("a queued write ended the batch's transaction itself")
    conn.execute(f"RELEASE {_SAVEPOINT}")
    return _Result(True, value)


def _rollback_quietly(conn: sqlite3.Connection) -> None:
    """After a failed COMMIT SQLite may or may not still hold the transaction."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            log.exception("ROLLBACK after a failed batch failed")


def _batch_failed(cause: BaseException) -> BatchFailed:
    # One exception object per caller: a shared one would collect every
    # caller's traceback as each of them re-raised it.
    failed = BatchFailed(f"the write's transaction failed, nothing of it was written: {cause}")
    failed.__cause__ = cause
    return failed


def _settle(future: asyncio.Future[Any], result: _Result) -> None:
    if future.done():  # the caller was cancelled while its batch ran
        return
    if result.ok:
        future.set_result(result.value)
    else:
        future.set_exception(result.value)
