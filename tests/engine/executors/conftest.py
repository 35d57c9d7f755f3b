"""Real SQLite databases on disk for the sqlite executor's tests."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.catalog import Catalog, builtin_dir, load_catalog
from engine.executors.plugin import specs
from engine.executors.sqlite import SqliteExecutor
from engine.models import Snapshot, Target
from tests.engine import fakes

BATCHES = 10
ROWS_PER_BATCH = 2_000
MIN_WAL_BYTES = 3 * 1024 * 1024


class FixedClock(fakes.FixedClock):
    """Stands still unless a test moves it: executor tests compare times they stored."""

    def __init__(self) -> None:
        super().__init__(step=timedelta(0))


SHARED_PATTERNS = ("alerting.yml", "containers.yml")
"""Built-in pattern files no one executor owns: alerts about the alerting, and
container trouble that Docker's and Kubernetes' playbooks both treat."""


def builtin_catalog(tmp_path: Path, executor: str) -> Catalog:
    """One executor's built-in patterns and playbooks (`engine/builtin/*/EXECUTOR.yml`)
    and the shared patterns, so its tests name exactly the ids and tiers that
    executor ships."""
    folder = tmp_path / "builtin"
    for kind in ("patterns", "playbooks"):
        (folder / kind).mkdir(parents=True)
        shutil.copyfile(builtin_dir() / kind / f"{executor}.yml", folder / kind / f"{executor}.yml")
    for name in SHARED_PATTERNS:
        shutil.copyfile(builtin_dir() / "patterns" / name, folder / "patterns" / name)
    return load_catalog([folder], {executor: specs()[executor]}, builtins=False)


def step_snapshot(target: Target, location: str = "") -> Snapshot:
    """The snapshot a step receives, for executors that do not use it."""
    return Snapshot(
        incident_id=1,
        target=target,
        location=location,
        size_bytes=0,
        taken_at=datetime(2026, 11, 24, 3, 0, 0, tzinfo=UTC),
    )


def payload(i: int) -> str:
    return f"row-{i}-" + hashlib.sha256(str(i).encode()).hexdigest() * 3


def wal_size(db: Path) -> int:
    wal = db.with_name(db.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def fingerprint(db: Path, table: str = "items") -> tuple[int, str]:
    """Row count and a checksum of every row, read through a fresh connection,
    so it sees exactly what any other client of the file would see."""
    conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    try:
        digest = hashlib.sha256()
        count = 0
        for row_id, text in conn.execute(f"SELECT id, payload FROM {table} ORDER BY id"):
            digest.update(f"{row_id}|{text}\n".encode())
            count += 1
        return count, digest.hexdigest()
    finally:
        conn.close()


@dataclass
class BloatedDb:
    """A WAL-mode database whose WAL has grown to several MB.

    `holder` stays open for the whole test: closing the last connection would
    checkpoint the WAL and delete it by itself, hiding what we want to test.
    """

    path: Path
    holder: sqlite3.Connection
    next_id: int = 0

    @property
    def target(self) -> Target:
        return Target(executor="sqlite", name=str(self.path))

    def insert(self, rows: int) -> None:
        start = self.next_id
        self.holder.execute("BEGIN")
        self.holder.executemany(
            "INSERT INTO items(id, payload) VALUES (?, ?)",
            [(i, payload(i)) for i in range(start, start + rows)],
        )
        self.holder.execute("COMMIT")
        self.next_id = start + rows


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def executor(tmp_path: Path, clock: FixedClock) -> SqliteExecutor:
    return SqliteExecutor(tmp_path / "snapshots", clock)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    # realpath, so Target names compare equal even when tmp itself is a symlink
    folder = (tmp_path / "data").resolve()
    folder.mkdir()
    return folder


@pytest.fixture
def bloated_db(data_dir: Path) -> Iterator[BloatedDb]:
    path = data_dir / "app.db"
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        assert holder.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
        holder.execute("PRAGMA wal_autocheckpoint=0")
        holder.execute("CREATE TABLE items(id INTEGER PRIMARY KEY, payload TEXT NOT NULL)")
        db = BloatedDb(path=path, holder=holder)
        for _ in range(BATCHES):
            db.insert(ROWS_PER_BATCH)
        assert wal_size(path) > MIN_WAL_BYTES
        yield db
    finally:
        holder.close()


@pytest.fixture
def plain_db(data_dir: Path) -> Path:
    """A small database in the default rollback-journal (DELETE) mode."""
    path = data_dir / "plain.db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("CREATE TABLE items(id INTEGER PRIMARY KEY, payload TEXT NOT NULL)")
        conn.executemany(
            "INSERT INTO items(id, payload) VALUES (?, ?)", [(i, payload(i)) for i in range(100)]
        )
    finally:
        conn.close()
    return path


def fill(path: Path, rows: int, *, wal: bool) -> Path:
    """A closed database holding rows 0..rows-1 of `items`, like an app leaves it."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        if wal:
            assert conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
        conn.execute("CREATE TABLE items(id INTEGER PRIMARY KEY, payload TEXT NOT NULL)")
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO items(id, payload) VALUES (?, ?)", [(i, payload(i)) for i in range(rows)]
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
    return path


def page_counts(db: Path) -> tuple[int, int]:
    """(all pages, freelist pages), read through a fresh connection."""
    conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    try:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        return pages, conn.execute("PRAGMA freelist_count").fetchone()[0]
    finally:
        conn.close()


@pytest.fixture
def wal_db(data_dir: Path) -> Path:
    """An empty WAL-mode database with the `items` table, closed."""
    return fill(data_dir / "app.db", 0, wal=True)


FRAGMENTED_ROWS = 12_000


@pytest.fixture
def fragmented_db(data_dir: Path) -> Path:
    """A WAL-mode database two thirds of whose rows were deleted: most of its
    pages are on the freelist, and the file is as large as before."""
    path = fill(data_dir / "app.db", FRAGMENTED_ROWS, wal=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("DELETE FROM items WHERE id % 3 != 0")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        conn.close()
    pages, free = page_counts(path)
    assert free > pages / 2
    return path
