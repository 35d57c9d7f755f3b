"""Snapshots of a database through SQLite's online backup API, and restores from them."""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path

from engine.executors.common import utc
from engine.executors.sqlite.connection import connect, integrity_problems
from engine.executors.sqlite.operations import Database


def take_snapshot(
    db: Database, directory: Path, incident_id: int, taken_at: datetime
) -> tuple[Path, int]:
    """Back the database up into a new file in `directory`: the file and its size."""
    directory.mkdir(parents=True, exist_ok=True)
    final = _reserve_snapshot_path(directory, incident_id, db.path, taken_at)
    partial = final.with_name(final.name + ".partial")
    try:
        with db.connect("ro") as src, connect(partial, "rwc", db.busy_timeout_s) as dst:
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


def restore_snapshot(location: Path, db: Database) -> None:
    """Back the snapshot up into the database, unless it fails quick_check."""
    if not location.is_file():
        raise FileNotFoundError(f"cannot restore {db.path}: snapshot file {location} is missing")
    with connect(location, "ro", db.busy_timeout_s) as src:
        problems = integrity_problems(src, "quick_check")
        if problems:
            raise ValueError(
                f"refusing to restore {db.path} from {location}: the snapshot fails "
                f"quick_check: {'; '.join(problems)}"
            )
        with db.connect("rw") as dst:
            src.backup(dst)


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
