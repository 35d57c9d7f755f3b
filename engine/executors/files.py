"""The files executor: clears `__pycache__` trees and rotates logs under allowlisted roots.

A step never deletes. Each step gets its own quarantine folder (its snapshot):
every file the step removes or replaces is moved there after a manifest entry
naming it has been written and fsynced, and every file it creates is recorded,
so rollback can put the tree back as it was. `purge_quarantine` is the only
true deletion, of folders older than `quarantine_days`.

Symlinks are never followed: walks use lstat and `followlinks=False`, a
symlinked log or `__pycache__` is left alone and named in the step's detail,
files are opened with O_NOFOLLOW, and every move first checks that no directory
on either side has become a symlink since the walk.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import shutil
import stat
import statistics
import time
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, Field, ValidationError

from engine.executors.common import (
    RepeatParams,
    glob_matches,
    human_size,
    lookup,
    own,
    private_dir_usable,
    real_path,
    utc,
)
from engine.executors.logrotate import FileGlob, RotateLogsParams, generation_of, rotate_logs
from engine.executors.quarantine import (
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
from engine.executors.tree import left_alone_note, listed, lstat_or_none, tree_usage, walk
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

EXECUTOR_NAME = "files"
PYCACHE = "__pycache__"

# A busy mount point, a lock held elsewhere, a running executable: gone on retry.
_TRANSIENT_ERRNOS = frozenset({errno.EBUSY, errno.EAGAIN, errno.ETXTBSY})

log = logging.getLogger(__name__)


class ClearPycacheParams(Params):
    pass


class NoPycacheParams(Params):
    pass


class DirSizeAtMostParams(Params):
    bytes: int = Field(ge=0)


class DiskFreeAtLeastParams(Params):
    percent: float = Field(ge=0, le=100)


class LogsAtMostParams(Params):
    bytes: int = Field(ge=0)
    pattern: FileGlob = "*.log"


SPEC = ExecutorSpec(
    actions={"clear_pycache": ClearPycacheParams, "rotate_logs": RotateLogsParams},
    checks={
        "no_pycache": NoPycacheParams,
        "dir_size_at_most": DirSizeAtMostParams,
        "disk_free_at_least": DiskFreeAtLeastParams,
        "logs_at_most": LogsAtMostParams,
    },
    benchmarks={"walk_latency": RepeatParams},
)


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
        shown = repr(value)
        chain = [real, *map(str, PurePosixPath(real).parents)]
        if not any(glob_matches(path, root) for path in chain for root in allowlist):
            raise TargetRefused(
                f"files target {shown} (resolves to {real!r}) is not under any allowlisted root"
            )
        if not os.path.exists(real):
            raise TargetRefused(f"files target {shown} refused: {real!r} does not exist")
        if not os.path.isdir(real):
            raise TargetRefused(f"files target {shown} refused: {real!r} is not a directory")
        quarantine = str(self._quarantine)
        if _within(quarantine, real) or _within(real, quarantine):
            raise TargetRefused(
                f"files target {shown} refused: {real!r} overlaps GRACE's quarantine {quarantine}"
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

    # -- actions -----------------------------------------------------------

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
        model = lookup(EXECUTOR_NAME, self.spec.actions, "action", step.action)
        params = model.model_validate(step.params)
        started = time.perf_counter()
        ok, detail = await asyncio.to_thread(
            self._run_sync,
            step.action,
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
        self, action: str, params: BaseModel, root: Path, location: str, deadline: float
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
                if isinstance(params, ClearPycacheParams):
                    return True, _clear_pycache(changes, root)
                if isinstance(params, RotateLogsParams):
                    now = utc(self._clock.now()).timestamp()
                    report = rotate_logs(changes, root, params, now)
                    return True, report.detail(root, params, self._space_note(changes, root))
            except OSError as exc:
                _raise_if_transient(exc, f"{action} on {root}")
                return False, f"{action} on {root} stopped: {exc}; {changes.progress()}"
        raise ValueError(f"files action {action!r} has no implementation")  # pragma: no cover

    def _space_note(self, changes: Recorder, root: Path) -> str:
        """What rotation did to the disk: moving into a quarantine on the same
        file system frees nothing until the quarantine is purged."""
        change = changes.moved_bytes - changes.created_bytes
        grew = "smaller" if change >= 0 else "larger"
        held = f"{human_size(changes.moved_bytes)} now waits in {changes.folder}"
        if os.stat(changes.folder).st_dev != os.lstat(root).st_dev:
            return f"{root} is {human_size(abs(change))} {grew}; {held}, on another file system"
        return (
            f"{root} is {human_size(abs(change))} {grew}; {held}, on the same file system, so "
            f"the disk gets that space back only when the quarantine is purged after "
            f"{self._quarantine_days:g} days"
        )

    # -- checks and benchmarks ---------------------------------------------

    async def check(self, check: PlannedCheck, target: Target) -> CheckResult:
        own(EXECUTOR_NAME, target)
        model = lookup(EXECUTOR_NAME, self.spec.checks, "check", check.check)
        params = model.model_validate(check.params)
        root = Path(target.name)
        try:
            ok, detail = await asyncio.to_thread(_check_sync, params, root)
        except OSError as exc:
            _raise_if_transient(exc, f"{check.check} on {root}")
            ok, detail = False, f"{check.check} on {root} could not run: {exc}"
        return CheckResult(check=check.check, ok=ok, detail=detail)

    async def measure(self, benchmark: PlannedBenchmark, target: Target) -> float:
        """Median seconds to walk the whole tree: what every check and step pays."""
        own(EXECUTOR_NAME, target)
        model = lookup(EXECUTOR_NAME, self.spec.benchmarks, "benchmark", benchmark.benchmark)
        params = model.model_validate(benchmark.params)
        if not isinstance(params, RepeatParams):  # pragma: no cover - one benchmark
            raise ValueError(f"files benchmark {benchmark.benchmark!r} has no implementation")
        try:
            return await asyncio.to_thread(_walk_latency, Path(target.name), params.repeat)
        except OSError as exc:
            _raise_if_transient(exc, f"walk_latency on {target.name}")
            raise


# -- clear_pycache -----------------------------------------------------------------


def _clear_pycache(changes: Recorder, root: Path) -> str:
    found, links = _pycaches(root)
    for path in found:
        changes.stash(path)
    left_alone = left_alone_note(links, root)
    if not found:
        return f"nothing to clear: no {PYCACHE} directory under {root}{left_alone}"
    names = listed([str(p.relative_to(root)) for p in found])
    return (
        f"moved {len(found)} {PYCACHE} director{'y' if len(found) == 1 else 'ies'} "
        f"({human_size(changes.moved_bytes)}) from {root} into {changes.folder}: "
        f"{names}{left_alone}"
    )


def _pycaches(root: Path) -> tuple[list[Path], list[Path]]:
    """The real `__pycache__` directories under root, and the symlinks named so."""
    found: list[Path] = []
    links: list[Path] = []
    for directory, dirnames, filenames in walk(root):
        if PYCACHE not in dirnames and PYCACHE not in filenames:
            continue
        if PYCACHE in dirnames:
            dirnames.remove(PYCACHE)  # never descend: nothing of interest inside
        st = lstat_or_none(directory / PYCACHE)
        if st is not None and stat.S_ISDIR(st.st_mode):
            found.append(directory / PYCACHE)
        elif st is not None and stat.S_ISLNK(st.st_mode):
            links.append(directory / PYCACHE)
    return found, links


# -- checks and benchmark ----------------------------------------------------------


def _check_sync(params: BaseModel, root: Path) -> tuple[bool, str]:
    problem = _root_problem(root)
    if problem:
        return False, problem
    if isinstance(params, NoPycacheParams):
        return _no_pycache(root)
    if isinstance(params, DirSizeAtMostParams):
        files, size = tree_usage(root)
        shown = f"{root} holds {human_size(size)} in {files} files"
        if size <= params.bytes:
            return True, f"{shown} <= {human_size(params.bytes)}"
        return False, f"{shown} > {human_size(params.bytes)}"
    if isinstance(params, DiskFreeAtLeastParams):
        return _disk_free_at_least(root, params.percent)
    if isinstance(params, LogsAtMostParams):
        return _logs_at_most(root, params.pattern, params.bytes)
    raise ValueError(f"no files check takes {type(params).__name__}")  # pragma: no cover


def _no_pycache(root: Path) -> tuple[bool, str]:
    found, links = _pycaches(root)
    left_alone = left_alone_note(links, root)
    if found:
        names = listed([str(p.relative_to(root)) for p in found])
        return False, f"{len(found)} {PYCACHE} left under {root}: {names}{left_alone}"
    return True, f"no {PYCACHE} directory under {root}{left_alone}"


def _disk_free_at_least(root: Path, percent: float) -> tuple[bool, str]:
    """Free as node_exporter counts it: space available to unprivileged users."""
    usage = shutil.disk_usage(root)
    free = 100 * usage.free / usage.total if usage.total else 0.0
    shown = (
        f"the file system of {root} has {free:.1f}% free "
        f"({human_size(usage.free)} of {human_size(usage.total)})"
    )
    if free >= percent:
        return True, f"{shown} >= {percent:g}%"
    return False, f"{shown} < {percent:g}%"


def _logs_at_most(root: Path, pattern: str, limit: int) -> tuple[bool, str]:
    """Every live log (not a numbered generation) at most `limit` bytes."""
    big: list[str] = []
    for directory, _, filenames in walk(root):
        for name in filenames:
            if not fnmatchcase(name, pattern) or generation_of(name, pattern) is not None:
                continue
            st = lstat_or_none(directory / name)
            if st is not None and stat.S_ISREG(st.st_mode) and st.st_size > limit:
                big.append(f"{(directory / name).relative_to(root)} ({human_size(st.st_size)})")
    if big:
        return False, f"logs under {root} larger than {human_size(limit)}: {listed(big)}"
    return True, f"every {pattern!r} log under {root} is at most {human_size(limit)}"


def _walk_latency(root: Path, repeat: int) -> float:
    rounds: list[float] = []
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in walk(root):
            pass
        rounds.append(time.perf_counter() - started)
    return statistics.median(rounds)


# -- file system helpers -----------------------------------------------------------


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
