"""What every executor needs: strict parameter models, checking that a target
is theirs, refusing one in the same words, turning untrusted paths into
allowlisted ones, timing repeated runs and polling until a deadline."""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TypeVar

from pydantic import Field

from engine.models import Availability, Target
from engine.ports import Params, TargetRefused, TransientError

T = TypeVar("T")


class RepeatParams(Params):
    """How many timed repeats a latency benchmark takes."""

    repeat: int = Field(default=5, ge=1, le=100)


def refused(executor: str, value: str, why: str) -> TargetRefused:
    """A target refused, in the words every executor uses."""
    return TargetRefused(f"{executor} target {value!r} refused: {why}")


def not_allowlisted(executor: str, value: str, resolved: str | None = None) -> TargetRefused:
    """A target no allowlist entry permits (`resolved`: what the value turned into)."""
    became = f" (resolves to {resolved!r})" if resolved is not None else ""
    return TargetRefused(f"{executor} target {value!r}{became} is not in the {executor} allowlist")


def own(executor: str, target: Target) -> None:
    """Refuse a target resolved by another executor: its name means something else here."""
    if target.executor != executor:
        raise ValueError(f"target {target.name!r} belongs to {target.executor!r}, not {executor}")


def real_path(executor: str, value: str, allowlist: Sequence[str], none_allowlisted: str) -> str:
    """The realpath of an untrusted absolute path, for the caller to match against
    its allowlist; refused before any lookup when it cannot be one."""
    if not allowlist:
        raise refused(executor, value, none_allowlisted)
    if "\0" in value:
        raise refused(executor, value, "the path contains a NUL byte")
    if not os.path.isabs(value):
        raise refused(executor, value, "not an absolute path")
    return os.path.realpath(value)


def glob_matches(real: str, pattern: str) -> bool:
    """Match the realpath against the glob as written and against the glob
    with its directory part realpathed, so an allowlisted directory that is
    itself behind a symlink still matches its own files."""
    if not os.path.isabs(pattern):
        return False
    resolved = os.path.join(os.path.realpath(os.path.dirname(pattern)), os.path.basename(pattern))
    return any(_match_segments(real, p) for p in {pattern, resolved})


def _match_segments(path: str, pattern: str) -> bool:
    """fnmatch per path segment: unlike plain fnmatch, `*` never crosses a
    `/`, so "/srv/app/*.db" does not also allow "/srv/app/cache/x.db"."""
    path_parts = path.split("/")
    pattern_parts = os.path.normpath(pattern).split("/")
    return len(path_parts) == len(pattern_parts) and all(
        fnmatchcase(part, glob) for part, glob in zip(path_parts, pattern_parts, strict=True)
    )


_NAME_PARTS = re.compile(r"([:/])")


def name_matches(value: str, pattern: str) -> bool:
    """Glob a `kind:scope/name` target name part by part: `*` never crosses a `:`
    or a `/`, so `deployment:shop/*` allows `deployment:shop/cart` but neither
    `deployment:shop/a/b` nor another kind."""
    got, want = _NAME_PARTS.split(value), _NAME_PARTS.split(pattern)
    return len(got) == len(want) and all(
        fnmatchcase(part, glob) for part, glob in zip(got, want, strict=True)
    )


def utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def shorten(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024:
            return f"{value:.1f} {unit}"
    return f"{value:.1f} PiB"


def private_dir_usable(path: Path, what: str) -> Availability:
    """Create `path` owner-only (snapshots copy data and config, which may hold
    secrets) and prove a file can be written in it."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path) as probe:
            probe.write(b"probe")
    except OSError as exc:
        return Availability(ok=False, reason=f"{what} {path} cannot be created or written: {exc}")
    return Availability(ok=True)


def median_seconds(once: Callable[[], object], repeat: int) -> float:
    """Median wall seconds of `repeat` runs of `once`: one slow run (a collection, a
    cold cache) does not decide a benchmark."""
    rounds = []
    for _ in range(repeat):
        started = time.perf_counter()
        once()
        rounds.append(time.perf_counter() - started)
    return statistics.median(rounds)


async def median_seconds_async(once: Callable[[], Awaitable[object]], repeat: int) -> float:
    """`median_seconds` of a coroutine function."""
    rounds = []
    for _ in range(repeat):
        started = time.perf_counter()
        await once()
        rounds.append(time.perf_counter() - started)
    return statistics.median(rounds)


async def poll_until(
    read: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    within_s: float,
    every_s: float,
) -> tuple[T, float, int]:
    """Read until `done` or `within_s` has passed: the last reading, the seconds
    waited and the reads made. A read that fails transiently (a throttled
    describe call) is read again until the deadline: what is being waited on
    must not be redone by the engine's retry because one reading failed."""
    started = time.monotonic()
    reads = 0
    while True:
        reads += 1
        try:
            value = await read()
        except TransientError:
            if time.monotonic() - started >= within_s:
                raise
        else:
            if done(value) or time.monotonic() - started >= within_s:
                return value, time.monotonic() - started, reads
        left = within_s - (time.monotonic() - started)
        await asyncio.sleep(max(0.0, min(every_s, left)))
