"""The files executor's quarantine folders: the changes a step records there and their undoing.

Each change is written to the folder's manifest, and fsynced, before it is
made, so rollback undoes what was done and nothing else. A move never
replaces what is at its destination, and across file systems the original
goes only once its copy is on disk.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.executors.common import utc
from engine.executors.files.tree import CHUNK, lstat_or_none, nofollow, tree_usage, what_is

MANIFEST = "manifest.json"

_NAME_MAX = 200  # of an original's name inside a quarantine folder: NAME_MAX is 255


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


# -- recording changes ---------------------------------------------------------


@dataclass
class Recorder:
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
        size = tree_usage(path)[1] if is_dir else st.st_size
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
            moved = lstat_or_none(dst)
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
        save(self.folder, self.manifest)
        self.made += 1

    def _forget_last(self) -> None:
        self.manifest.changes.pop()
        save(self.folder, self.manifest)
        self.made -= 1


def undo(folder: Path, index: int, change: Change) -> None:
    if change.op == "moved":
        _put_back(folder / change.to, Path(change.path), change)
    elif change.op == "renamed":
        _rename_back(Path(change.to), Path(change.path), change)
    else:
        _move_aside(folder, index, change)


def _put_back(stored: Path, original: Path, change: Change) -> None:
    if os.path.lexists(original):
        raise RestoreError(
            f"cannot restore {original}: it is now occupied by {what_is(original)} GRACE did not "
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
            f"{what_is(original)}, and GRACE will not overwrite it"
        )
    st = lstat_or_none(current)
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


# -- moving files ------------------------------------------------------------------


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
        with open(src, "rb", opener=nofollow) as fin, open(dst, "xb") as fout:
            shutil.copyfileobj(fin, fout, CHUNK)
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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- quarantine folders ------------------------------------------------------------


def reserve_folder(quarantine: Path, incident_id: int, at: datetime) -> Path:
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


def save(folder: Path, manifest: Manifest) -> None:
    """Atomically and durably: a change is only made once its entry is on disk."""
    partial = folder / f"{MANIFEST}.partial"
    with open(partial, "w", encoding="utf-8") as out:
        out.write(manifest.model_dump_json(indent=1))
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, folder / MANIFEST)
    _fsync_dir(folder)


def load(folder: Path) -> Manifest:
    return Manifest.model_validate_json((folder / MANIFEST).read_bytes())


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """One step or rollback at a time per folder: a rollback started after a
    step's deadline waits for the step's worker thread to stop."""
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def purge_folder(folder: Path) -> None:
    """The manifest goes last, so a purge cut short is retried next time."""
    for child in folder.iterdir():
        if child.name != MANIFEST:
            _remove(child)
    (folder / MANIFEST).unlink()
    folder.rmdir()
