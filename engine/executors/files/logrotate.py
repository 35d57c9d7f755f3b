"""Logs: the rotate_logs action, a log and its numbered generations rotated like
logrotate does, with what it replaces or drops moved into the step's quarantine;
and the logs_at_most check."""

from __future__ import annotations

import gzip
import os
import re
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field

from engine.executors.common import human_size, utc
from engine.executors.files.operations import OPS, Step
from engine.executors.files.quarantine import Recorder
from engine.executors.files.tree import (
    CHUNK,
    left_alone_note,
    listed,
    lstat_or_none,
    nofollow,
    walk,
    what_is,
)
from engine.ports import Params

# Numbered generations only (app.log.3, app.log.3.gz); dated ones are left alone.
_GENERATION = re.compile(r"^(?P<base>.+)\.(?P<n>[1-9][0-9]{0,5})(?P<gz>\.gz)?$")


def _file_glob(value: str) -> str:
    if not value or "/" in value or "\0" in value:
        raise ValueError("pattern must be a file-name glob such as '*.log', without '/'")
    return value


FileGlob = Annotated[str, AfterValidator(_file_glob)]


class RotateLogsParams(Params):
    pattern: FileGlob = "*.log"
    keep: int = Field(ge=1, le=1000, description="rotated generations kept")
    max_age_days: float = Field(gt=0, description="rotated generations older than this go")
    compress: bool = True
    min_bytes: int = Field(default=0, ge=0, description="smaller logs are not rotated")


class LogsAtMostParams(Params):
    bytes: int = Field(ge=0)
    pattern: FileGlob = "*.log"


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
        left = left_alone_note(self.left_alone, root, self.reasons)
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
            f"{': ' + listed(self.rotated) if self.rotated else ''}; quarantined "
            f"{self.dropped} old generation(s) beyond keep={params.keep} or older than "
            f"{params.max_age_days:g} days; {space}{left}{notes}"
        )


@OPS.actions("rotate_logs", RotateLogsParams)
def rotate_logs(params: RotateLogsParams, step: Step) -> str:
    report = _Rotation()
    cutoff = utc(step.clock.now()).timestamp() - params.max_age_days * 86400
    for directory, dirnames, filenames in walk(step.root):
        for logs in _log_sets(directory, [*dirnames, *filenames], params.pattern):
            _rotate_set(step.changes, logs, params, cutoff, report)
    return report.detail(step.root, params, _space_note(step))


def _space_note(step: Step) -> str:
    """What rotation did to the disk: moving into a quarantine on the same
    file system frees nothing until the quarantine is purged."""
    root, changes = step.root, step.changes
    change = changes.moved_bytes - changes.created_bytes
    grew = "smaller" if change >= 0 else "larger"
    held = f"{human_size(changes.moved_bytes)} now waits in {changes.folder}"
    if os.stat(changes.folder).st_dev != os.lstat(root).st_dev:
        return f"{root} is {human_size(abs(change))} {grew}; {held}, on another file system"
    return (
        f"{root} is {human_size(abs(change))} {grew}; {held}, on the same file system, so "
        f"the disk gets that space back only when the quarantine is purged after "
        f"{step.quarantine_days:g} days"
    )


@OPS.checks("logs_at_most", LogsAtMostParams)
def logs_at_most(params: LogsAtMostParams, root: Path) -> tuple[bool, str]:
    """Every live log (not a numbered generation) at most `bytes` bytes."""
    pattern, limit = params.pattern, params.bytes
    big: list[str] = []
    for directory, _, filenames in walk(root):
        for name in filenames:
            if not fnmatchcase(name, pattern) or _generation_of(name, pattern) is not None:
                continue
            st = lstat_or_none(directory / name)
            if st is not None and stat.S_ISREG(st.st_mode) and st.st_size > limit:
                big.append(f"{(directory / name).relative_to(root)} ({human_size(st.st_size)})")
    if big:
        return False, f"logs under {root} larger than {human_size(limit)}: {listed(big)}"
    return True, f"every {pattern!r} log under {root} is at most {human_size(limit)}"


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
    changes: Recorder, logs: _LogSet, params: RotateLogsParams, cutoff: float, report: _Rotation
) -> None:
    stats = {path: lstat_or_none(path) for path in (logs.live, *logs.generations)}
    odd = [p for p, st in stats.items() if st is not None and not stat.S_ISREG(st.st_mode)]
    if odd:
        # A symlinked log or generation may point anywhere: the whole set is left alone.
        for path in odd:
            report.leave(path, what_is(path))
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
    changes: Recorder, path: Path, st: os.stat_result, compress: bool, report: _Rotation
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


def _recreate(changes: Recorder, path: Path, st: os.stat_result, report: _Rotation) -> None:
    try:
        os.close(changes.create(path, st))
    except FileExistsError:
        report.notes.append(f"{path} was recreated by its writer before GRACE could")


def _compress(changes: Recorder, source: Path, gz: Path, like: os.stat_result) -> int:
    """Gzip `source` into a new `gz` with `like`'s owner and mode, fsynced; its size."""
    fd = changes.create(gz, like)
    with os.fdopen(fd, "wb") as raw:
        with open(source, "rb", opener=nofollow) as src:
            with gzip.GzipFile(
                filename=str(gz), mode="wb", fileobj=raw, mtime=int(like.st_mtime)
            ) as out:
                shutil.copyfileobj(src, out, CHUNK)
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
