"""Who holds a database file open, read from /proc.

The sqlite executor never breaks a lock, so when one is held it can only name
the processes that hold the database, its -wal or its -shm open, for people to
act on. Their command lines end up in messages people read, so what looks like
a secret is masked.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.executors.common import shorten

_MAX_HOLDERS_SHOWN = 5
_COMMAND_CHARS = 120
PROC_DIR = Path("/proc")


def wal_path(db: Path) -> Path:
    return db.with_name(db.name + "-wal")


def shm_path(db: Path) -> Path:
    return db.with_name(db.name + "-shm")


@dataclass(frozen=True)
class Holder:
    pid: int
    command: str


@dataclass(frozen=True)
class Holders:
    """The other processes that have a database, its -wal or its -shm open."""

    found: tuple[Holder, ...] = ()
    hidden: int = 0
    """Processes whose open files may not be read here: they might hold it too."""
    unknown: str = ""
    """Why no process could be looked at (no /proc); empty when they could."""

    def describe(self) -> str:
        if self.unknown:
            return f"which processes hold it open is unknown: {self.unknown}"
        if self.found:
            shown = ", ".join(f"pid {h.pid} ({h.command})" for h in self.found[:_MAX_HOLDERS_SHOWN])
            more = len(self.found) - _MAX_HOLDERS_SHOWN
            text = f"held open by {shown}" + (f" and {more} more" if more > 0 else "")
        else:
            text = "no other process holds it open"
        if self.hidden:
            plural = "" if self.hidden == 1 else "es"
            text += f" ({self.hidden} process{plural} could not be inspected: permission denied)"
        return text


def open_holders(db: Path, proc_dir: Path = PROC_DIR) -> Holders:
    """Who has `db`, its -wal or its -shm open, from the fd symlinks in /proc.

    Linux only. This process is left out (its own connections are not a
    stale lock); a process that exits meanwhile held nothing; one whose fds
    may not be read is counted, since it may hold the file too.
    """
    try:
        pids = sorted(int(entry) for entry in os.listdir(proc_dir) if entry.isdigit())
    except OSError:
        pids = []
    if not pids:
        return Holders(unknown=f"{proc_dir} lists no processes here (it needs Linux's /proc)")
    wanted = {str(db), str(wal_path(db)), str(shm_path(db))}
    found: list[Holder] = []
    hidden = 0
    for pid in pids:
        if pid == os.getpid():
            continue
        try:
            if _has_open(proc_dir / str(pid) / "fd", wanted):
                found.append(Holder(pid, _command_line(proc_dir / str(pid))))
        except PermissionError:
            hidden += 1
        except (FileNotFoundError, ProcessLookupError):
            continue
    return Holders(tuple(found), hidden)


def _has_open(fd_dir: Path, wanted: set[str]) -> bool:
    """Raises PermissionError for a process this one may not inspect."""
    for fd in os.listdir(fd_dir):
        with contextlib.suppress(FileNotFoundError):  # closed while we looked
            if os.readlink(fd_dir / fd) in wanted:
                return True
    return False


_SECRET_NAME = re.compile(r"pass|secret|token|key|auth|cred", re.IGNORECASE)
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def _command_line(pid_dir: Path) -> str:
    """The command line for people to read: secrets masked, shortened."""
    try:
        args = (pid_dir / "cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return "?"
    return shorten(" ".join(_masked(args)), _COMMAND_CHARS) or "?"


def _masked(args: Iterable[str]) -> Iterator[str]:
    """Hide what looks like a secret: `--password x`, `token=x`, `user:pw@host`."""
    hide_next = False
    for arg in filter(None, args):
        name, sep, _ = arg.partition("=")
        secret_name = _SECRET_NAME.search(name) is not None
        if hide_next:
            yield "***"
            hide_next = False
        elif sep and secret_name:
            yield f"{name}=***"
        else:
            yield _URL_USERINFO.sub("***@", arg)
            hide_next = secret_name and arg.startswith("-")
