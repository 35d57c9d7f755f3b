"""GroupWriter: one transaction per batch, a savepoint per op, order kept."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from storage.writer import BatchFailed, GroupWriter, WriterClosed


def _rows(db_path: Path) -> list[str]:
    with sqlite3.connect(db_path) as conn:
        return [row[0] for row in conn.execute("SELECT name FROM item ORDER BY id")]


def _item_table(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")


def _insert(name: str) -> Callable[[sqlite3.Connection], str]:
    def op(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO item (name) VALUES (?)", (name,))
        return name

    return op


def _fail_after_insert(name: str) -> Callable[[sqlite3.Connection], None]:
    def op(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO item (name) VALUES (?)", (name,))
        raise ValueError(f"{name} failed")

    return op


class Gate:
    """Holds the writer thread inside an op, so everything queued meanwhile is
    known to form the next batch: no sleeps, no guessing at scheduling."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def op(self, conn: sqlite3.Connection) -> str:
        self.entered.set()
        if not self.release.wait(10):
            raise TimeoutError("the test never opened the gate")
        return "gate"

    async def close_on(self, writer: GroupWriter) -> asyncio.Task[Any]:
        """Start the gate op and wait until the writer thread is inside it."""
        task = asyncio.ensure_future(writer.run(self.op))
        await asyncio.to_thread(self.entered.wait, 10)
        assert self.entered.is_set()
        return task


@pytest.fixture
async def writer(db_path: Path) -> AsyncIterator[GroupWriter]:
    started = await GroupWriter.start(db_path)

    def schema(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        conn.execute(
            "CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            " parent_id INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
        )

    await started.run(schema)
    try:
        yield started
    finally:
        await started.close()


async def _in_one_batch(writer: GroupWriter, *calls: Awaitable[Any]) -> list[Any]:
    """Run `calls` as one batch (behind a gate) and return their results or errors."""
    gate = Gate()
    held = await gate.close_on(writer)
    batches = writer.batches
    tasks = [asyncio.ensure_future(call) for call in calls]
    await asyncio.sleep(0)  # let every task queue its op
    gate.release.set()
    assert await held == "gate"
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert writer.batches == batches + 1, "the calls were meant to share one batch"
    return results


async def test_connection_has_the_pragmas(writer: GroupWriter) -> None:
    def pragmas(conn: sqlite3.Connection) -> tuple[Any, ...]:
        return tuple(
            conn.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("journal_mode", "busy_timeout", "foreign_keys", "synchronous")
        )

    assert await writer.run(pragmas) == ("wal", 5000, 1, 1)


async def test_concurrent_writers_share_transactions(writer: GroupWriter, db_path: Path) -> None:
    names = [f"n{i}" for i in range(50)]
    results = await _in_one_batch(writer, *(writer.run(_insert(n)) for n in names))
    assert results == names
    assert _rows(db_path) == names, "ops run in submission order"


async def test_ungated_gather_groups_too(writer: GroupWriter, db_path: Path) -> None:
    before_batches, before_ops = writer.batches, writer.ops
    names = [f"n{i}" for i in range(200)]
    assert await asyncio.gather(*(writer.run(_insert(n)) for n in names)) == names
    assert writer.ops - before_ops == 200
    assert writer.batches - before_batches < 200
    assert _rows(db_path) == names


async def test_a_failing_op_is_rolled_back_alone(writer: GroupWriter, db_path: Path) -> None:
    results = await _in_one_batch(
        writer,
        writer.run(_insert("a")),
        writer.run(_fail_after_insert("b")),
        writer.run(_insert("c")),
    )
    assert results[0] == "a" and results[2] == "c"
    assert isinstance(results[1], ValueError) and str(results[1]) == "b failed"
    assert _rows(db_path) == ["a", "c"]


class Merge:
    """A merged write that inserts every item and records each call's items;
    an item named "bad" makes the whole call fail, after its inserts."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, conn: sqlite3.Connection, items: Sequence[str]) -> list[str]:
        self.calls.append(list(items))
        conn.executemany("INSERT INTO item (name) VALUES (?)", [(item,) for item in items])
        if "bad" in items:
            raise ValueError("bad item")
        return [item.upper() for item in items]


async def test_merged_items_queued_back_to_back_run_as_one_call(
    writer: GroupWriter, db_path: Path
) -> None:
    merge = Merge()
    results = await _in_one_batch(
        writer,
        writer.run_merged(merge, "a"),
        writer.run_merged(merge, "b"),
        writer.run(_insert("op")),
        writer.run_merged(merge, "c"),
        writer.run_merged(merge, "d"),
        writer.run_merged(merge, "e"),
    )
    assert results == ["A", "B", "op", "C", "D", "E"], "each caller gets its own result"
    assert merge.calls == [["a", "b"], ["c", "d", "e"]], "a plain op between splits the runs"
    assert _rows(db_path) == ["a", "b", "op", "c", "d", "e"], "submission order is kept"
    assert writer.ops == 1 + 1 + 6  # the schema, the gate, then one per caller


async def test_a_bad_merged_item_fails_alone(writer: GroupWriter, db_path: Path) -> None:
    """The failed call is rolled back, then each item runs alone: only the bad one fails."""
    merge = Merge()
    results = await _in_one_batch(
        writer,
        writer.run_merged(merge, "a"),
        writer.run_merged(merge, "bad"),
        writer.run_merged(merge, "c"),
    )
    assert results[0] == "A" and results[2] == "C"
    assert isinstance(results[1], ValueError) and str(results[1]) == "bad item"
    assert merge.calls == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]
    assert _rows(db_path) == ["a", "c"]


async def test_a_merge_must_answer_every_item(writer: GroupWriter, db_path: Path) -> None:
    def short(conn: sqlite3.Connection, items: Sequence[str]) -> list[str]:
        conn.executemany("INSERT INTO item (name) VALUES (?)", [(item,) for item in items])
        return []

    results = await _in_one_batch(writer, writer.run_merged(short, "a"))
    assert isinstance(results[0], RuntimeError)
    assert "gave 0 results for 1 items" in str(results[0])
    assert _rows(db_path) == [], "its writes were rolled back"


async def test_a_failed_commit_fails_the_whole_batch(writer: GroupWriter, db_path: Path) -> None:
    """A deferred foreign key is only checked at COMMIT: the batch's COMMIT fails."""

    def orphan(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO item (name, parent_id) VALUES ('orphan', 42)")
        return "orphan"

    results = await _in_one_batch(
        writer, writer.run(_insert("a")), writer.run(orphan), writer.run(_insert("c"))
    )
    assert all(isinstance(r, BatchFailed) for r in results), results
    assert all(isinstance(r.__cause__, sqlite3.IntegrityError) for r in results)
    assert len({id(r) for r in results}) == 3, "each caller gets its own exception"
    assert _rows(db_path) == []
    # The connection is clean again: the next batch commits.
    assert await writer.run(_insert("after")) == "after"
    assert _rows(db_path) == ["after"]


async def test_an_op_that_ends_the_transaction_fails_its_batch_mates(
    writer: GroupWriter, db_path: Path
) -> None:
    """When the transaction is gone mid-batch, earlier ops' writes are gone too:
    they must hear so, not be told they committed."""

    def rogue(conn: sqlite3.Connection) -> None:
        conn.execute("ROLLBACK")

    results = await _in_one_batch(
        writer, writer.run(_insert("a")), writer.run(rogue), writer.run(_insert("c"))
    )
    assert all(isinstance(r, BatchFailed) for r in results), results
    assert _rows(db_path) == []


async def test_a_cancelled_caller_is_skipped(writer: GroupWriter, db_path: Path) -> None:
    gate = Gate()
    held = await gate.close_on(writer)
    doomed = asyncio.ensure_future(writer.run(_insert("cancelled")))
    kept = asyncio.ensure_future(writer.run(_insert("kept")))
    await asyncio.sleep(0)
    doomed.cancel()
    gate.release.set()
    await held
    assert await kept == "kept"
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert _rows(db_path) == ["kept"]


async def test_max_batch_bounds_a_transaction(db_path: Path) -> None:
    writer = await GroupWriter.start(db_path, max_batch=4)
    try:
        await writer.run(_item_table)
        gate = Gate()
        held = await gate.close_on(writer)
        batches = writer.batches
        tasks = [asyncio.ensure_future(writer.run(_insert(str(n)))) for n in range(10)]
        await asyncio.sleep(0)
        gate.release.set()
        await held
        await asyncio.gather(*tasks)
        assert writer.batches - batches == 3  # 4 + 4 + 2
    finally:
        await writer.close()


async def test_close_finishes_what_is_queued(db_path: Path) -> None:
    writer = await GroupWriter.start(db_path)
    await writer.run(_item_table)
    gate = Gate()
    held = await gate.close_on(writer)
    queued = [asyncio.ensure_future(writer.run(_insert(str(n)))) for n in range(5)]
    await asyncio.sleep(0)
    closing = asyncio.ensure_future(writer.close())
    await asyncio.sleep(0)
    with pytest.raises(WriterClosed):
        await writer.run(_insert("late"))
    gate.release.set()
    await closing
    assert await held == "gate"
    assert [await q for q in queued] == ["0", "1", "2", "3", "4"]
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM item").fetchone()[0] == 5
    await asyncio.gather(writer.close(), writer.close())  # idempotent, also at once


async def test_start_fails_cleanly_on_a_bad_path(tmp_path: Path) -> None:
    with pytest.raises(sqlite3.OperationalError):
        await GroupWriter.start(tmp_path / "missing" / "dir" / "grace.db")
