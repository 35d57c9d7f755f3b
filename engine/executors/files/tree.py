"""Looking at the trees the files executor heals, and naming what is found there.

A symlink is never followed: a walk does not descend into one, an lstat
describes the link itself and files are opened with O_NOFOLLOW, so a link
planted in a tree cannot lead a step outside its allowlisted root.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

from engine.executors.common import human_size

_SHOWN = 5  # names listed in a detail before "and N more"
CHUNK = 1024 * 1024  # bytes read at a time when a file is copied or compressed


def walk(root: Path) -> Iterator[tuple[Path, list[str], list[str]]]:
    """os.walk that never follows a symlink and raises on an unreadable
    directory instead of silently skipping it. Prune by editing dirnames."""
    for directory, dirnames, filenames in os.walk(root, followlinks=False, onerror=_unless_gone):
        yield Path(directory), dirnames, filenames


def _unless_gone(exc: OSError) -> None:
    if not isinstance(exc, FileNotFoundError):  # gone since it was listed: nothing to do
        raise exc


def tree_usage(root: Path) -> tuple[int, int]:
    """Regular files under root and their bytes, each inode once, links not followed."""
    seen: set[tuple[int, int]] = set()
    files = size = 0
    for directory, _, filenames in walk(root):
        for name in filenames:
            st = lstat_or_none(directory / name)
            if st is None or not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            files += 1
            size += st.st_size
    return files, size


def lstat_or_none(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def what_is(path: Path) -> str:
    st = lstat_or_none(path)
    if st is None:
        return "nothing"
    if stat.S_ISLNK(st.st_mode):
        return f"a symlink to {os.readlink(path)}"
    if stat.S_ISDIR(st.st_mode):
        return "a directory"
    if stat.S_ISREG(st.st_mode):
        return f"a file of {human_size(st.st_size)}"
    return "a special file"


def nofollow(path: str, flags: int) -> int:
    """An opener for open(): a file swapped for a symlink since the walk is not read through."""
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC)


def listed(items: Sequence[str]) -> str:
    """A few names, so a detail stays readable however many were found."""
    shown = ", ".join(items[:_SHOWN])
    more = len(items) - _SHOWN
    return f"{shown} and {more} more" if more > 0 else shown


def left_alone_note(
    paths: Sequence[Path], root: Path, reasons: dict[Path, str] | None = None
) -> str:
    """The paths a step or check did not touch, and why, for the end of its detail."""
    if not paths:
        return ""
    why = reasons or {}
    named = [f"{p.relative_to(root)} ({why.get(p) or what_is(p)})" for p in paths]
    return f"; left alone: {listed(named)}"
