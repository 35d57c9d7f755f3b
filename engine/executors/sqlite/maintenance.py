"""Keeping a database in shape: WAL checkpoints and VACUUM, the checks of its
size, integrity, fragmentation and contents, and how fast it reads."""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from engine.executors.common import human_size, median_seconds, shorten
from engine.executors.sqlite.connection import (
    connect,
    frames_left,
    integrity_problems,
    journal_mode,
    page_counts,
    schema,
    set_deadline,
    wal_size,
)
from engine.executors.sqlite.locks import raise_if_busy
from engine.executors.sqlite.operations import EXECUTOR_NAME, OPS, Database, Step
from engine.models import Snapshot, Target
from engine.ports import Params, TransientError


class WalCheckpointParams(Params):
    mode: Literal["PASSIVE", "FULL", "RESTART", "TRUNCATE"] = "TRUNCATE"


class VacuumParams(Params):
    pass


class WalSizeAtMostParams(Params):
    bytes: int = Field(ge=0)


class IntegrityOkParams(Params):
    pass


_SELECT_START = re.compile(r"\s*(select|with)\b", re.IGNORECASE)


class ScalarAtLeastParams(Params):
    query: str
    value: float

    @field_validator("query")
    @classmethod
    def _must_be_select(cls, query: str) -> str:
        # The real guard is the read-only connection; this catches the obvious
        # mistake at load time with a clearer message.
        if not _SELECT_START.match(query):
            raise ValueError("query must be a read-only SELECT (or WITH ... SELECT)")
        return query


class FreelistRatioAtMostParams(Params):
    ratio: float = Field(ge=0, le=1, description="freelist pages / all pages")


class ReadLatencyParams(Params):
    repeat: int = Field(default=20, ge=1, le=1000)


# -- actions -------------------------------------------------------------------


@OPS.actions("wal_checkpoint", WalCheckpointParams)
def wal_checkpoint(params: WalCheckpointParams, db: Database, step: Step) -> tuple[bool, str]:
    """Never claims success while frames remain: a checkpoint held back by
    other connections is transient, with who holds the database open."""
    mode = params.mode
    try:
        with db.connect("rw", timeout=step.busy_timeout_s) as conn:
            journal = journal_mode(conn)
            if journal != "wal":
                return False, (
                    f"refused: {db.path} is in {journal!r} journal mode, not WAL, "
                    "so there is no WAL to checkpoint"
                )
            before = wal_size(db.path)
            busy, log_frames, done_frames = conn.execute(
                f"PRAGMA wal_checkpoint({mode})"
            ).fetchone()
    except sqlite3.OperationalError as exc:
        raise_if_busy(exc, db, f"checkpoint({mode}) of")
        raise
    sizes = f"WAL {human_size(before)} before, {human_size(wal_size(db.path))} after"
    left = frames_left(busy, log_frames, done_frames)
    if left:
        raise TransientError(
            f"checkpoint({mode}) of {db.path} did not finish, other connections blocked it: "
            f"{left}; {sizes}; {db.holders().describe()}; retry once they are done"
        )
    return True, f"checkpoint({mode}) succeeded, every frame checkpointed: {sizes}"


@OPS.actions("vacuum", VacuumParams)
def vacuum(params: VacuumParams, db: Database, step: Step) -> tuple[bool, str]:
    try:
        refusal = _vacuum_refusal(db, step.snapshot)
        if refusal:
            return False, f"refused: VACUUM of {db.path} {refusal}"
        return True, _vacuum_now(db, step)
    except sqlite3.OperationalError as exc:
        if str(exc) == "interrupted":
            return False, (
                f"VACUUM of {db.path} did not finish within {step.timeout_s:g} s and was "
                "rolled back: nothing changed"
            )
        raise_if_busy(exc, db, "VACUUM of")
        raise


def _vacuum_refusal(db: Database, snapshot: Snapshot) -> str | None:
    """VACUUM rewrites the whole file, so it runs only with a verified
    backup in hand and room on the disk for the copy it writes."""
    problem = _backup_problem(db, snapshot)
    if problem:
        return f"needs a verified backup first: {problem}"
    free = shutil.disk_usage(db.path.parent).free
    problem = vacuum_space_problem(db.path.stat().st_size, wal_size(db.path), free)
    return f"needs room: {problem} in {db.path.parent}" if problem else None


def _vacuum_now(db: Database, step: Step) -> str:
    file_before, wal_before = db.path.stat().st_size, wal_size(db.path)
    with db.connect("rw", timeout=step.busy_timeout_s) as conn:
        pages_before, free_before = page_counts(conn)
        # An interrupted VACUUM rolls back whole, so stopping it with the
        # step (which asyncio cannot do to this thread) is always safe.
        set_deadline(conn, step.timeout_s)
        conn.execute("VACUUM")
        conn.set_progress_handler(None, 0)
        pending = _shrink_file(conn)
        pages_after, free_after = page_counts(conn)
    return (
        f"VACUUM of {db.path} reclaimed {free_before - free_after} freelist pages "
        f"({pages_before} -> {pages_after} pages): file {human_size(file_before)} -> "
        f"{human_size(db.path.stat().st_size)}, WAL {human_size(wal_before)} -> "
        f"{human_size(wal_size(db.path))}{pending}"
    )


def _backup_problem(db: Database, snapshot: Snapshot) -> str | None:
    """Why the step's snapshot is not a readable backup of the database; None when it is."""
    if snapshot.target != Target(executor=EXECUTOR_NAME, name=str(db.path)):
        return f"the step's snapshot is of {snapshot.target.name}, not of this database"
    if not snapshot.location:
        return "the step came without a snapshot file"
    location = Path(snapshot.location)
    if not location.is_file():
        return f"snapshot {location} does not exist"
    try:
        with connect(location, "ro", db.busy_timeout_s) as conn:
            problems = integrity_problems(conn, "quick_check")
            tables = schema(conn)
    except sqlite3.DatabaseError as exc:
        return f"snapshot {location} cannot be read as a database: {exc}"
    if problems:
        return f"snapshot {location} fails quick_check: {'; '.join(problems)}"
    with db.connect("ro") as conn:
        if schema(conn) != tables:
            return f"snapshot {location} does not hold this database's tables"
    return None


def _shrink_file(conn: sqlite3.Connection) -> str:
    """In WAL mode VACUUM's new pages sit in the WAL; a checkpoint makes the
    file itself shrink. "" when it did, else why it waits."""
    if journal_mode(conn) != "wal":
        return ""
    left = frames_left(*conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone())
    return (
        f"; the file shrinks at the next checkpoint: readers held this one back, {left}"
        if left
        else ""
    )


def vacuum_space_problem(db_bytes: int, wal_bytes: int, free_bytes: int) -> str | None:
    """Why the disk is too full for VACUUM, or None when it has room.

    VACUUM writes a whole new copy of the data and journals it again on the
    way back, so it needs about twice the data (file and WAL) free.
    """
    needed = 2 * (db_bytes + wal_bytes)
    if free_bytes >= needed:
        return None
    return (
        f"it needs about {human_size(needed)} free (twice the database's "
        f"{human_size(db_bytes)} plus its WAL's {human_size(wal_bytes)}), "
        f"but only {human_size(free_bytes)} is free"
    )


# -- checks --------------------------------------------------------------------


@OPS.checks("wal_size_at_most", WalSizeAtMostParams)
def wal_size_at_most(params: WalSizeAtMostParams, db: Database) -> tuple[bool, str]:
    size, limit = wal_size(db.path), params.bytes
    if size <= limit:
        return True, f"WAL {human_size(size)} <= {human_size(limit)}"
    return False, f"WAL {human_size(size)} > {human_size(limit)}"


@OPS.checks("integrity_ok", IntegrityOkParams)
def integrity_ok(params: IntegrityOkParams, db: Database) -> tuple[bool, str]:
    try:
        with db.connect("ro") as conn:
            problems = integrity_problems(conn, "integrity_check")
    except sqlite3.DatabaseError as exc:
        raise_if_busy(exc, db, "integrity_check of")
        return False, f"integrity_check could not run: {exc}"
    if problems:
        return False, f"integrity_check found problems: {'; '.join(problems)}"
    return True, "integrity_check: ok"


@OPS.checks("scalar_at_least", ScalarAtLeastParams)
def scalar_at_least(params: ScalarAtLeastParams, db: Database) -> tuple[bool, str]:
    shown, threshold = shorten(params.query), params.value
    try:
        with db.connect("ro") as conn:
            # Belt and braces with mode=ro: the query may only read.
            conn.execute("PRAGMA query_only=ON")
            set_deadline(conn, db.query_timeout_s)
            row = conn.execute(params.query).fetchone()
    except sqlite3.Error as exc:
        raise_if_busy(exc, db, f"{shown} on")
        return False, f"{shown} failed: {exc}"
    if row is None:
        return False, f"{shown} returned no rows"
    value = row[0]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False, f"{shown} returned {value!r}, not a number"
    if value >= threshold:
        return True, f"{shown} returned {value} >= {threshold}"
    return False, f"{shown} returned {value} < {threshold}"


@OPS.checks("freelist_ratio_at_most", FreelistRatioAtMostParams)
def freelist_ratio_at_most(params: FreelistRatioAtMostParams, db: Database) -> tuple[bool, str]:
    try:
        with db.connect("ro") as conn:
            pages, free = page_counts(conn)
    except sqlite3.OperationalError as exc:
        raise_if_busy(exc, db, "reading the freelist of")
        raise
    share = free / pages if pages else 0.0
    shown = f"freelist {free} of {pages} pages ({share:.1%})"
    if share <= params.ratio:
        return True, f"{shown} <= {params.ratio:.1%}"
    return False, f"{shown} > {params.ratio:.1%}"


# -- benchmarks ----------------------------------------------------------------


@OPS.benchmarks("read_latency", ReadLatencyParams)
def read_latency(params: ReadLatencyParams, db: Database) -> float:
    """Median seconds to count every user table: a full read of the data."""
    with db.connect("ro") as conn:
        statements = [f"SELECT count(*) FROM {_quote(name)}" for name in _user_tables(conn)]

        def read_all() -> None:
            for statement in statements:
                conn.execute(statement).fetchone()

        return median_seconds(read_all, params.repeat)


def _user_tables(conn: sqlite3.Connection) -> list[str]:
    """Ordinary tables only: internal sqlite_* tables are not the app's data,
    and virtual tables may need a module this process does not have."""
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' "
        "ESCAPE '\\' AND upper(coalesce(sql, '')) NOT LIKE 'CREATE VIRTUAL%' ORDER BY name"
    ).fetchall()
    return [str(row[0]) for row in rows]


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
