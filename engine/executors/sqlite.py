"""The sqlite executor: real operations on real database files.

Alert labels name the database, so every path is untrusted until
`resolve_target` has matched its realpath against the configured allowlist.
Every blocking sqlite3 call runs in `asyncio.to_thread`; each operation opens
its own connection (with a busy timeout, so a lock held elsewhere waits instead
of failing at once), does its work in that one worker thread and closes it,
because sqlite3 connections are bound to the thread that made them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sqlite3
import statistics
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from engine.executors.common import (
    Params,
    glob_matches,
    human_size,
    lookup,
    own,
    shorten,
    utc,
)
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
from engine.ports import Clock, ExecutorSpec, TargetRefused, TransientError

EXECUTOR_NAME = "sqlite"

# TRUNCATE checkpoints arrived in 3.8.8; anything older cannot do the main heal.
_MIN_SQLITE = (3, 8, 8)
_MAX_PROBLEMS_SHOWN = 5


class WalCheckpointParams(Params):
    mode: Literal["PASSIVE", "FULL", "RESTART", "TRUNCATE"] = "TRUNCATE"


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


class ReadLatencyParams(Params):
    repeat: int = Field(default=20, ge=1, le=1000)


SPEC = ExecutorSpec(
    actions={"wal_checkpoint": WalCheckpointParams},
    checks={
        "wal_size_at_most": WalSizeAtMostParams,
        "integrity_ok": IntegrityOkParams,
        "scalar_at_least": ScalarAtLeastParams,
    },
    benchmarks={"read_latency": ReadLatencyParams},
)


class SqliteExecutor:
    """Heals SQLite databases: WAL checkpoints, integrity and size checks,
    backup-API snapshots and restores."""

    name = EXECUTOR_NAME
    spec = SPEC

    def __init__(
        self,
        snapshot_dir: Path,
        clock: Clock,
        *,
        busy_timeout_s: float = 5.0,
        query_timeout_s: float = 10.0,
    ) -> None:
        self._snapshot_dir = Path(snapshot_dir)
        self._clock = clock
        self._busy_timeout_s = busy_timeout_s
        self._query_timeout_s = query_timeout_s

    # -- targets -----------------------------------------------------------

    def resolve_target(self, value: str, allowlist: Sequence[str]) -> Target:
        """Accept only an existing regular file whose realpath an allowlist glob matches.

        The realpath is what gets matched and what the Target names, so a
        symlink or `..` in an alert label cannot lead outside the allowlist.
        """
        shown = repr(value)
        if not allowlist:
            raise TargetRefused(f"sqlite target {shown} refused: no sqlite targets are allowlisted")
        if "\0" in value:
            raise TargetRefused(f"sqlite target {shown} refused: the path contains a NUL byte")
        if not os.path.isabs(value):
            raise TargetRefused(f"sqlite target {shown} refused: not an absolute path")
        real = os.path.realpath(value)
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
        return await asyncio.to_thread(self._snapshot_dir_usable)

    def _snapshot_dir_usable(self) -> Availability:
        try:
            self._snapshot_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return Availability(
                ok=False, reason=f"snapshot dir {self._snapshot_dir} cannot be created: {exc}"
            )
        if not os.access(self._snapshot_dir, os.W_OK | os.X_OK):
            return Availability(
                ok=False, reason=f"snapshot dir {self._snapshot_dir} is not writable"
            )
        return Availability(ok=True)

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
        if not isinstance(params, WalCheckpointParams):  # pragma: no cover - one action
            raise ValueError(f"sqlite action {step.action!r} has no implementation")
        # The busy handler runs inside the worker thread, which no asyncio
        # deadline can cancel, so bound it by the step's own timeout too.
        busy_timeout = min(self._busy_timeout_s, step.timeout_s)
        started = time.perf_counter()
        ok, detail = await asyncio.to_thread(
            self._checkpoint_sync, Path(target.name), params.mode, busy_timeout
        )
        return StepResult(
            action=step.action, ok=ok, detail=detail, seconds=time.perf_counter() - started
        )

    def _checkpoint_sync(self, db: Path, mode: str, busy_timeout: float) -> tuple[bool, str]:
        with self._connect(db, mode="rw", timeout=busy_timeout) as conn:
            journal = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
            if journal != "wal":
                return False, (
                    f"refused: {db} is in {journal!r} journal mode, not WAL, "
                    "so there is no WAL to checkpoint"
                )
            before = _wal_size(db)
            busy, log_frames, done_frames = conn.execute(
                f"PRAGMA wal_checkpoint({mode})"
            ).fetchone()
        after = _wal_size(db)
        sizes = f"WAL {human_size(before)} before, {human_size(after)} after"
        remaining = max(log_frames - done_frames, 0)
        if busy:
            left = (
                f"{remaining} of {log_frames} frames remain uncheckpointed"
                if remaining
                else "every frame was copied but the WAL could not be reset"
            )
            return False, (
                f"checkpoint({mode}) failed: busy, other readers or writers blocked it; "
                f"{left}; {sizes}"
            )
        if log_frames < 0 or remaining:
            return False, (
                f"checkpoint({mode}) failed: only {done_frames} of {log_frames} frames "
                f"were checkpointed, {remaining} remain; {sizes}"
            )
        return True, f"checkpoint({mode}) succeeded, every frame checkpointed: {sizes}"

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
        else:  # pragma: no cover - the spec and this dispatch are edited together
            raise ValueError(f"sqlite check {check.check!r} has no implementation")
        return CheckResult(check=check.check, ok=ok, detail=detail)

    def _integrity_sync(self, db: Path) -> tuple[bool, str]:
        try:
            with self._connect(db, mode="ro") as conn:
                problems = _integrity_problems(conn, "integrity_check")
        except sqlite3.DatabaseError as exc:
            _reraise_transient(exc)
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
            _reraise_transient(exc)
            return False, f"{shown} failed: {exc}"
        if row is None:
            return False, f"{shown} returned no rows"
        value = row[0]
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False, f"{shown} returned {value!r}, not a number"
        if value >= threshold:
            return True, f"{shown} returned {value} >= {threshold}"
        return False, f"{shown} returned {value} < {threshold}"

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


def _wal_path(db: Path) -> Path:
    return db.with_name(db.name + "-wal")


def _wal_size(db: Path) -> int:
    try:
        return _wal_path(db).stat().st_size
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


def _reraise_transient(exc: sqlite3.Error) -> None:
    """A lock held elsewhere is not a failed check: raise it as transient so
    the resilience layer tries again."""
    if getattr(exc, "sqlite_errorname", "") in {"SQLITE_BUSY", "SQLITE_LOCKED"}:
        raise TransientError(f"{exc} (a lock is held elsewhere)") from exc
