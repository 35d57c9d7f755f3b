"""Locks held elsewhere: naming who holds them, recovering from a stale one,
and checking that the write lock is free.

A lock held elsewhere is never forced: it is raised as a TransientError naming
the processes that hold the database open, so the engine retries later. Nothing
is killed and no -wal or -shm file is deleted: committed data only ever leaves
the WAL through a checkpoint.
"""

from __future__ import annotations

import sqlite3

from engine.executors.common import human_size
from engine.executors.sqlite.connection import (
    frames_left,
    integrity_problems,
    journal_mode,
    wal_size,
)
from engine.executors.sqlite.holders import Holders
from engine.executors.sqlite.operations import OPS, Database, Step
from engine.ports import Params, TransientError

_BUSY = frozenset({"SQLITE_BUSY", "SQLITE_LOCKED"})


class RecoverLockParams(Params):
    pass


class WritableParams(Params):
    pass


def is_busy(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorname", "") in _BUSY


def raise_if_busy(exc: sqlite3.Error, db: Database, doing: str) -> None:
    """A lock held elsewhere is not a failure: raise it as transient, so the
    engine tries again later, and say who holds the database open."""
    if is_busy(exc):
        raise TransientError(
            f"{doing} {db.path} failed: {exc}, a lock is held elsewhere; {db.holders().describe()}"
        ) from exc


@OPS.actions("recover_lock", RecoverLockParams)
def recover_lock(params: RecoverLockParams, db: Database, step: Step) -> tuple[bool, str]:
    """Opening the database is the recovery: SQLite replays a crashed
    writer's WAL, keeping every committed frame (or rolls back its hot
    journal). Then a checkpoint moves those frames into the database file."""
    holders = db.holders()
    try:
        with db.connect("rw", timeout=step.busy_timeout_s) as conn:
            _prove_no_writer(conn, db, holders)
            replayed = _checkpoint_into_file(conn, db, holders)
            problems = integrity_problems(conn, "quick_check")
    except sqlite3.DatabaseError as exc:
        # Busy is worth retrying; a malformed file or a missing one is not.
        raise_if_busy(exc, db, "recover_lock of")
        return False, f"recover_lock of {db.path} failed: {exc}; {holders.describe()}"
    found = f"{db.path}: {holders.describe()}, and no process holds its write lock; {replayed}"
    if problems:
        return False, f"{found}; quick_check found problems: {'; '.join(problems)}"
    return True, f"{found}; quick_check ok"


@OPS.checks("writable", WritableParams)
def writable(params: WritableParams, db: Database) -> tuple[bool, str]:
    """Taking the write lock and letting go proves no one else still holds it."""
    try:
        with db.connect("rw") as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
    except sqlite3.Error as exc:
        held = f"; {db.holders().describe()}" if is_busy(exc) else ""
        return False, (
            f"{db.path} is not writable: BEGIN IMMEDIATE failed within "
            f"{db.busy_timeout_s:g} s: {exc}{held}"
        )
    return True, f"{db.path} is writable: BEGIN IMMEDIATE took its write lock and let it go"


def _prove_no_writer(conn: sqlite3.Connection, db: Database, holders: Holders) -> None:
    """BEGIN IMMEDIATE waits out the busy timeout for the write lock: failing,
    a live process holds it, and that is its to release, not ours to break."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if is_busy(exc):
            raise TransientError(
                f"{db.path} is still locked: a live process holds its write lock ({exc}); "
                f"{holders.describe()}; GRACE kills nothing, retry once it commits or exits"
            ) from exc
        raise
    conn.execute("ROLLBACK")


def _checkpoint_into_file(conn: sqlite3.Connection, db: Database, holders: Holders) -> str:
    """Move every committed WAL frame into the database file and reset the WAL.

    PASSIVE first, because a finished TRUNCATE reports no frame counts.
    """
    journal = journal_mode(conn)
    if journal != "wal":
        return f"{journal!r} journal mode, so no WAL to replay"
    wal_before = wal_size(db.path)
    _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    left = frames_left(*conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone())
    if left:
        raise TransientError(
            f"recover_lock of {db.path}: readers blocked the WAL checkpoint: {left}; "
            f"{holders.describe()}; retry once they are done"
        )
    return (
        f"replayed {frames} committed WAL frames into the database file "
        f"(WAL {human_size(wal_before)} before, {human_size(wal_size(db.path))} after)"
    )
