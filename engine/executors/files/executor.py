"""The files executor: which tree a target names, its quarantine folders (its
snapshots, their restore and their purge), and the dispatch of its operations
into a worker thread each."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import shutil
import stat
import time
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.executors.common import (
    glob_matches,
    own,
    private_dir_usable,
    real_path,
    refused,
    utc,
)

# Imported for their handlers, which declare themselves in OPS.
from engine.executors.files import logrotate, pycache, usage  # noqa: F401
from engine.executors.files.operations import EXECUTOR_NAME, OPS, Step
from engine.executors.files.quarantine import (
    MANIFEST,
    Manifest,
    Recorder,
    RestoreError,
    load,
    locked,
    purge_folder,
    reserve_folder,
    save,
    undo,
)
from engine.executors.files.tree import lstat_or_none
from engine.executors.plugin import Context, ExecutorPlugin, register_executor
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
from engine.ports import Clock, Executor, TargetRefused, TransientError

# A busy mount point, a lock held elsewhere, a running executable: gone on retry.
_TRANSIENT_ERRNOS = frozenset({errno.EBUSY, errno.EAGAIN, errno.ETXTBSY})

log = logging.getLogger(__name__)

SPEC = OPS.spec


class FilesConfig(BaseModel):
    """The keys of GRACE's configuration the files executor reads."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    quarantine_days: float = Field(7.0, gt=0, description="days deleted files stay restorable")


class FilesExecutor:
    """Heals directory trees: clears `__pycache__`, rotates and compresses logs,
    with a quarantine folder per step that rollback restores from."""

    name = EXECUTOR_NAME
    spec = SPEC

    def __init__(self, snapshot_dir: Path, clock: Clock, *, quarantine_days: float = 7.0) -> None:
        # realpath once, so the symlink checks on every move accept our own folders.
        self._quarantine = Path(os.path.realpath(snapshot_dir)) / "quarantine"
        self._clock = clock
        self._quarantine_days = quarantine_days

    # -- targets -----------------------------------------------------------

    def resolve_target(self, value: str, allowlist: Sequence[str]) -> Target:
        """Accept an existing directory whose realpath is, or is under, an allowlisted root.

        Every ancestor of the realpath is matched against the root globs, never
        a string prefix, so `/var/log/app2` is not under `/var/log/app`.
        """
        real = real_path(EXECUTOR_NAME, value, allowlist, "no directories are allowlisted")
        chain = [real, *map(str, PurePosixPath(real).parents)]
        if not any(glob_matches(path, root) for path in chain for root in allowlist):
            raise TargetRefused(
                f"files target {value!r} (resolves to {real!r}) is not under any allowlisted root"
            )
        if not os.path.exists(real):
            raise refused(EXECUTOR_NAME, value, f"{real!r} does not exist")
        if not os.path.isdir(real):
            raise refused(EXECUTOR_NAME, value, f"{real!r} is not a directory")
        quarantine = str(self._quarantine)
        if _within(quarantine, real) or _within(real, quarantine):
            raise refused(
                EXECUTOR_NAME, value, f"{real!r} overlaps GRACE's quarantine {quarantine}"
            )
        return Target(executor=EXECUTOR_NAME, name=real)

    async def available(self) -> Availability:
        return await asyncio.to_thread(private_dir_usable, self._quarantine, "quarantine folder")

    # -- snapshot, restore, purge ----------------------------------------------

    def describe_snapshot(self, target: Target) -> str:
        return (
            f"a fresh quarantine folder under {self._quarantine} for this step: whatever the "
            f"step removes or replaces in {target.name} is moved there and whatever it creates "
            "is recorded, in a manifest; rollback puts everything back and moves created files "
            f"aside. Folders are purged after {self._quarantine_days:g} days"
        )

    async def snapshot(self, target: Target, incident_id: int) -> Snapshot:
        own(EXECUTOR_NAME, target)
        taken_at = self._clock.now()
        folder = await asyncio.to_thread(
            self._snapshot_sync,
            Manifest(incident_id=incident_id, target=target.name, taken_at=taken_at),
        )
        return Snapshot(
            incident_id=incident_id,
            target=target,
            location=str(folder),
            size_bytes=0,
            taken_at=taken_at,
        )

    def _snapshot_sync(self, manifest: Manifest) -> Path:
        self._quarantine.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder = reserve_folder(self._quarantine, manifest.incident_id, manifest.taken_at)
        try:
            for sub in ("items", "displaced"):
                (folder / sub).mkdir(mode=0o700)
            save(folder, manifest)
        except BaseException:
            shutil.rmtree(folder)  # our own folder, still empty of anything of the target's
            raise
        return folder

    async def restore(self, snapshot: Snapshot) -> None:
        """Undo the step's changes, newest first, and check each one.

        Moved files go back where they were, renamed ones get their old names,
        created paths are moved aside into the folder's `displaced/` (lines an
        app wrote into a fresh log since are kept there). A path that holds
        something else than GRACE left there is never overwritten: restore
        raises instead. Each undone change is marked in the manifest, so a
        retried restore carries on where it stopped.
        """
        own(EXECUTOR_NAME, snapshot.target)
        await asyncio.to_thread(self._restore_sync, snapshot.location, snapshot.target.name)

    def _restore_sync(self, location: str, target: str) -> None:
        folder = self._folder_of(location)
        with locked(folder):
            manifest = load(folder)
            if manifest.target != target:
                raise ValueError(
                    f"quarantine folder {folder} is for {manifest.target}, not {target}"
                )
            for index in reversed(range(len(manifest.changes))):
                change = manifest.changes[index]
                if change.undone:
                    continue
                try:
                    undo(folder, index, change)
                except OSError as exc:
                    _raise_if_transient(exc, f"restoring {change.path}")
                    raise RestoreError(
                        f"cannot restore {change.path} from {folder}: {exc}"
                    ) from exc
                change.undone = True
                save(folder, manifest)

    async def purge_quarantine(self, keep: Collection[int] = ()) -> list[Path]:
        """Delete quarantine folders older than `quarantine_days`, by the time in
        their manifest; the only deletion this executor makes. The folders deleted.

        Folders of the incidents in `keep` (held for a person to look at) stay.
        """
        cutoff = utc(self._clock.now()) - timedelta(days=self._quarantine_days)
        return await asyncio.to_thread(self._purge_sync, cutoff, frozenset(keep))

    def _purge_sync(self, cutoff: datetime, keep: frozenset[int]) -> list[Path]:
        if not self._quarantine.is_dir():
            return []
        purged: list[Path] = []
        for folder in sorted(self._quarantine.iterdir()):
            if folder.is_symlink() or not folder.is_dir():
                continue
            try:
                manifest = load(folder)
            except (OSError, ValidationError) as exc:
                # Without its date a folder may still be needed for a rollback.
                log.warning(
                    "quarantine folder %s kept: its manifest cannot be read: %s", folder, exc
                )
                continue
            if utc(manifest.taken_at) > cutoff or manifest.incident_id in keep:
                continue
            try:
                purge_folder(folder)
            except OSError:
                log.exception("quarantine folder %s could not be purged", folder)
                continue
            purged.append(folder)
        return purged

    def _folder_of(self, location: str) -> Path:
        """A snapshot's folder, only if it is one of this executor's quarantine folders."""
        folder = Path(os.path.realpath(location))
        if folder.parent != self._quarantine or not (folder / MANIFEST).is_file():
            raise ValueError(
                f"snapshot location {location!r} is not (or no longer) a quarantine folder "
                f"of the files executor in {self._quarantine}"
            )
        return folder

    # -- operations --------------------------------------------------------

    async def run(self, step: PlannedStep, target: Target, snapshot: Snapshot) -> StepResult:
        """Carry out one action, moving what it removes into `snapshot.location`.

        `rotate_logs` renames and recreates, like logrotate's `create`: a writer
        that keeps its log open keeps writing into the rotated file (with
        compress, into the original moved into the quarantine) until it reopens
        its log, so signal it to reopen or use `compress: false` for such apps.
        """
        own(EXECUTOR_NAME, target)
        if snapshot.target != target:
            raise ValueError(f"snapshot of {snapshot.target.name} passed for {target.name}")
        handler, params = OPS.actions.resolve(step.action, step.params)
        started = time.perf_counter()
        ok, detail = await asyncio.to_thread(
            self._run_sync,
            step.action,
            handler,
            params,
            Path(target.name),
            snapshot.location,
            # The worker thread cannot be cancelled: it starts no change after this.
            time.monotonic() + step.timeout_s,
        )
        return StepResult(
            action=step.action, ok=ok, detail=detail, seconds=time.perf_counter() - started
        )

    def _run_sync(
        self,
        action: str,
        handler: Callable[..., str],
        params: BaseModel,
        root: Path,
        location: str,
        deadline: float,
    ) -> tuple[bool, str]:
        folder = self._folder_of(location)
        # Held for the whole step, so a rollback waits until no change is in flight.
        with locked(folder):
            manifest = load(folder)
            if manifest.target != str(root):
                raise ValueError(f"quarantine folder {folder} is for {manifest.target}, not {root}")
            problem = _root_problem(root)
            if problem:
                return False, f"{action} refused: {problem}"
            changes = Recorder(folder, manifest, deadline)
            try:
                return True, handler(
                    params, Step(root, changes, self._clock, self._quarantine_days)
                )
            except OSError as exc:
                _raise_if_transient(exc, f"{action} on {root}")
                return False, f"{action} on {root} stopped: {exc}; {changes.progress()}"

    async def check(self, check: PlannedCheck, target: Target) -> CheckResult:
        own(EXECUTOR_NAME, target)
        handler, params = OPS.checks.resolve(check.check, check.params)
        root = Path(target.name)
        try:
            ok, detail = await asyncio.to_thread(_check_sync, handler, params, root)
        except OSError as exc:
            _raise_if_transient(exc, f"{check.check} on {root}")
            ok, detail = False, f"{check.check} on {root} could not run: {exc}"
        return CheckResult(check=check.check, ok=ok, detail=detail)

    async def measure(self, benchmark: PlannedBenchmark, target: Target) -> float:
        own(EXECUTOR_NAME, target)
        handler, params = OPS.benchmarks.resolve(benchmark.benchmark, benchmark.params)
        try:
            return await asyncio.to_thread(handler, params, Path(target.name))
        except OSError as exc:
            _raise_if_transient(exc, f"{benchmark.benchmark} on {target.name}")
            raise


def _check_sync(
    handler: Callable[..., tuple[bool, str]], params: BaseModel, root: Path
) -> tuple[bool, str]:
    problem = _root_problem(root)
    if problem:
        return False, problem
    return handler(params, root)


def _root_problem(root: Path) -> str | None:
    st = lstat_or_none(root)
    if st is None:
        return f"{root} no longer exists"
    if stat.S_ISLNK(st.st_mode):
        return f"{root} is now a symlink, which GRACE does not follow"
    if not stat.S_ISDIR(st.st_mode):
        return f"{root} is no longer a directory"
    if os.path.realpath(root) != str(root):
        return f"a directory above {root} is now a symlink, which GRACE does not follow"
    return None


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _raise_if_transient(exc: OSError, what: str) -> None:
    if exc.errno in _TRANSIENT_ERRNOS:
        raise TransientError(f"{what}: {exc} (busy for now; worth retrying)") from exc


def _build(config: FilesConfig, context: Context) -> Executor:
    return FilesExecutor(context.snapshots, context.clock, quarantine_days=config.quarantine_days)


PLUGIN = register_executor(
    ExecutorPlugin(
        name=EXECUTOR_NAME,
        operations=OPS,
        config=FilesConfig,
        factory=_build,
        summary="directory trees: clears __pycache__, rotates logs, with a quarantine",
    )
)
