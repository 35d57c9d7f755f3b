"""The sqlite executor: real operations on real database files.

Alert labels name the database, so every path is untrusted until
`resolve_target` has matched its realpath against the configured allowlist.
Every blocking sqlite3 call runs in `asyncio.to_thread`; each operation opens
its own connection (with a busy timeout, so a lock held elsewhere waits instead
of failing at once), does its work in that one worker thread and closes it,
because sqlite3 connections are bound to the thread that made them.

A lock held elsewhere is never forced: the executor raises TransientError
naming the processes that hold the database open (from /proc), so the engine
retries later. It kills nothing and deletes no -wal or -shm file: committed
data only ever leaves the WAL through a checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import functools
import os
import re
import shutil
import sqlite3
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from engine.executors.common import (
    glob_matches,
    human_size,
    lookup,
    own,
    private_dir_usable,
    real_path,
    shorten,
    utc,
)
from engine.executors.holders import PROC_DIR, Holders, open_holders, wal_path
from engine.models import (
    Availability,
    CheckResult,
    PlannedBenchmark,
    PlannedCheck,
    PlannedStep,
    Snapshot,
    StepResult,
    Target,
)
from engine.ports import Clock, ExecutorSpec, Params, TargetRefused, TransientError

EXECUTOR_NAME = "sqlite"

# TRUNCATE checkpoints arrived in 3.8.8; anything older cannot do the main heal.
_MIN_SQLITE = (3, 8, 8)
_MAX_PROBLEMS_SHOWN = 5
_BUSY = frozenset({"SQLITE_BUSY", "SQLITE_LOCKED"})


class WalCheckpointParams(Params):
    mode: Literal["PASSIVE", "FULL", "RESTART", "TRUNCATE"] = "TRUNCATE"


class VacuumParams(Params):
    pass


class RecoverLockParams(Params):
    pass


class WalSizeAtMostParams(Params):
    bytes: int = Field(ge=0)


class IntegrityOkParams(Params):
    pass


_SELECT_START = re.compile(r"\s*(select|with)\b", re.IGNORECASE)


class FreelistRatioAtMostParams(Params):
    ratio: float = Field(ge=0, le=1, description="freelist pages / all pages")


class WritableParams(Params):
    pass


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


class ReadLatencyParams(Params):
    repeat: int = Field(default=20, ge=1, le=1000)


SPEC = ExecutorSpec(
    actions={
        "wal_checkpoint": WalCheckpointParams,
        "vacuum": VacuumParams,
        "recover_lock": RecoverLockParams,
    },
    checks={
        "wal_size_at_most": WalSizeAtMostParams,
        "integrity_ok": IntegrityOkParams,
        "scalar_at_least": ScalarAtLeastParams,
        "freelist_ratio_at_most": FreelistRatioAtMostParams,
        "writable": WritableParams,
    },
    benchmarks={"read_latency": ReadLatencyParams},
)


class SqliteExecutor:
    """Heals SQLite databases: WAL checkpoints, VACUUM, recovery from a stale
    lock, integrity, size and fragmentation checks, backup-API snapshots and restores."""

    name = EXECUTOR_NAME
    spec = SPEC

    def __init__(
        self,
        snapshot_dir: Path,
        clock: Clock,
        *,
        busy_timeout_s: float = 5.0,
        query_timeout_s: float = 10.0,
        proc_dir: Path = PROC_DIR,
    ) -> None:
        """`proc_dir` is where the process table is mounted: a container that
        heals its host's databases may see it elsewhere, as node_exporter does."""
        self._snapshot_dir = Path(snapshot_dir)
        self._clock = clock
        self._busy_timeout_s = busy_timeout_s
        self._query_timeout_s = query_timeout_s
        self._proc_dir = Path(proc_dir)

    # -- targets -----------------------------------------------------------

    def resolve_target(self, value: str, allowlist: Sequence[str]) -> Target:
        """Accept only an existing regular file whose realpath an allowlist glob matches.

        The realpath is what gets matched and what the Target names, so a
        symlink or `..` in an alert label cannot lead outside the allowlist.
        A bare file name ("orders.db", as people write it) is the one file of
        that name in the allowlisted folders, or refused when there is none or
        several.
        """
        if "/" not in value and value not in ("", ".", ".."):
            value = _in_allowlisted_folder(value, allowlist)
        real = real_path(EXECUTOR_NAME, value, allowlist, "no sqlite targets are allowlisted")
        shown = repr(value)
        if not any(glob_matches(real, pattern) for pattern in allowlist):
            raise TargetRefused(
                f"sqlite target {shown} (resolves to {real!r}) is not in the sqlite allowlist"
            )
        if not os.path.exists(real):
            raise TargetRefused(f"sqlite target {shown} refused: {real!r} does not exist")
        if not os.path.isfile(real):
            raise TargetRefused(f"sqlite target {shown} refused: {real!r} is not a regular file")
        return Target(executor=EXECUTOR_NAME, name=real)

    async def available(self) -> Availability:
        """sqlite3 is in the stdlib, but a heal also needs TRUNCATE checkpoints
        and somewhere writable to keep snapshots."""
        if sqlite3.sqlite_version_info < _MIN_SQLITE:
            wanted = ".".join(map(str, _MIN_SQLITE))
            return Availability(
                ok=False, reason=f"SQLite {sqlite3.sqlite_version} is older than {wanted}"
            )
        return await asyncio.to_thread(private_dir_usable, self._snapshot_dir, "snapshot dir")

    # -- snapshot and restore ---------------------------------------------

    def describe_snapshot(self, target: Target) -> str:
        return (
            f"a consistent copy of {target.name} through SQLite's online backup API, "
            f"into {self._snapshot_dir}; rollback copies it back the same way"
        )

    async def snapshot(self, target: Target, incident_id: int) -> Snapshot:
        """Copy the database with the online backup API.

        Unlike copying the file, the backup reads through SQLite, so it is a
        consistent copy that includes commits still only in the WAL.
        """
        own(EXECUTOR_NAME, target)
        taken_at = self._clock.now()
        location, size = await asyncio.to_thread(
            self._snapshot_sync, Path(target.name), incident_id, taken_at
        )
        return Snapshot(
            incident_id=incident_id,
            target=target,
            location=str(location),
            size_bytes=size,
            taken_at=taken_at,
        )

    def _snapshot_sync(self, db: Path, incident_id: int, taken_at: datetime) -> tuple[Path, int]:
        self._snapshot_dir.mkdir(parents=True, exist_ok=True)
        final = _reserve_snapshot_path(self._snapshot_dir, incident_id, db, taken_at)
        partial = final.with_name(final.name + ".partial")
        try:
            with (
                self._connect(db, mode="ro") as src,
                self._connect(partial, mode="rwc") as dst,
            ):
                src.backup(dst)
                # The copy inherits WAL mode from the source; a snapshot should be
                # one self-contained file, so switch it to a rollback journal.
                dst.execute("PRAGMA journal_mode=DELETE").fetchone()
            os.replace(partial, final)
        except BaseException:
            partial.unlink(missing_ok=True)
            final.unlink(missing_ok=True)
            raise
        return final, final.stat().st_size

    async def restore(self, snapshot: Snapshot) -> None:
        """Copy the snapshot back into the live database with the backup API.

        Writing through a connection to the target (rather than replacing the
        file) keeps its WAL, locks and other open connections consistent.
        """
        own(EXECUTOR_NAME, snapshot.target)
        await asyncio.to_thread(
            self._restore_sync, Path(snapshot.location), Path(snapshot.target.name)
        )

    def _restore_sync(self, location: Path, db: Path) -> None:
        if not location.is_file():
            raise FileNotFoundError(f"cannot restore {db}: snapshot file {location} is missing")
        with self._connect(location, mode="ro") as src:
            problems = _integrity_problems(src, "quick_check")
            if problems:
                raise ValueError(
                    f"refusing to restore {db} from {location}: the snapshot fails "
                    f"quick_check: {'; '.join(problems)}"
                )
            with self._connect(db, mode="rw") as dst:
                src.backup(dst)

    # -- actions -----------------------------------------------------------

    async def run(self, step: PlannedStep, target: Target, snapshot: Snapshot) -> StepResult:
        own(EXECUTOR_NAME, target)
        model = lookup(EXECUTOR_NAME, self.spec.actions, "action", step.action)
        params = model.model_validate(step.params)
        db = Path(target.name)
        # The busy handler runs inside the worker thread, which no asyncio
        # deadline can cancel, so bound it by the step's own timeout too.
        busy_timeout = min(self._busy_timeout_s, step.timeout_s)
        work: Callable[[], tuple[bool, str]]
        if isinstance(params, WalCheckpointParams):
            work = functools.partial(self._checkpoint_sync, db, params.mode, busy_timeout)
        elif isinstance(params, VacuumParams):
            work = functools.partial(self._vacuum_sync, db, snapshot, busy_timeout, step.timeout_s)
        elif isinstance(params, RecoverLockParams):
            work = functools.partial(self._recover_lock_sync, db, busy_timeout)
        else:  # pragma: no cover - the spec and this dispatch are edited together
            raise ValueError(f"sqlite action {step.action!r} has no implementation")
        started = time.perf_counter()
        ok, detail = await asyncio.to_thread(work)
        return StepResult(
            action=step.action, ok=ok, detail=detail, seconds=time.perf_counter() - started
        )

    def _checkpoint_sync(self, db: Path, mode: str, busy_timeout: float) -> tuple[bool, str]:
        """Never claims success while frames remain: a checkpoint held back by
        other connections is transient, with who holds the database open."""
        try:
            with self._connect(db, mode="rw", timeout=busy_timeout) as conn:
                journal = _journal_mode(conn)
                if journal != "wal":
                    return False, (
                        f"refused: {db} is in {journal!r} journal mode, not WAL, "
                        "so there is no WAL to checkpoint"
                    )
                before = _wal_size(db)
                busy, log_frames, done_frames = conn.execute(
                    f"PRAGMA wal_checkpoint({mode})"
                ).fetchone()
        except sqlite3.OperationalError as exc:
            self._raise_if_busy(exc, db, f"checkpoint({mode}) of")
            raise
        sizes = f"WAL {human_size(before)} before, {human_size(_wal_size(db))} after"
        left = _frames_left(busy, log_frames, done_frames)
        if left:
            raise TransientError(
                f"checkpoint({mode}) of {db} did not finish, other connections blocked it: "
                f"{left}; {sizes}; {self._holders(db).describe()}; retry once they are done"
            )
        return True, f"checkpoint({mode}) succeeded, every frame checkpointed: {sizes}"

    def _vacuum_sync(
        self, db: Path, snapshot: Snapshot, busy_timeout: float, deadline_s: float
    ) -> tuple[bool, str]:
        try:
            refusal = self._vacuum_refusal(db, snapshot)
            if refusal:
                return False, f"refused: VACUUM of {db} {refusal}"
            return True, self._vacuum_now(db, busy_timeout, deadline_s)
        except sqlite3.OperationalError as exc:
            if str(exc) == "interrupted":
                return False, (
                    f"VACUUM of {db} did not finish within {deadline_s:g} s and was rolled "
                    "back: nothing changed"
                )
            self._raise_if_busy(exc, db, "VACUUM of")
            raise

    def _vacuum_refusal(self, db: Path, snapshot: Snapshot) -> str | None:
        """VACUUM rewrites the whole file, so it runs only with a verified
        backup in hand and room on the disk for the copy it writes."""
        problem = self._backup_problem(db, snapshot)
        if problem:
            return f"needs a verified backup first: {problem}"
        free = shutil.disk_usage(db.parent).free
        problem = vacuum_space_problem(db.stat().st_size, _wal_size(db), free)
        return f"needs room: {problem} in {db.parent}" if problem else None

    def _vacuum_now(self, db: Path, busy_timeout: float, deadline_s: float) -> str:
        db_before, wal_before = db.stat().st_size, _wal_size(db)
        with self._connect(db, mode="rw", timeout=busy_timeout) as conn:
            pages_before, free_before = _page_counts(conn)
            # An interrupted VACUUM rolls back whole, so stopping it with the
            # step (which asyncio cannot do to this thread) is always safe.
            _set_deadline(conn, deadline_s)
            conn.execute("VACUUM")
            conn.set_progress_handler(None, 0)
            pending = _shrink_file(conn)
            pages_after, free_after = _page_counts(conn)
        return (
            f"VACUUM of {db} reclaimed {free_before - free_after} freelist pages "
            f"({pages_before} -> {pages_after} pages): file {human_size(db_before)} -> "
            f"{human_size(db.stat().st_size)}, WAL {human_size(wal_before)} -> "
            f"{human_size(_wal_size(db))}{pending}"
        )

    def _backup_problem(self, db: Path, snapshot: Snapshot) -> str | None:
        """Why the step's snapshot is not a readable backup of `db`; None when it is."""
        if snapshot.target != Target(executor=EXECUTOR_NAME, name=str(db)):
            return f"the step's snapshot is of {snapshot.target.name}, not of this database"
        if not snapshot.location:
            return "the step came without a snapshot file"
        location = Path(snapshot.location)
        if not location.is_file():
            return f"snapshot {location} does not exist"
        try:
            with self._connect(location, mode="ro") as conn:
                problems = _integrity_problems(conn, "quick_check")
                schema = _schema(conn)
        except sqlite3.DatabaseError as exc:
            return f"snapshot {location} cannot be read as a database: {exc}"
        if problems:
            return f"snapshot {location} fails quick_check: {'; '.join(problems)}"
        with self._connect(db, mode="ro") as conn:
            if _schema(conn) != schema:
                return f"snapshot {location} does not hold this database's tables"
        return None

    def _recover_lock_sync(self, db: Path, busy_timeout: float) -> tuple[bool, str]:
        """Opening the database is the recovery: SQLite replays a crashed
        writer's WAL, keeping every committed frame (or rolls back its hot
        journal). Then a checkpoint moves those frames into the database file."""
        holders = self._holders(db)
        try:
            with self._connect(db, mode="rw", timeout=busy_timeout) as conn:
                _prove_no_writer(conn, db, holders)
                replayed = _checkpoint_into_file(conn, db, holders)
                problems = _integrity_problems(conn, "quick_check")
        except sqlite3.DatabaseError as exc:
            # Busy is worth retrying; a malformed file or a missing one is not.
            self._raise_if_busy(exc, db, "recover_lock of")
            return False, f"recover_lock of {db} failed: {exc}; {holders.describe()}"
        found = f"{db}: {holders.describe()}, and no process holds its write lock; {replayed}"
        if problems:
            return False, f"{found}; quick_check found problems: {'; '.join(problems)}"
        return True, f"{found}; quick_check ok"

    # -- checks ------------------------------------------------------------

    async def check(self, check: PlannedCheck, target: Target) -> CheckResult:
        own(EXECUTOR_NAME, target)
        model = lookup(EXECUTOR_NAME, self.spec.checks, "check", check.check)
        params = model.model_validate(check.params)
        db = Path(target.name)
        if isinstance(params, WalSizeAtMostParams):
            ok, detail = await asyncio.to_thread(_wal_size_check, db, params.bytes)
        elif isinstance(params, IntegrityOkParams):
            ok, detail = await asyncio.to_thread(self._integrity_sync, db)
        elif isinstance(params, ScalarAtLeastParams):
            ok, detail = await asyncio.to_thread(self._scalar_sync, db, params.query, params.value)
        elif isinstance(params, FreelistRatioAtMostParams):
            ok, detail = await asyncio.to_thread(self._freelist_sync, db, params.ratio)
        elif isinstance(params, WritableParams):
            ok, detail = await asyncio.to_thread(self._writable_sync, db)
        else:  # pragma: no cover - the spec and this dispatch are edited together
            raise ValueError(f"sqlite check {check.check!r} has no implementation")
        return CheckResult(check=check.check, ok=ok, detail=detail)

    def _integrity_sync(self, db: Path) -> tuple[bool, str]:
        try:
            with self._connect(db, mode="ro") as conn:
                problems = _integrity_problems(conn, "integrity_check")
        except sqlite3.DatabaseError as exc:
            self._raise_if_busy(exc, db, "integrity_check of")
            return False, f"integrity_check could not run: {exc}"
        if problems:
            return False, f"integrity_check found problems: {'; '.join(problems)}"
        return True, "integrity_check: ok"

    def _scalar_sync(self, db: Path, query: str, threshold: float) -> tuple[bool, str]:
        shown = shorten(query)
        try:
            with self._connect(db, mode="ro") as conn:
                # Belt and braces with mode=ro: the query may only read.
                conn.execute("PRAGMA query_only=ON")
                _set_deadline(conn, self._query_timeout_s)
                row = conn.execute(query).fetchone()
        except sqlite3.Error as exc:
            self._raise_if_busy(exc, db, f"{shown} on")
            return False, f"{shown} failed: {exc}"
        if row is None:
            return False, f"{shown} returned no rows"
        value = row[0]
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False, f"{shown} returned {value!r}, not a number"
        if value >= threshold:
            return True, f"{shown} returned {value} >= {threshold}"
        return False, f"{shown} returned {value} < {threshold}"

    def _freelist_sync(self, db: Path, ratio: float) -> tuple[bool, str]:
        try:
            with self._connect(db, mode="ro") as conn:
                pages, free = _page_counts(conn)
        except sqlite3.OperationalError as exc:
            self._raise_if_busy(exc, db, "reading the freelist of")
            raise
        share = free / pages if pages else 0.0
        shown = f"freelist {free} of {pages} pages ({share:.1%})"
        if share <= ratio:
            return True, f"{shown} <= {ratio:.1%}"
        return False, f"{shown} > {ratio:.1%}"

    def _writable_sync(self, db: Path) -> tuple[bool, str]:
        """Taking the write lock and letting go proves no one else still holds it."""
        try:
            with self._connect(db, mode="rw") as conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            held = f"; {self._holders(db).describe()}" if _is_busy(exc) else ""
            return False, (
                f"{db} is not writable: BEGIN IMMEDIATE failed within "
                f"{self._busy_timeout_s:g} s: {exc}{held}"
            )
        return True, f"{db} is writable: BEGIN IMMEDIATE took its write lock and let it go"

    # -- benchmarks --------------------------------------------------------

    async def measure(self, benchmark: PlannedBenchmark, target: Target) -> float:
        """Median seconds to count every user table: a full read of the data."""
        own(EXECUTOR_NAME, target)
        model = lookup(EXECUTOR_NAME, self.spec.benchmarks, "benchmark", benchmark.benchmark)
        params = model.model_validate(benchmark.params)
        if not isinstance(params, ReadLatencyParams):  # pragma: no cover - one benchmark
            raise ValueError(f"sqlite benchmark {benchmark.benchmark!r} has no implementation")
        return await asyncio.to_thread(self._read_latency_sync, Path(target.name), params.repeat)

    def _read_latency_sync(self, db: Path, repeat: int) -> float:
        with self._connect(db, mode="ro") as conn:
            statements = [f"SELECT count(*) FROM {_quote(name)}" for name in _user_tables(conn)]
            rounds: list[float] = []
            for _ in range(repeat):
                started = time.perf_counter()
                for statement in statements:
                    conn.execute(statement).fetchone()
                rounds.append(time.perf_counter() - started)
        return statistics.median(rounds)

    # -- locks ---------------------------------------------------------------

    def _holders(self, db: Path) -> Holders:
        return open_holders(db, self._proc_dir)

    def _raise_if_busy(self, exc: sqlite3.Error, db: Path, doing: str) -> None:
        """A lock held elsewhere is not a failure: raise it as transient, so the
        engine tries again later, and say who holds the database open."""
        if _is_busy(exc):
            raise TransientError(
                f"{doing} {db} failed: {exc}, a lock is held elsewhere; "
                f"{self._holders(db).describe()}"
            ) from exc

    # -- connections -------------------------------------------------------

    @contextlib.contextmanager
    def _connect(
        self, path: Path, *, mode: Literal["ro", "rw", "rwc"], timeout: float | None = None
    ) -> Iterator[sqlite3.Connection]:
        """A URI connection, so `ro` is enforced by SQLite and `rw` never
        creates a missing database; autocommit, so nothing is left open;
        always closed, even on error."""
        uri = f"{Path(path).absolute().as_uri()}?mode={mode}"
        conn = sqlite3.connect(
            uri,
            uri=True,
            timeout=self._busy_timeout_s if timeout is None else timeout,
            isolation_level=None,
        )
        try:
            yield conn
        finally:
            conn.close()


# -- helpers -------------------------------------------------------------------


def _reserve_snapshot_path(directory: Path, incident_id: int, db: Path, at: datetime) -> Path:
    """Claim a fresh snapshot name atomically, so two snapshots taken in the
    same second never overwrite each other."""
    stamp = utc(at).strftime("%Y%m%dT%H%M%SZ")
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", db.stem) or "db"
    base = f"incident-{incident_id}-{stem}-{stamp}"
    for n in range(1000):
        candidate = directory / (f"{base}.sqlite" if n == 0 else f"{base}-{n}.sqlite")
        try:
            with open(candidate, "x"):
                return candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"no free snapshot name for {base} in {directory}")


def _wal_size(db: Path) -> int:
    try:
        return wal_path(db).stat().st_size
    except FileNotFoundError:
        return 0


def _wal_size_check(db: Path, limit: int) -> tuple[bool, str]:
    size = _wal_size(db)
    if size <= limit:
        return True, f"WAL {human_size(size)} <= {human_size(limit)}"
    return False, f"WAL {human_size(size)} > {human_size(limit)}"


def _integrity_problems(conn: sqlite3.Connection, pragma: str) -> list[str]:
    """The rows of integrity_check/quick_check other than a lone "ok"."""
    rows = [str(row[0]) for row in conn.execute(f"PRAGMA {pragma}").fetchall()]
    if rows == ["ok"]:
        return []
    return rows[:_MAX_PROBLEMS_SHOWN] or ["no result"]


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


def _set_deadline(conn: sqlite3.Connection, seconds: float) -> None:
    """Interrupt a runaway query (a recursive CTE, say): the worker thread it
    runs in cannot be cancelled from asyncio."""
    deadline = time.monotonic() + seconds
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)


def _is_busy(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorname", "") in _BUSY


def _journal_mode(conn: sqlite3.Connection) -> str:
    return str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()


def _page_counts(conn: sqlite3.Connection) -> tuple[int, int]:
    """(all pages, freelist pages)."""
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    return pages, int(conn.execute("PRAGMA freelist_count").fetchone()[0])


def _schema(conn: sqlite3.Connection) -> list[tuple[str, str, str | None]]:
    return conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY type, name").fetchall()


def _frames_left(busy: int, log_frames: int, done_frames: int) -> str:
    """What a checkpoint left undone, or "" when every frame is in the database file."""
    if log_frames < 0:
        return "the checkpoint could not start"
    remaining = log_frames - done_frames
    if remaining > 0:
        return f"{remaining} of {log_frames} frames remain uncheckpointed"
    return "every frame was copied but the WAL could not be reset" if busy else ""


def _prove_no_writer(conn: sqlite3.Connection, db: Path, holders: Holders) -> None:
    """BEGIN IMMEDIATE waits out the busy timeout for the write lock: failing,
    a live process holds it, and that is its to release, not ours to break."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if _is_busy(exc):
            raise TransientError(
                f"{db} is still locked: a live process holds its write lock ({exc}); "
                f"{holders.describe()}; GRACE kills nothing, retry once it commits or exits"
            ) from exc
        raise
    conn.execute("ROLLBACK")


def _checkpoint_into_file(conn: sqlite3.Connection, db: Path, holders: Holders) -> str:
    """Move every committed WAL frame into the database file and reset the WAL.

    PASSIVE first, because a finished TRUNCATE reports no frame counts.
    """
    journal = _journal_mode(conn)
    if journal != "wal":
        return f"{journal!r} journal mode, so no WAL to replay"
    wal_before = _wal_size(db)
    _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    left = _frames_left(*conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone())
    if left:
        raise TransientError(
            f"recover_lock of {db}: readers blocked the WAL checkpoint: {left}; "
            f"{holders.describe()}; retry once they are done"
        )
    return (
        f"replayed {frames} committed WAL frames into the database file "
        f"(WAL {human_size(wal_before)} before, {human_size(_wal_size(db))} after)"
    )


def _shrink_file(conn: sqlite3.Connection) -> str:
    """In WAL mode VACUUM's new pages sit in the WAL; a checkpoint makes the
    file itself shrink. "" when it did, else why it waits."""
    if _journal_mode(conn) != "wal":
        return ""
    left = _frames_left(*conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone())
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


def _in_allowlisted_folder(name: str, allowlist: Sequence[str]) -> str:
    """The path of the one existing file called `name` that an allowlist glob
    names in a folder of its own (`/var/lib/app/*.db` names `/var/lib/app/NAME`)."""
    found = sorted(
        {
            os.path.join(folder, name)
            for folder, base in (os.path.split(pattern) for pattern in allowlist)
            if os.path.isabs(folder)
            and not any(mark in folder for mark in "*?[")
            and fnmatch.fnmatchcase(name, base)
            and os.path.isfile(os.path.join(folder, name))
        }
    )
    if len(found) == 1:
        return found[0]
    shown = repr(name)
    if not found:
        raise TargetRefused(f"sqlite target {shown} refused: no allowlisted folder holds that file")
    raise TargetRefused(
        f"sqlite target {shown} refused: it names several allowlisted files "
        f"({', '.join(found)}); give its path"
    )
