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
import contextlib
import errno
import fcntl
import gzip
import logging
import os
import re
import shutil
import stat
import statistics
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from engine.executors.common import (
    Params,
    glob_matches,
    human_size,
    lookup,
    own,
    private_dir_usable,
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

EXECUTOR_NAME = "files"
MANIFEST = "manifest.json"
PYCACHE = "__pycache__"

_SHOWN = 5  # names listed in a detail before "and N more"
_CHUNK = 1024 * 1024
_NAME_MAX = 200  # of an original's name inside a quarantine folder: NAME_MAX is 255
# A busy mount point, a lock held elsewhere, a running executable: gone on retry.
_TRANSIENT_ERRNOS = frozenset({errno.EBUSY, errno.EAGAIN, errno.ETXTBSY})
# Numbered generations only (app.log.3, app.log.3.gz); dated ones are left alone.
_GENERATION = re.compile(r"^(?P<base>.+)\.(?P<n>[1-9][0-9]{0,5})(?P<gz>\.gz)?$")

log = logging.getLogger(__name__)


def _file_glob(value: str) -> str:
    if not value or "/" in value or "\0" in value:
        raise ValueError("pattern must be a file-name glob such as '*.log', without '/'")
    return value


FileGlob = Annotated[str, AfterValidator(_file_glob)]


class ClearPycacheParams(Params):
    pass


class RotateLogsParams(Params):
    pattern: FileGlob = "*.log"
    keep: int = Field(ge=1, le=1000, description="rotated generations kept")
    max_age_days: float = Field(gt=0, description="rotated generations older than this go")
    compress: bool = True
    min_bytes: int = Field(default=0, ge=0, description="smaller logs are not rotated")


class NoPycacheParams(Params):
    pass


class DirSizeAtMostParams(Params):
    bytes: int = Field(ge=0)


class DiskFreeAtLeastParams(Params):
    percent: float = Field(ge=0, le=100)


class LogsAtMostParams(Params):
    bytes: int = Field(ge=0)
    pattern: FileGlob = "*.log"


class WalkLatencyParams(Params):
    repeat: int = Field(default=5, ge=1, le=100)


SPEC = ExecutorSpec(
    actions={"clear_pycache": ClearPycacheParams, "rotate_logs": RotateLogsParams},
    checks={
        "no_pycache": NoPycacheParams,
        "dir_size_at_most": DirSizeAtMostParams,
        "disk_free_at_least": DiskFreeAtLeastParams,
        "logs_at_most": LogsAtMostParams,
    },
    benchmarks={"walk_latency": WalkLatencyParams},
)


class RestoreError(Exception):
    """Rollback cannot put something back without destroying what is there now."""


class Change(BaseModel):
    """One change a step made, written to the manifest before it is made."""

    model_config = ConfigDict(extra="forbid")

    op: Literal["moved", "created", "renamed"]
    path: str = Field(description="moved, renamed: where it was; created: where it is")
    to: str = Field(default="", description="moved: its name in the folder; renamed: new path")
    kind: Literal["file", "dir"] = "file"
    mode: int = 0
    mtime_ns: int = 0
    size: int = 0
    dev: int = Field(default=0, description="renamed: its inode, to know it again")
    ino: int = 0
    undone: bool = False
    displaced: str = Field(default="", description="created: where rollback moved it")


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    incident_id: int
    target: str
    taken_at: datetime
    changes: list[Change] = Field(default_factory=list)


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
        shown = repr(value)
        if not allowlist:
            raise TargetRefused(f"files target {shown} refused: no directories are allowlisted")
        if "\0" in value:
            raise TargetRefused(f"files target {shown} refused: the path contains a NUL byte")
        if not os.path.isabs(value):
            raise TargetRefused(f"files target {shown} refused: not an absolute path")
        real = os.path.realpath(value)
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
        folder = _reserve_folder(self._quarantine, manifest.incident_id, manifest.taken_at)
        try:
            for sub in ("items", "displaced"):
                (folder / sub).mkdir(mode=0o700)
            _save(folder, manifest)
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
        with _locked(folder):
            manifest = _load(folder)
            if manifest.target != target:
                raise ValueError(
                    f"quarantine folder {folder} is for {manifest.target}, not {target}"
                )
            for index in reversed(range(len(manifest.changes))):
                change = manifest.changes[index]
                if change.undone:
                    continue
                try:
                    _undo(folder, index, change)
                except OSError as exc:
                    _raise_if_transient(exc, f"restoring {change.path}")
                    raise RestoreError(
                        f"cannot restore {change.path} from {folder}: {exc}"
                    ) from exc
                change.undone = True
                _save(folder, manifest)

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
                manifest = _load(folder)
            except (OSError, ValidationError) as exc:
                # Without its date a folder may still be needed for a rollback.
                log.warning(
                    "quarantine folder %s kept: its manifest cannot be read: %s", folder, exc
                )
                continue
            if utc(manifest.taken_at) > cutoff or manifest.incident_id in keep:
                continue
            try:
                _purge_folder(folder)
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
        with _locked(folder):
            manifest = _load(folder)
            if manifest.target != str(root):
                raise ValueError(f"quarantine folder {folder} is for {manifest.target}, not {root}")
            problem = _root_problem(root)
            if problem:
                return False, f"{action} refused: {problem}"
            changes = _Recorder(folder, manifest, deadline)
            try:
                if isinstance(params, ClearPycacheParams):
                    return True, _clear_pycache(changes, root)
                if isinstance(params, RotateLogsParams):
                    now = utc(self._clock.now()).timestamp()
                    report = _rotate_logs(changes, root, params, now)
                    return True, report.detail(root, params, self._space_note(changes, root))
            except OSError as exc:
                _raise_if_transient(exc, f"{action} on {root}")
                return False, f"{action} on {root} stopped: {exc}; {changes.progress()}"
        raise ValueError(f"files action {action!r} has no implementation")  # pragma: no cover

    def _space_note(self, changes: _Recorder, root: Path) -> str:
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
        if not isinstance(params, WalkLatencyParams):  # pragma: no cover - one benchmark
            raise ValueError(f"files benchmark {benchmark.benchmark!r} has no implementation")
        try:
            return await asyncio.to_thread(_walk_latency, Path(target.name), params.repeat)
        except OSError as exc:
            _raise_if_transient(exc, f"walk_latency on {target.name}")
            raise


# -- recording changes ---------------------------------------------------------


@dataclass
class _Recorder:
    """Makes one step's changes, each written to the manifest (fsynced) first."""

    folder: Path
    manifest: Manifest
    deadline: float
    moved_bytes: int = 0
    created_bytes: int = 0
    made: int = 0

    def stash(self, path: Path) -> Path:
        """Move a file or directory into the quarantine; where it is kept."""
        self._before_change()
        st = os.lstat(path)
        is_dir = stat.S_ISDIR(st.st_mode)
        size = _usage(path)[1] if is_dir else st.st_size
        stored = f"items/{len(self.manifest.changes):04d}-{path.name[:_NAME_MAX]}"
        self._record(
            Change(
                op="moved",
                path=str(path),
                to=stored,
                kind="dir" if is_dir else "file",
                mode=stat.S_IMODE(st.st_mode),
                mtime_ns=st.st_mtime_ns,
                size=size,
            )
        )
        try:
            _move(path, self.folder / stored)
        except BaseException:
            if not os.path.lexists(self.folder / stored):
                self._forget_last()
            raise
        self.moved_bytes += size
        return self.folder / stored

    def rename(self, src: Path, dst: Path) -> None:
        self._before_change()
        st = os.lstat(src)
        self._record(
            Change(
                op="renamed",
                path=str(src),
                to=str(dst),
                mode=stat.S_IMODE(st.st_mode),
                mtime_ns=st.st_mtime_ns,
                size=st.st_size,
                dev=st.st_dev,
                ino=st.st_ino,
            )
        )
        try:
            _move(src, dst)
        except BaseException:
            moved = _lstat(dst)
            if moved is None or (moved.st_dev, moved.st_ino) != (st.st_dev, st.st_ino):
                self._forget_last()  # dst does not hold the file: nothing was renamed
            raise

    def create(self, path: Path, like: os.stat_result) -> int:
        """A new empty file with `like`'s owner and mode, so its app can still
        write it, and never more readable than it; an fd open for writing."""
        self._before_change()
        _refuse_symlinked_parent(path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, 0o600)
        try:
            if (like.st_uid, like.st_gid) != (os.geteuid(), os.getegid()):
                os.fchown(fd, like.st_uid, like.st_gid)
            os.fchmod(fd, stat.S_IMODE(like.st_mode))  # after chown, which clears set-id bits
            self._record(Change(op="created", path=str(path), mode=stat.S_IMODE(like.st_mode)))
        except BaseException:
            os.close(fd)
            os.unlink(path)  # our own empty file, never recorded
            raise
        return fd

    def progress(self) -> str:
        if not self.made:
            return "nothing was changed"
        return f"{self.made} change(s) made before that are recorded in {self.folder} for rollback"

    def _before_change(self) -> None:
        if time.monotonic() > self.deadline:
            raise TimeoutError(errno.ETIMEDOUT, "the step's timeout passed; no further change")

    def _record(self, change: Change) -> None:
        self.manifest.changes.append(change)
        _save(self.folder, self.manifest)
        self.made += 1

    def _forget_last(self) -> None:
        self.manifest.changes.pop()
        _save(self.folder, self.manifest)
        self.made -= 1


def _undo(folder: Path, index: int, change: Change) -> None:
    if change.op == "moved":
        _put_back(folder / change.to, Path(change.path), change)
    elif change.op == "renamed":
        _rename_back(Path(change.to), Path(change.path), change)
    else:
        _move_aside(folder, index, change)


def _put_back(stored: Path, original: Path, change: Change) -> None:
    if os.path.lexists(original):
        raise RestoreError(
            f"cannot restore {original}: it is now occupied by {_what(original)} GRACE did not "
            f"put there, and GRACE will not overwrite it; the original is kept at {stored}"
        )
    if not os.path.lexists(stored):
        raise RestoreError(f"cannot restore {original}: its quarantined copy {stored} is missing")
    _move(stored, original)
    st = os.lstat(original)
    kind = "dir" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else "other"
    if kind != change.kind or stat.S_IMODE(st.st_mode) != change.mode:
        raise RestoreError(
            f"restored {original}, but it is a {kind} with mode {stat.S_IMODE(st.st_mode):o}, "
            f"not the {change.kind} with mode {change.mode:o} that was moved away"
        )


def _rename_back(current: Path, original: Path, change: Change) -> None:
    if os.path.lexists(original):
        raise RestoreError(
            f"cannot rename {current} back to {original}: {original} is now occupied by "
            f"{_what(original)}, and GRACE will not overwrite it"
        )
    st = _lstat(current)
    if st is None or (st.st_dev, st.st_ino) != (change.dev, change.ino):
        found = "missing" if st is None else "no longer the file GRACE renamed"
        raise RestoreError(f"cannot rename {current} back to {original}: it is {found}")
    _move(current, original)


def _move_aside(folder: Path, index: int, change: Change) -> None:
    """Whatever is at a created path now goes aside, never deleted: the fresh
    log with the lines written since, or a file its app replaced it with. Its
    inode cannot tell them apart, since a freed inode number is reused at once."""
    path = Path(change.path)
    if not os.path.lexists(path):
        return  # already gone: nothing is in the way
    aside = f"displaced/{index:04d}-{path.name[:_NAME_MAX]}"
    _move(path, folder / aside)
    change.displaced = aside


# -- clear_pycache -----------------------------------------------------------------


def _clear_pycache(changes: _Recorder, root: Path) -> str:
    found, links = _pycaches(root)
    for path in found:
        changes.stash(path)
    left_alone = _left_alone(links, root)
    if not found:
        return f"nothing to clear: no {PYCACHE} directory under {root}{left_alone}"
    names = _names([str(p.relative_to(root)) for p in found])
    return (
        f"moved {len(found)} {PYCACHE} director{'y' if len(found) == 1 else 'ies'} "
        f"({human_size(changes.moved_bytes)}) from {root} into {changes.folder}: "
        f"{names}{left_alone}"
    )


def _pycaches(root: Path) -> tuple[list[Path], list[Path]]:
    """The real `__pycache__` directories under root, and the symlinks named so."""
    found: list[Path] = []
    links: list[Path] = []
    for directory, dirnames, filenames in _walk(root):
        if PYCACHE not in dirnames and PYCACHE not in filenames:
            continue
        if PYCACHE in dirnames:
            dirnames.remove(PYCACHE)  # never descend: nothing of interest inside
        st = _lstat(directory / PYCACHE)
        if st is not None and stat.S_ISDIR(st.st_mode):
            found.append(directory / PYCACHE)
        elif st is not None and stat.S_ISLNK(st.st_mode):
            links.append(directory / PYCACHE)
    return found, links


# -- rotate_logs -------------------------------------------------------------------


@dataclass
class _LogSet:
    """A log and its numbered generations in one directory; the log may be gone."""

    live: Path
    generations: dict[Path, int] = field(default_factory=dict)


@dataclass
class _Rotation:
    rotated: list[str] = field(default_factory=list)
    dropped: int = 0
    left_alone: list[Path] = field(default_factory=list)
    reasons: dict[Path, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def leave(self, path: Path, why: str) -> None:
        self.left_alone.append(path)
        self.reasons[path] = why

    def detail(self, root: Path, params: RotateLogsParams, space: str) -> str:
        left = _left_alone(self.left_alone, root, self.reasons)
        notes = "".join(f"; {note}" for note in self.notes)
        if not self.rotated and not self.dropped:
            smallest = human_size(max(params.min_bytes, 1))
            return (
                f"nothing to rotate under {root}: no log matching {params.pattern!r} of at "
                f"least {smallest}, no generation beyond keep={params.keep} or older than "
                f"{params.max_age_days:g} days{left}{notes}"
            )
        return (
            f"rotated {len(self.rotated)} log(s) under {root}"
            f"{': ' + _names(self.rotated) if self.rotated else ''}; quarantined "
            f"{self.dropped} old generation(s) beyond keep={params.keep} or older than "
            f"{params.max_age_days:g} days; {space}{left}{notes}"
        )


def _rotate_logs(changes: _Recorder, root: Path, params: RotateLogsParams, now: float) -> _Rotation:
    report = _Rotation()
    cutoff = now - params.max_age_days * 86400
    for directory, dirnames, filenames in _walk(root):
        for logs in _log_sets(directory, [*dirnames, *filenames], params.pattern):
            _rotate_set(changes, logs, params, cutoff, report)
    return report


def _log_sets(directory: Path, names: Sequence[str], pattern: str) -> list[_LogSet]:
    sets: dict[str, _LogSet] = {}
    for name in names:
        generation = _generation_of(name, pattern)
        if generation is not None:
            base, number = generation
            sets.setdefault(base, _LogSet(directory / base)).generations[directory / name] = number
        elif fnmatchcase(name, pattern):
            sets.setdefault(name, _LogSet(directory / name))
    return [sets[base] for base in sorted(sets)]


def _generation_of(name: str, pattern: str) -> tuple[str, int] | None:
    """`app.log.3.gz` is generation 3 of `app.log` when `app.log` matches the pattern."""
    found = _GENERATION.match(name)
    if found is None or not fnmatchcase(found["base"], pattern):
        return None
    return found["base"], int(found["n"])


def _rotate_set(
    changes: _Recorder, logs: _LogSet, params: RotateLogsParams, cutoff: float, report: _Rotation
) -> None:
    stats = {path: _lstat(path) for path in (logs.live, *logs.generations)}
    odd = [p for p, st in stats.items() if st is not None and not stat.S_ISREG(st.st_mode)]
    if odd:
        # A symlinked log or generation may point anywhere: the whole set is left alone.
        for path in odd:
            report.leave(path, _what(path))
        return
    live = stats[logs.live]
    rotate = live is not None and live.st_size >= max(params.min_bytes, 1)
    if rotate and live is not None and not _can_recreate(live):
        report.leave(
            logs.live,
            f"owned by uid {live.st_uid} gid {live.st_gid}, which GRACE cannot give a new file",
        )
        rotate = False
    # Rotating adds a generation, so one fewer old one survives.
    limit = params.keep if rotate else params.keep + 1
    survivors: list[tuple[int, Path]] = []
    for path, number in sorted(logs.generations.items(), key=lambda item: item[1]):
        st = stats[path]
        if st is None:
            continue
        if number >= limit or st.st_mtime < cutoff:
            changes.stash(path)
            report.dropped += 1
        else:
            survivors.append((number, path))
    if not rotate or live is None:
        return
    for number, path in reversed(survivors):
        gz = ".gz" if path.name.endswith(".gz") else ""
        changes.rename(path, logs.live.with_name(f"{logs.live.name}.{number + 1}{gz}"))
    _rotate_live(changes, logs.live, live, params.compress, report)


def _rotate_live(
    changes: _Recorder, path: Path, st: os.stat_result, compress: bool, report: _Rotation
) -> None:
    """Rename (or quarantine and compress) the log, then recreate it empty."""
    if not compress:
        changes.rename(path, path.with_name(f"{path.name}.1"))
        _recreate(changes, path, st, report)
        report.rotated.append(f"{path.name} ({human_size(st.st_size)})")
        return
    stored = changes.stash(path)
    # Recreated before compressing, so the app's log is missing only for a moment.
    _recreate(changes, path, st, report)
    packed = _compress(changes, stored, path.with_name(f"{path.name}.1.gz"), st)
    report.rotated.append(f"{path.name} ({human_size(st.st_size)}, {human_size(packed)} gzipped)")


def _recreate(changes: _Recorder, path: Path, st: os.stat_result, report: _Rotation) -> None:
    try:
        os.close(changes.create(path, st))
    except FileExistsError:
        report.notes.append(f"{path} was recreated by its writer before GRACE could")


def _compress(changes: _Recorder, source: Path, gz: Path, like: os.stat_result) -> int:
    """Gzip `source` into a new `gz` with `like`'s owner and mode, fsynced; its size."""
    fd = changes.create(gz, like)
    with os.fdopen(fd, "wb") as raw:
        with open(source, "rb", opener=_nofollow) as src:
            with gzip.GzipFile(
                filename=str(gz), mode="wb", fileobj=raw, mtime=int(like.st_mtime)
            ) as out:
                shutil.copyfileobj(src, out, _CHUNK)
            done = os.fstat(src.fileno())
        raw.flush()
        os.fsync(raw.fileno())
        size = os.fstat(raw.fileno()).st_size
    # The generation's age is its last line's: max_age_days reads it later.
    os.utime(gz, ns=(done.st_atime_ns, done.st_mtime_ns), follow_symlinks=False)
    changes.created_bytes += size
    return size


def _can_recreate(st: os.stat_result) -> bool:
    """Whether a new file can get this one's owner and group: if not, its app
    could not write the fresh log, which is worse than a full disk."""
    euid = os.geteuid()
    if euid == 0:
        return True
    return st.st_uid == euid and (st.st_gid == os.getegid() or st.st_gid in os.getgroups())


# -- checks and benchmark ----------------------------------------------------------


def _check_sync(params: BaseModel, root: Path) -> tuple[bool, str]:
    problem = _root_problem(root)
    if problem:
        return False, problem
    if isinstance(params, NoPycacheParams):
        return _no_pycache(root)
    if isinstance(params, DirSizeAtMostParams):
        files, size = _usage(root)
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
    left_alone = _left_alone(links, root)
    if found:
        names = _names([str(p.relative_to(root)) for p in found])
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
    for directory, _, filenames in _walk(root):
        for name in filenames:
            if not fnmatchcase(name, pattern) or _generation_of(name, pattern) is not None:
                continue
            st = _lstat(directory / name)
            if st is not None and stat.S_ISREG(st.st_mode) and st.st_size > limit:
                big.append(f"{(directory / name).relative_to(root)} ({human_size(st.st_size)})")
    if big:
        return False, f"logs under {root} larger than {human_size(limit)}: {_names(big)}"
    return True, f"every {pattern!r} log under {root} is at most {human_size(limit)}"


def _walk_latency(root: Path, repeat: int) -> float:
    rounds: list[float] = []
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in _walk(root):
            pass
        rounds.append(time.perf_counter() - started)
    return statistics.median(rounds)


# -- file system helpers -----------------------------------------------------------


def _walk(root: Path) -> Iterator[tuple[Path, list[str], list[str]]]:
    """os.walk that never follows a symlink and raises on an unreadable
    directory instead of silently skipping it. Prune by editing dirnames."""
    for directory, dirnames, filenames in os.walk(root, followlinks=False, onerror=_unless_gone):
        yield Path(directory), dirnames, filenames


def _unless_gone(exc: OSError) -> None:
    if not isinstance(exc, FileNotFoundError):  # gone since it was listed: nothing to do
        raise exc


def _usage(root: Path) -> tuple[int, int]:
    """Regular files under root and their bytes, each inode once, links not followed."""
    seen: set[tuple[int, int]] = set()
    files = size = 0
    for directory, _, filenames in _walk(root):
        for name in filenames:
            st = _lstat(directory / name)
            if st is None or not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            files += 1
            size += st.st_size
    return files, size


def _move(src: Path, dst: Path) -> None:
    """Move without ever replacing what is at dst; across file systems, copy
    and fsync before removing src."""
    for path in (src, dst):
        _refuse_symlinked_parent(path)
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, "GRACE will not replace it", str(dst))
    try:
        if stat.S_ISDIR(os.lstat(src).st_mode):
            os.rename(src, dst)  # can only replace an empty directory made since the check
        else:
            os.link(src, dst, follow_symlinks=False)  # fails rather than replace dst
            os.unlink(src)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        _copy_across(src, dst)
        _remove(src)
    _fsync_dir(src.parent)
    _fsync_dir(dst.parent)


def _copy_across(src: Path, dst: Path) -> None:
    """A durable copy on another file system; a partial one is removed again,
    leaving src the only copy."""
    try:
        _copy_tree(src, dst)
    except BaseException:
        if os.path.lexists(dst):
            _remove(dst)
        raise


def _copy_tree(src: Path, dst: Path) -> None:
    """Copy a file, symlink (as a link) or directory tree with owners, modes and times."""
    st = os.lstat(src)
    if stat.S_ISDIR(st.st_mode):
        os.mkdir(dst, 0o700)
        for entry in sorted(os.listdir(src)):
            _copy_tree(src / entry, dst / entry)
        _fsync_dir(dst)
    elif stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISREG(st.st_mode):
        with open(src, "rb", opener=_nofollow) as fin, open(dst, "xb") as fout:
            shutil.copyfileobj(fin, fout, _CHUNK)
            fout.flush()
            os.fsync(fout.fileno())
    else:
        raise OSError(errno.EPERM, "GRACE does not move special files", str(src))
    if os.geteuid() == 0:
        os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):  # Linux cannot chmod a symlink; its mode means nothing
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _remove(path: Path) -> None:
    """Remove what was just copied elsewhere (or a partial copy); never follows links."""
    if stat.S_ISDIR(os.lstat(path).st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _refuse_symlinked_parent(path: Path) -> None:
    """Paths come from a walk; a directory swapped for a symlink since must not lead out."""
    parent = str(path.parent)
    if os.path.realpath(parent) != parent:
        raise OSError(errno.ELOOP, "a directory on this path is now a symlink", parent)


def _root_problem(root: Path) -> str | None:
    st = _lstat(root)
    if st is None:
        return f"{root} no longer exists"
    if stat.S_ISLNK(st.st_mode):
        return f"{root} is now a symlink, which GRACE does not follow"
    if not stat.S_ISDIR(st.st_mode):
        return f"{root} is no longer a directory"
    if os.path.realpath(root) != str(root):
        return f"a directory above {root} is now a symlink, which GRACE does not follow"
    return None


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _what(path: Path) -> str:
    st = _lstat(path)
    if st is None:
        return "nothing"
    if stat.S_ISLNK(st.st_mode):
        return f"a symlink to {os.readlink(path)}"
    if stat.S_ISDIR(st.st_mode):
        return "a directory"
    if stat.S_ISREG(st.st_mode):
        return f"a file of {human_size(st.st_size)}"
    return "a special file"


def _nofollow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _names(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    more = len(items) - _SHOWN
    return f"{shown} and {more} more" if more > 0 else shown


def _left_alone(paths: Sequence[Path], root: Path, reasons: dict[Path, str] | None = None) -> str:
    if not paths:
        return ""
    why = reasons or {}
    named = [f"{p.relative_to(root)} ({why.get(p) or _what(p)})" for p in paths]
    return f"; left alone: {_names(named)}"


def _raise_if_transient(exc: OSError, what: str) -> None:
    if exc.errno in _TRANSIENT_ERRNOS:
        raise TransientError(f"{what}: {exc} (busy for now; worth retrying)") from exc


# -- quarantine folders ------------------------------------------------------------


def _reserve_folder(quarantine: Path, incident_id: int, at: datetime) -> Path:
    """Claim a fresh folder atomically: two steps in one second never share one."""
    base = f"incident-{incident_id}-{utc(at).strftime('%Y%m%dT%H%M%SZ')}"
    for n in range(1000):
        folder = quarantine / (base if n == 0 else f"{base}-{n}")
        try:
            folder.mkdir(mode=0o700)  # quarantined logs may hold secrets: owner only
            return folder
        except FileExistsError:
            continue
    raise FileExistsError(f"no free quarantine folder name for {base} in {quarantine}")


def _save(folder: Path, manifest: Manifest) -> None:
    """Atomically and durably: a change is only made once its entry is on disk."""
    partial = folder / f"{MANIFEST}.partial"
    with open(partial, "w", encoding="utf-8") as out:
        out.write(manifest.model_dump_json(indent=1))
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, folder / MANIFEST)
    _fsync_dir(folder)


def _load(folder: Path) -> Manifest:
    return Manifest.model_validate_json((folder / MANIFEST).read_bytes())


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One step or rollback at a time per folder: a rollback started after a
    step's deadline waits for the step's worker thread to stop."""
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _purge_folder(folder: Path) -> None:
    """The manifest goes last, so a purge cut short is retried next time."""
    for child in folder.iterdir():
        if child.name != MANIFEST:
            _remove(child)
    (folder / MANIFEST).unlink()
    folder.rmdir()
