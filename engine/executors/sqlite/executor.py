"""The sqlite executor: which database a target names, its snapshots, and the
dispatch of its operations into a worker thread each."""

from __future__ import annotations

import asyncio
import fnmatch
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

from engine.executors.common import (
    glob_matches,
    not_allowlisted,
    own,
    private_dir_usable,
    real_path,
    refused,
)
from engine.executors.plugin import Context, ExecutorPlugin, NoConfig, register_executor

# Imported for their handlers, which declare themselves in OPS.
from engine.executors.sqlite import locks, maintenance  # noqa: F401
from engine.executors.sqlite.holders import PROC_DIR
from engine.executors.sqlite.operations import EXECUTOR_NAME, OPS, Database, Step
from engine.executors.sqlite.snapshots import restore_snapshot, take_snapshot
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
from engine.ports import Clock, Executor

# TRUNCATE checkpoints arrived in 3.8.8; anything older cannot do the main heal.
_MIN_SQLITE = (3, 8, 8)

SPEC = OPS.spec


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
        if not any(glob_matches(real, pattern) for pattern in allowlist):
            raise not_allowlisted(EXECUTOR_NAME, value, real)
        if not os.path.exists(real):
            raise refused(EXECUTOR_NAME, value, f"{real!r} does not exist")
        if not os.path.isfile(real):
            raise refused(EXECUTOR_NAME, value, f"{real!r} is not a regular file")
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
            take_snapshot, self._database(target), self._snapshot_dir, incident_id, taken_at
        )
        return Snapshot(
            incident_id=incident_id,
            target=target,
            location=str(location),
            size_bytes=size,
            taken_at=taken_at,
        )

    async def restore(self, snapshot: Snapshot) -> None:
        """Copy the snapshot back into the live database with the backup API.

        Writing through a connection to the target (rather than replacing the
        file) keeps its WAL, locks and other open connections consistent.
        """
        own(EXECUTOR_NAME, snapshot.target)
        await asyncio.to_thread(
            restore_snapshot, Path(snapshot.location), self._database(snapshot.target)
        )

    # -- operations --------------------------------------------------------

    async def run(self, step: PlannedStep, target: Target, snapshot: Snapshot) -> StepResult:
        own(EXECUTOR_NAME, target)
        handler, params = OPS.actions.resolve(step.action, step.params)
        call = Step(
            snapshot=snapshot,
            timeout_s=step.timeout_s,
            busy_timeout_s=min(self._busy_timeout_s, step.timeout_s),
        )
        started = time.perf_counter()
        ok, detail = await asyncio.to_thread(handler, params, self._database(target), call)
        return StepResult(
            action=step.action, ok=ok, detail=detail, seconds=time.perf_counter() - started
        )

    async def check(self, check: PlannedCheck, target: Target) -> CheckResult:
        own(EXECUTOR_NAME, target)
        handler, params = OPS.checks.resolve(check.check, check.params)
        ok, detail = await asyncio.to_thread(handler, params, self._database(target))
        return CheckResult(check=check.check, ok=ok, detail=detail)

    async def measure(self, benchmark: PlannedBenchmark, target: Target) -> float:
        own(EXECUTOR_NAME, target)
        handler, params = OPS.benchmarks.resolve(benchmark.benchmark, benchmark.params)
        return await asyncio.to_thread(handler, params, self._database(target))

    def _database(self, target: Target) -> Database:
        return Database(
            path=Path(target.name),
            busy_timeout_s=self._busy_timeout_s,
            query_timeout_s=self._query_timeout_s,
            proc_dir=self._proc_dir,
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
    if not found:
        raise refused(EXECUTOR_NAME, name, "no allowlisted folder holds that file")
    raise refused(
        EXECUTOR_NAME,
        name,
        f"it names several allowlisted files ({', '.join(found)}); give its path",
    )


def _build(config: NoConfig, context: Context) -> Executor:
    return SqliteExecutor(context.snapshots, context.clock)


PLUGIN = register_executor(
    ExecutorPlugin(
        name=EXECUTOR_NAME,
        operations=OPS,
        config=NoConfig,
        factory=_build,
        summary="SQLite databases: WAL checkpoints, VACUUM, stale-lock recovery",
    )
)
