"""Tiny writes on the loop's thread: committed at once, or handed to the writer when locked."""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from pathlib import Path

import pytest

from storage import inbox as inbox_rows
from storage.loop_commits import LoopCommits
from storage.store import SqliteStore

T = "2026-12-07T00:00:00Z"


def _rows(db_path: Path) -> list[str]:
    """What another connection sees: only committed rows."""
    with sqlite3.connect(db_path) as conn:
        return [row[0] for row in conn.execute("SELECT delivery_key FROM inbox ORDER BY id")]


async def test_a_write_with_the_lock_free_is_committed_before_it_returns(store, db_path):
    batches = store.writer.batches
    delivery = await store.accept_delivery("command:T1", "command", {"sub": "heal"})
    assert delivery is not None and _rows(db_path) == ["command:T1"]
    assert (store.loop_commits.here, store.loop_commits.handed_over) == (1, 0)
    assert store.writer.batches == batches  # the writer thread was not involved


async def test_a_write_while_another_holds_the_lock_is_tried_again_then_waits_for_the_writer(
    store: SqliteStore, db_path: Path
):
    commits = LoopCommits.open(db_path, store.writer, tries=3, retry_after_s=0)
    accept = functools.partial(inbox_rows.accept, kind="message", payload_text="{}", now_text=T)
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        accepting = asyncio.ensure_future(commits.run(lambda c: accept(c, "event:Ev1")))
        for _ in range(10):  # a few turns of the loop: three tries, then the hand-over
            await asyncio.sleep(0)
        assert (commits.here, commits.handed_over) == (0, 1)
        assert not accepting.done() and _rows(db_path) == []
    finally:
        other.execute("COMMIT")
        other.close()
    assert await accepting is not None and _rows(db_path) == ["event:Ev1"]
    # The lock is free again: the next write is committed on the loop once more.
    assert await commits.run(lambda c: accept(c, "event:Ev2")) is not None
    assert commits.here == 1 and _rows(db_path) == ["event:Ev1", "event:Ev2"]
    commits.close()


async def test_a_lock_released_between_tries_is_taken_on_the_loop(store, db_path):
    commits = LoopCommits.open(db_path, store.writer, tries=3, retry_after_s=0)
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    accepting = asyncio.ensure_future(
        commits.run(lambda c: inbox_rows.accept(c, "event:Ev5", "message", "{}", T))
    )
    await asyncio.sleep(0)  # the first try finds the lock taken
    other.execute("COMMIT")
    other.close()
    assert await accepting is not None and (commits.here, commits.handed_over) == (1, 0)
    commits.close()


async def test_a_write_that_fails_leaves_nothing_and_the_next_one_commits(store, db_path):
    def half_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO inbox (delivery_key, kind, payload, received_at) VALUES (?, ?, ?, ?)",
            ("event:half", "message", "{}", "2026-12-07T00:00:00Z"),
        )
        raise ValueError("failed half-way")

    with pytest.raises(ValueError, match="half-way"):
        await store.loop_commits.run(half_then_fail)
    assert _rows(db_path) == []
    assert await store.accept_delivery("event:Ev3", "message", {}) is not None
    assert _rows(db_path) == ["event:Ev3"]


async def test_after_close_writes_go_to_the_writer_until_it_closes(store, db_path):
    store.loop_commits.close()
    assert await store.accept_delivery("event:Ev4", "message", {}) is not None
    assert store.loop_commits.handed_over == 1 and _rows(db_path) == ["event:Ev4"]
