"""Connections to database files, and the pragmas every sqlite operation reads."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from engine.executors.sqlite.holders import wal_path

Mode = Literal["ro", "rw", "rwc"]

_MAX_PROBLEMS_SHOWN = 5


@contextlib.contextmanager
def connect(path: Path, mode: Mode, timeout: float) -> Iterator[sqlite3.Connection]:
    """A URI connection, so `ro` is enforced by SQLite and `rw` never
    creates a missing database; autocommit, so nothing is left open;
    always closed, even on error. `timeout`: how long it waits for a lock."""
    uri = f"{Path(path).absolute().as_uri()}?mode={mode}"
    conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def set_deadline(conn: sqlite3.Connection, seconds: float) -> None:
    """Interrupt a runaway query (a recursive CTE, say): the worker thread it
    runs in cannot be cancelled from asyncio."""
    deadline = time.monotonic() + seconds
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)


def wal_size(db: Path) -> int:
    try:
        return wal_path(db).stat().st_size
    except FileNotFoundError:
        return 0


def integrity_problems(conn: sqlite3.Connection, pragma: str) -> list[str]:
    """The rows of integrity_check/quick_check other than a lone "ok"."""
    rows = [str(row[0]) for row in conn.execute(f"PRAGMA {pragma}").fetchall()]
    if rows == ["ok"]:
        return []
    return rows[:_MAX_PROBLEMS_SHOWN] or ["no result"]


def journal_mode(conn: sqlite3.Connection) -> str:
    return str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()


def page_counts(conn: sqlite3.Connection) -> tuple[int, int]:
    """(all pages, freelist pages)."""
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    return pages, int(conn.execute("PRAGMA freelist_count").fetchone()[0])


def schema(conn: sqlite3.Connection) -> list[tuple[str, str, str | None]]:
    return conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY type, name").fetchall()


def frames_left(busy: int, log_frames: int, done_frames: int) -> str:
    """What a checkpoint left undone, or "" when every frame is in the database file."""
    if log_frames < 0:
        return "the checkpoint could not start"
    remaining = log_frames - done_frames
    if remaining > 0:
        return f"{remaining} of {log_frames} frames remain uncheckpointed"
    return "every frame was copied but the WAL could not be reset" if busy else ""
