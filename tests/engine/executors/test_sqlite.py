"""The sqlite executor against real database files, real second processes
(readers, live writers, writers killed mid-work) and real symlinks: no mocks,
so a broken operation fails here."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engine.catalog import Catalog
from engine.executors.sqlite import SqliteExecutor, vacuum_space_problem
from engine.executors.sqlite.holders import open_holders
from engine.intake.alertmanager import parse_alertmanager
from engine.intake.generic import parse_generic
from engine.intake.slack import parse_slack_message
from engine.models import (
    Alert,
    BenchmarkResult,
    CheckResult,
    Plan,
    PlannedBenchmark,
    PlannedCheck,
    PlannedStep,
    Snapshot,
    StepResult,
    Target,
)
from engine.planning import make_plan
from engine.ports import Executor, TargetRefused, TransientError
from tests.engine.executors.conftest import (
    FRAGMENTED_ROWS,
    BloatedDb,
    FixedClock,
    builtin_catalog,
    fill,
    fingerprint,
    page_counts,
    step_snapshot,
    wal_size,
)
from tests.sqlite_processes import other_process, python, reader_in_other_process

ROOT = Path(__file__).resolve().parents[3]
BUILTIN = ROOT / "engine" / "builtin"


# Holds the write lock with a row no one else sees yet; commits when told to.
LIVE_WRITER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT INTO items(id, payload) VALUES (-1, 'written while locked')")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
conn.close()
"""

# Commits `rows` rows in five transactions with automatic checkpoints off, so
# they live only in the WAL; then dies (SIGKILL) in the middle of a sixth.
CRASHING_WRITER = """
import sqlite3, sys
sys.path.insert(0, sys.argv[2])
from tests.engine.executors.conftest import payload
rows = int(sys.argv[3])
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA wal_autocheckpoint=0")
step = rows // 5
for start in range(0, rows, step):
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO items(id, payload) VALUES (?, ?)",
        [(i, payload(i)) for i in range(start, min(start + step, rows))],
    )
    conn.execute("COMMIT")
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT INTO items(id, payload) VALUES (-2, 'never committed')")
print("committed", flush=True)
sys.stdin.readline()
"""

# An app's other worker: has the database open, but no transaction.
IDLE = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("SELECT count(*) FROM items").fetchone()
print("idle", flush=True)
sys.stdin.readline()
conn.close()
"""


def live_writer(db: Path) -> contextlib.AbstractContextManager[subprocess.Popen[str]]:
    """Another process holding `db`'s write lock (BEGIN IMMEDIATE) until it ends."""
    return other_process(python(LIVE_WRITER, db), "locked")


def crash_a_writer(db: Path, rows: int) -> None:
    """Leave `db` as a writer killed mid-transaction leaves it: `rows` committed
    rows only in its -wal, a -shm, and no checkpoint."""
    with other_process(python(CRASHING_WRITER, db, ROOT, rows), "committed") as writer:
        writer.kill()
        writer.wait(timeout=30)


def checkpoint(mode: str = "TRUNCATE", timeout_s: float = 5) -> PlannedStep:
    return PlannedStep(action="wal_checkpoint", params={"mode": mode}, timeout_s=timeout_s)


def journal_mode(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        conn.close()


def file_size(path: Path) -> int:
    return path.stat().st_size


def overwrite(path: Path, content: bytes) -> None:
    path.write_bytes(content)


def make_db(path: Path, statements: list[str]) -> Path:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for statement in statements:
            conn.execute(statement)
    finally:
        conn.close()
    return path


def test_satisfies_the_executor_port(executor: SqliteExecutor) -> None:
    port: Executor = executor
    assert port.name == "sqlite"
    assert set(port.spec.actions) == {"wal_checkpoint", "vacuum", "recover_lock"}
    assert set(port.spec.checks) == {
        "wal_size_at_most",
        "integrity_ok",
        "scalar_at_least",
        "freelist_ratio_at_most",
        "writable",
    }
    assert set(port.spec.benchmarks) == {"read_latency"}


# -- availability ---------------------------------------------------------------


async def test_available(executor: SqliteExecutor) -> None:
    assert (await executor.available()).ok


async def test_unavailable_when_snapshots_cannot_be_kept(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    availability = await SqliteExecutor(blocker / "snapshots", FixedClock()).available()
    assert not availability.ok
    assert "snapshot dir" in availability.reason


# -- wal_checkpoint -------------------------------------------------------------


async def test_truncate_checkpoint_empties_wal_and_keeps_every_row(
    executor: SqliteExecutor, bloated_db: BloatedDb
) -> None:
    before = fingerprint(bloated_db.path)
    assert before[0] == bloated_db.next_id

    result = await executor.run(
        checkpoint("TRUNCATE"), bloated_db.target, step_snapshot(bloated_db.target)
    )

    assert result.ok, result.detail
    assert "succeeded" in result.detail
    assert result.action == "wal_checkpoint"
    assert result.seconds > 0
    assert wal_size(bloated_db.path) == 0
    assert re.search(r"WAL \d+\.\d MiB before, 0 B after", result.detail), result.detail
    assert fingerprint(bloated_db.path) == before
    # The rows are now in the main file itself: a copy of it alone has them all.
    alone = bloated_db.path.with_name("alone.db")
    shutil.copyfile(bloated_db.path, alone)
    assert fingerprint(alone) == before


async def test_checkpoint_blocked_by_a_reader_is_retried_later_naming_the_reader(
    executor: SqliteExecutor, bloated_db: BloatedDb
) -> None:
    with reader_in_other_process(bloated_db.path, "items") as reader:
        # Commits after the reader's snapshot: frames it still needs the WAL for.
        bloated_db.insert(500)
        expected = fingerprint(bloated_db.path)
        with pytest.raises(TransientError) as blocked:
            await executor.run(
                checkpoint("TRUNCATE", timeout_s=0.3),
                bloated_db.target,
                step_snapshot(bloated_db.target),
            )

        message = str(blocked.value)
        assert "did not finish" in message
        assert "succeeded" not in message
        match = re.search(r"(\d+) of (\d+) frames remain", message)
        assert match, message
        assert 0 < int(match[1]) <= int(match[2])
        assert f"held open by pid {reader.pid} (" in message
        assert str(bloated_db.path) in message
        assert wal_size(bloated_db.path) > 0

    assert fingerprint(bloated_db.path) == expected
    # Once the reader is gone the same step succeeds: the reader was the cause.
    retry = await executor.run(
        checkpoint("TRUNCATE"), bloated_db.target, step_snapshot(bloated_db.target)
    )
    assert retry.ok, retry.detail
    assert wal_size(bloated_db.path) == 0
    assert fingerprint(bloated_db.path) == expected


async def test_passive_checkpoint_that_leaves_frames_is_not_success(
    executor: SqliteExecutor, bloated_db: BloatedDb
) -> None:
    with reader_in_other_process(bloated_db.path, "items") as reader:
        bloated_db.insert(500)
        with pytest.raises(TransientError) as blocked:
            await executor.run(
                checkpoint("PASSIVE"), bloated_db.target, step_snapshot(bloated_db.target)
            )

    assert re.search(r"[1-9]\d* of \d+ frames remain", str(blocked.value)), blocked.value
    assert f"pid {reader.pid}" in str(blocked.value)


async def test_checkpoint_refuses_a_database_not_in_wal_mode(
    executor: SqliteExecutor, plain_db: Path
) -> None:
    before = fingerprint(plain_db)
    target = Target(executor="sqlite", name=str(plain_db))

    result = await executor.run(checkpoint(), target, step_snapshot(target))

    assert not result.ok
    assert "not WAL" in result.detail
    assert "refused" in result.detail
    assert journal_mode(plain_db) == "delete"
    assert fingerprint(plain_db) == before


async def test_run_on_a_vanished_database_does_not_create_it(
    executor: SqliteExecutor, data_dir: Path
) -> None:
    gone = data_dir / "gone.db"
    with pytest.raises(sqlite3.OperationalError):
        gone_target = Target(executor="sqlite", name=str(gone))
        await executor.run(checkpoint(), gone_target, step_snapshot(gone_target))
    assert not gone.exists()


# -- snapshot and restore --------------------------------------------------------


async def test_snapshot_is_a_consistent_copy_including_wal_only_commits(
    executor: SqliteExecutor, bloated_db: BloatedDb, clock: FixedClock, tmp_path: Path
) -> None:
    expected = fingerprint(bloated_db.path)
    # Prove the rows really are only in the WAL: the main file alone lacks them.
    main_only = tmp_path / "main-only.db"
    shutil.copyfile(bloated_db.path, main_only)
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        fingerprint(main_only)

    snap = await executor.snapshot(bloated_db.target, incident_id=7)

    location = Path(snap.location)
    assert location.parent == tmp_path / "snapshots"
    assert location.name == "incident-7-app-20261124T030000Z.sqlite"
    assert snap.incident_id == 7
    assert snap.target == bloated_db.target
    assert snap.taken_at == clock.now()
    assert snap.size_bytes == file_size(location) > 0
    # One self-contained file: copied alone, it still holds every row.
    alone = tmp_path / "alone.sqlite"
    shutil.copyfile(location, alone)
    assert journal_mode(alone) == "delete"
    assert fingerprint(alone) == expected
    assert sorted(p.name for p in location.parent.iterdir()) == [location.name]


async def test_snapshots_in_the_same_second_do_not_overwrite(
    executor: SqliteExecutor, bloated_db: BloatedDb
) -> None:
    first = await executor.snapshot(bloated_db.target, incident_id=1)
    bloated_db.insert(10)
    second = await executor.snapshot(bloated_db.target, incident_id=1)

    assert first.location != second.location
    assert fingerprint(Path(first.location))[0] == bloated_db.next_id - 10
    assert fingerprint(Path(second.location))[0] == bloated_db.next_id


async def test_restore_brings_back_the_snapshot_content(
    executor: SqliteExecutor, bloated_db: BloatedDb
) -> None:
    expected = fingerprint(bloated_db.path)
    snap = await executor.snapshot(bloated_db.target, incident_id=3)
    holder = bloated_db.holder
    holder.execute("DELETE FROM items WHERE id % 2 = 0")
    holder.execute("UPDATE items SET payload = 'damaged' WHERE id < 100")
    bloated_db.insert(50)
    assert fingerprint(bloated_db.path) != expected

    await executor.restore(snap)

    assert fingerprint(bloated_db.path) == expected
    # Restored through SQLite, so the live database stays in WAL mode and a
    # connection that stayed open throughout sees the restored content too.
    assert journal_mode(bloated_db.path) == "wal"
    assert holder.execute("SELECT count(*) FROM items").fetchone()[0] == expected[0]
    assert holder.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


async def test_restore_from_a_missing_snapshot_fails_clearly(
    executor: SqliteExecutor, bloated_db: BloatedDb, clock: FixedClock, tmp_path: Path
) -> None:
    expected = fingerprint(bloated_db.path)
    missing = tmp_path / "snapshots" / "nope.sqlite"
    snap = Snapshot(
        incident_id=1,
        target=bloated_db.target,
        location=str(missing),
        size_bytes=0,
        taken_at=clock.now(),
    )
    with pytest.raises(FileNotFoundError, match=r"nope\.sqlite"):
        await executor.restore(snap)
    assert fingerprint(bloated_db.path) == expected


async def test_restore_refuses_a_damaged_snapshot(
    executor: SqliteExecutor, bloated_db: BloatedDb
) -> None:
    expected = fingerprint(bloated_db.path)
    snap = await executor.snapshot(bloated_db.target, incident_id=4)
    overwrite(Path(snap.location), b"this is not a database" * 500)

    with pytest.raises((sqlite3.DatabaseError, ValueError)):
        await executor.restore(snap)
    assert fingerprint(bloated_db.path) == expected


# -- checks ---------------------------------------------------------------------


async def test_integrity_ok_on_a_good_database(
    executor: SqliteExecutor, bloated_db: BloatedDb
) -> None:
    result = await executor.check(PlannedCheck(check="integrity_ok"), bloated_db.target)
    assert result.ok, result.detail
    assert result.check == "integrity_ok"


async def test_integrity_ok_fails_on_a_damaged_database(
    executor: SqliteExecutor, data_dir: Path
) -> None:
    # An index whose declared column no longer matches its entries.
    damaged = make_db(
        data_dir / "damaged.db",
        [
            "CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, b TEXT)",
            "CREATE INDEX ia ON t(a)",
            *(f"INSERT INTO t(a, b) VALUES ('a{i}', 'b{i}')" for i in range(20)),
            "PRAGMA writable_schema=ON",
            "UPDATE sqlite_master SET sql = 'CREATE INDEX ia ON t(b)' WHERE name = 'ia'",
        ],
    )
    result = await executor.check(
        PlannedCheck(check="integrity_ok"), Target(executor="sqlite", name=str(damaged))
    )
    assert not result.ok
    assert "missing from index ia" in result.detail


async def test_wal_size_at_most_around_the_threshold(
    executor: SqliteExecutor, bloated_db: BloatedDb
) -> None:
    size = wal_size(bloated_db.path)

    at = await executor.check(
        PlannedCheck(check="wal_size_at_most", params={"bytes": size}), bloated_db.target
    )
    under = await executor.check(
        PlannedCheck(check="wal_size_at_most", params={"bytes": size - 1}), bloated_db.target
    )

    assert at.ok, at.detail
    assert not under.ok
    assert re.fullmatch(r"WAL \d+\.\d MiB > \d+\.\d MiB", under.detail), under.detail


async def test_wal_size_at_most_counts_a_missing_wal_as_empty(
    executor: SqliteExecutor, plain_db: Path
) -> None:
    result = await executor.check(
        PlannedCheck(check="wal_size_at_most", params={"bytes": 1024 * 1024}),
        Target(executor="sqlite", name=str(plain_db)),
    )
    assert result.ok
    assert result.detail == "WAL 0 B <= 1.0 MiB"


async def test_scalar_at_least_passes_and_fails_on_the_value(
    executor: SqliteExecutor, bloated_db: BloatedDb
) -> None:
    rows = bloated_db.next_id
    query = "SELECT count(*) FROM items"

    enough = await executor.check(
        PlannedCheck(check="scalar_at_least", params={"query": query, "value": rows}),
        bloated_db.target,
    )
    too_few = await executor.check(
        PlannedCheck(check="scalar_at_least", params={"query": query, "value": rows + 1}),
        bloated_db.target,
    )

    assert enough.ok, enough.detail
    assert not too_few.ok
    assert f"returned {rows} <" in too_few.detail


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("SELECT payload FROM items LIMIT 1", "not a number"),
        ("SELECT id FROM items WHERE id < 0", "no rows"),
        ("SELECT NULL", "not a number"),
        ("SELECT * FROM no_such_table", "failed: no such table"),
    ],
)
async def test_scalar_at_least_fails_without_a_number(
    executor: SqliteExecutor, bloated_db: BloatedDb, query: str, expected: str
) -> None:
    result = await executor.check(
        PlannedCheck(check="scalar_at_least", params={"query": query, "value": 0}),
        bloated_db.target,
    )
    assert not result.ok
    assert expected in result.detail


async def test_scalar_at_least_cannot_write(
    executor: SqliteExecutor, bloated_db: BloatedDb
) -> None:
    expected = fingerprint(bloated_db.path)
    sneaky = "WITH doomed AS (SELECT 1) DELETE FROM items"

    result = await executor.check(
        PlannedCheck(check="scalar_at_least", params={"query": sneaky, "value": 0}),
        bloated_db.target,
    )

    assert not result.ok
    assert "readonly" in result.detail
    assert fingerprint(bloated_db.path) == expected
    with pytest.raises(ValueError, match="read-only SELECT"):
        await executor.check(
            PlannedCheck(
                check="scalar_at_least", params={"query": "DELETE FROM items", "value": 0}
            ),
            bloated_db.target,
        )
    assert fingerprint(bloated_db.path) == expected


async def test_scalar_at_least_interrupts_a_runaway_query(
    clock: FixedClock, tmp_path: Path, bloated_db: BloatedDb
) -> None:
    quick = SqliteExecutor(tmp_path / "snapshots", clock, query_timeout_s=0.2)
    forever = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT max(x) FROM n"
    result = await quick.check(
        PlannedCheck(check="scalar_at_least", params={"query": forever, "value": 0}),
        bloated_db.target,
    )
    assert not result.ok
    assert "interrupted" in result.detail


# -- benchmarks -----------------------------------------------------------------


async def test_read_latency_is_a_positive_float(
    executor: SqliteExecutor, bloated_db: BloatedDb
) -> None:
    seconds = await executor.measure(
        PlannedBenchmark(benchmark="read_latency", params={"repeat": 3}, tolerance=0.5),
        bloated_db.target,
    )
    assert isinstance(seconds, float)
    assert seconds > 0


async def test_read_latency_quotes_awkward_table_names(
    executor: SqliteExecutor, data_dir: Path
) -> None:
    awkward = make_db(
        data_dir / "awkward.db",
        [
            'CREATE TABLE "we""ird table" (x)',
            'CREATE TABLE "select" (x)',
            "INSERT INTO \"select\" VALUES ('x')",
        ],
    )
    seconds = await executor.measure(
        PlannedBenchmark(benchmark="read_latency", tolerance=0.5),
        Target(executor="sqlite", name=str(awkward)),
    )
    assert seconds > 0


# -- resolve_target --------------------------------------------------------------


@pytest.fixture
def allowlist(data_dir: Path) -> list[str]:
    return [f"{data_dir}/*.db"]


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = (tmp_path / "elsewhere").resolve()
    folder.mkdir()
    return make_db(folder / "secret.db", ["CREATE TABLE t(x)"])


def test_resolve_accepts_a_file_inside_the_allowlist(
    executor: SqliteExecutor, plain_db: Path, allowlist: list[str]
) -> None:
    target = executor.resolve_target(str(plain_db), allowlist)
    assert target == Target(executor="sqlite", name=str(plain_db))


def test_resolve_names_the_realpath(
    executor: SqliteExecutor, plain_db: Path, allowlist: list[str]
) -> None:
    roundabout = f"{plain_db.parent}/./../{plain_db.parent.name}/{plain_db.name}"
    assert executor.resolve_target(roundabout, allowlist).name == str(plain_db)


def test_resolve_accepts_an_allowlisted_dir_behind_a_symlink(
    executor: SqliteExecutor, plain_db: Path, tmp_path: Path
) -> None:
    link = tmp_path / "current"
    link.symlink_to(plain_db.parent, target_is_directory=True)
    target = executor.resolve_target(str(link / plain_db.name), [f"{link}/*.db"])
    assert target.name == str(plain_db)


def test_resolve_does_not_let_star_cross_directories(
    executor: SqliteExecutor, data_dir: Path, allowlist: list[str]
) -> None:
    (data_dir / "nested").mkdir()
    nested = make_db(data_dir / "nested" / "inner.db", ["CREATE TABLE t(x)"])
    with pytest.raises(TargetRefused, match="not in the sqlite allowlist"):
        executor.resolve_target(str(nested), allowlist)


def refused(executor: SqliteExecutor, value: str, allowlist: list[str]) -> str:
    with pytest.raises(TargetRefused) as info:
        executor.resolve_target(value, allowlist)
    message = str(info.value)
    assert repr(value) in message, message
    return message


def test_refuses_a_path_outside_the_allowlist(
    executor: SqliteExecutor, outside: Path, allowlist: list[str]
) -> None:
    assert "not in the sqlite allowlist" in refused(executor, str(outside), allowlist)


def test_refuses_a_relative_path(
    executor: SqliteExecutor, plain_db: Path, allowlist: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(plain_db.parent.parent)  # even when it would resolve inside the allowlist
    relative = f"{plain_db.parent.name}/{plain_db.name}"
    assert "not an absolute path" in refused(executor, relative, allowlist)


def test_a_bare_file_name_is_looked_up_in_the_allowlisted_folders_only(
    executor: SqliteExecutor,
    plain_db: Path,
    allowlist: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the working directory plays no part
    target = executor.resolve_target(plain_db.name, allowlist)
    assert target.name == str(plain_db.resolve())
    (elsewhere / "only-here.db").write_bytes(b"")
    assert "no allowlisted folder holds that file" in refused(executor, "only-here.db", allowlist)


def test_refuses_dotdot_escaping_the_allowlist(
    executor: SqliteExecutor, data_dir: Path, outside: Path, allowlist: list[str]
) -> None:
    escaping = f"{data_dir}/../{outside.parent.name}/{outside.name}"
    assert "not in the sqlite allowlist" in refused(executor, escaping, allowlist)


def test_refuses_a_symlink_in_the_allowed_dir_pointing_outside(
    executor: SqliteExecutor, data_dir: Path, outside: Path, allowlist: list[str]
) -> None:
    link = data_dir / "innocent.db"
    link.symlink_to(outside)
    assert "not in the sqlite allowlist" in refused(executor, str(link), allowlist)


def test_refuses_a_missing_file(
    executor: SqliteExecutor, data_dir: Path, allowlist: list[str]
) -> None:
    assert "does not exist" in refused(executor, str(data_dir / "missing.db"), allowlist)


def test_refuses_a_directory(
    executor: SqliteExecutor, data_dir: Path, allowlist: list[str]
) -> None:
    (data_dir / "folder.db").mkdir()
    message = refused(executor, str(data_dir / "folder.db"), allowlist)
    assert "not a regular file" in message


def test_refuses_a_nul_byte(executor: SqliteExecutor, plain_db: Path, allowlist: list[str]) -> None:
    assert "NUL" in refused(executor, f"{plain_db}\0.db", allowlist)


def test_refuses_everything_with_an_empty_allowlist(
    executor: SqliteExecutor, plain_db: Path
) -> None:
    assert "no sqlite targets are allowlisted" in refused(executor, str(plain_db), [])


# -- validation ------------------------------------------------------------------


@pytest.mark.parametrize(
    "step",
    [
        PlannedStep(action="vacuum_everything", timeout_s=5),
        PlannedStep(action="wal_checkpoint", params={"mode": "SIDEWAYS"}, timeout_s=5),
        PlannedStep(action="wal_checkpoint", params={"mode": 3}, timeout_s=5),
        PlannedStep(action="wal_checkpoint", params={"mood": "FULL"}, timeout_s=5),
        PlannedStep(action="vacuum", params={"into": "/tmp/x.db"}, timeout_s=5),
        PlannedStep(action="recover_lock", params={"kill": True}, timeout_s=5),
    ],
)
async def test_run_rejects_unknown_actions_and_bad_params(
    executor: SqliteExecutor, bloated_db: BloatedDb, step: PlannedStep
) -> None:
    with pytest.raises(ValueError):
        await executor.run(step, bloated_db.target, step_snapshot(bloated_db.target))
    assert wal_size(bloated_db.path) > 0


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("table_exists", {}),
        ("wal_size_at_most", {}),
        ("wal_size_at_most", {"bytes": -1}),
        ("wal_size_at_most", {"bytes": "lots"}),
        ("wal_size_at_most", {"bytes": 1.5}),
        ("integrity_ok", {"deep": True}),
        ("scalar_at_least", {"query": "SELECT 1"}),
        ("scalar_at_least", {"query": "SELECT 1", "value": "ten"}),
        ("scalar_at_least", {"query": 1, "value": 1}),
        ("freelist_ratio_at_most", {}),
        ("freelist_ratio_at_most", {"ratio": 1.5}),
        ("freelist_ratio_at_most", {"ratio": -0.1}),
        ("freelist_ratio_at_most", {"ratio": "ten percent"}),
        ("writable", {"timeout": 1}),
    ],
)
async def test_check_rejects_unknown_checks_and_bad_params(
    executor: SqliteExecutor, bloated_db: BloatedDb, name: str, params: dict[str, Any]
) -> None:
    with pytest.raises(ValueError):
        await executor.check(PlannedCheck(check=name, params=params), bloated_db.target)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("write_latency", {}),
        ("read_latency", {"repeat": 0}),
        ("read_latency", {"repeat": 1001}),
        ("read_latency", {"repeat": "many"}),
        ("read_latency", {"rounds": 5}),
    ],
)
async def test_measure_rejects_unknown_benchmarks_and_bad_params(
    executor: SqliteExecutor, bloated_db: BloatedDb, name: str, params: dict[str, Any]
) -> None:
    with pytest.raises(ValueError):
        await executor.measure(
            PlannedBenchmark(benchmark=name, params=params, tolerance=0.5), bloated_db.target
        )


async def test_refuses_a_target_of_another_executor(
    executor: SqliteExecutor, bloated_db: BloatedDb
) -> None:
    foreign = Target(executor="files", name=str(bloated_db.path))
    with pytest.raises(ValueError, match="not sqlite"):
        await executor.run(checkpoint(), foreign, step_snapshot(foreign))
    with pytest.raises(ValueError, match="not sqlite"):
        await executor.snapshot(foreign, incident_id=1)


# -- who holds a database open ------------------------------------------------------

HOLD_FILE = "exec 3<app.db; echo open; read _"

# Refuses to be inspected by unprivileged processes, as a setuid or hardened
# daemon does (PR_SET_DUMPABLE 0).
UNINSPECTABLE = """
import ctypes, sqlite3, sys
ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("SELECT count(*) FROM items").fetchone()
print("open", flush=True)
sys.stdin.readline()
"""

# Looks for holders without any capability, as GRACE would running unprivileged.
SCAN = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from engine.executors.sqlite.holders import open_holders
holders = open_holders(Path(sys.argv[1]))
print(json.dumps({"pids": [h.pid for h in holders.found], "hidden": holders.hidden,
                  "text": holders.describe()}))
"""


def test_open_holders_names_other_processes_but_not_this_one(bloated_db: BloatedDb) -> None:
    # This process holds it open too (bloated_db.holder): its own connections are no stale lock.
    assert open_holders(bloated_db.path).found == ()
    with reader_in_other_process(bloated_db.path, "items") as reader:
        holders = open_holders(bloated_db.path)
        assert [h.pid for h in holders.found] == [reader.pid]
        assert holders.found[0].command.startswith(f"{sys.executable} -c ")
        assert holders.describe().startswith(f"held open by pid {reader.pid} (")
    assert open_holders(bloated_db.path).describe().startswith("no other process holds it open")


def test_open_holders_counts_the_wal_and_shm_files(wal_db: Path) -> None:
    wal = wal_db.with_name("app.db-wal")
    wal.write_bytes(b"")  # an empty WAL holds nothing, but an open one marks a holder
    with other_process(
        ["bash", "-c", HOLD_FILE.replace("app.db", wal.name)], "open", cwd=wal_db.parent
    ) as holder:
        assert [h.pid for h in open_holders(wal_db).found] == [holder.pid]


def test_open_holders_masks_secrets_in_command_lines(wal_db: Path) -> None:
    args = [
        "bash",
        "-c",
        HOLD_FILE,
        "worker",
        "--password",
        "hunter2",
        "api_token=s3cret",
        "https://bob:pw@db.example/x",
    ]
    with other_process(args, "open", cwd=wal_db.parent) as holder:
        [found] = open_holders(wal_db).found
    assert found.pid == holder.pid
    assert found.command.endswith("worker --password *** api_token=*** https://***@db.example/x")
    for secret in ("hunter2", "s3cret", "bob", ":pw@"):
        assert secret not in found.command


def scan_without_privileges(db: Path) -> dict[str, Any]:
    scan = subprocess.run(
        ["setpriv", "--bounding-set=-all", *python(SCAN, db, ROOT)],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(scan.stdout))


def test_open_holders_counts_processes_it_may_not_inspect(wal_db: Path) -> None:
    # Other processes of the machine are hidden too, and they come and go (a test
    # daemon's workers, say): measure until the count around ours held still.
    for _ in range(20):
        baseline = scan_without_privileges(wal_db)["hidden"]
        with other_process(python(UNINSPECTABLE, wal_db), "open") as hidden:
            # An unprivileged scanner may not read that process's fds: it is counted, not named.
            result = scan_without_privileges(wal_db)
            seen_by_root = [h.pid for h in open_holders(wal_db).found]
        if scan_without_privileges(wal_db)["hidden"] == baseline:
            break
    assert result["pids"] == []
    assert result["hidden"] == baseline + 1
    plural = "" if result["hidden"] == 1 else "es"
    assert result["text"] == (
        f"no other process holds it open ({result['hidden']} process{plural} could not be "
        "inspected: permission denied)"
    )
    assert seen_by_root == [hidden.pid]


def test_open_holders_without_proc_says_so(wal_db: Path, tmp_path: Path) -> None:
    holders = open_holders(wal_db, tmp_path / "no-proc")
    assert holders.found == ()
    assert holders.describe().startswith("which processes hold it open is unknown: ")
    assert "no-proc" in holders.describe()


# -- recover_lock -----------------------------------------------------------------

CRASH_ROWS = 5_000


def recover() -> PlannedStep:
    return PlannedStep(action="recover_lock", timeout_s=5)


def main_file_alone(db: Path, tmp_path: Path) -> tuple[int, str]:
    """The rows the main database file holds by itself, without its -wal."""
    alone = tmp_path / f"alone-{len(list(tmp_path.glob('alone-*')))}.db"
    shutil.copyfile(db, alone)
    return fingerprint(alone)


def inodes(*paths: Path) -> list[int]:
    return [path.stat().st_ino for path in paths]


@pytest.fixture
def reference(tmp_path: Path) -> tuple[int, str]:
    """What CRASH_ROWS committed rows look like: the crashed writer's commits."""
    return fingerprint(fill(tmp_path / "reference.db", CRASH_ROWS, wal=False))


async def test_recover_lock_after_a_crashed_writer_keeps_every_committed_row(
    executor: SqliteExecutor, wal_db: Path, tmp_path: Path, reference: tuple[int, str]
) -> None:
    crash_a_writer(wal_db, CRASH_ROWS)
    wal, shm = wal_db.with_name("app.db-wal"), wal_db.with_name("app.db-shm")
    assert wal.stat().st_size > 0 and shm.exists()
    # The committed rows are only in the WAL: the main file alone has none.
    assert main_file_alone(wal_db, tmp_path)[0] == 0
    target = Target(executor="sqlite", name=str(wal_db))

    result = await executor.run(recover(), target, step_snapshot(target))

    assert result.ok, result.detail
    assert f"{wal_db}: no other process holds it open" in result.detail
    assert "and no process holds its write lock" in result.detail
    frames = re.search(r"replayed (\d+) committed WAL frames into the database file", result.detail)
    assert frames and int(frames[1]) > 0, result.detail
    assert result.detail.endswith("quick_check ok")
    # Every committed row is now in the main file itself; the half-done one is not.
    assert main_file_alone(wal_db, tmp_path) == reference
    assert fingerprint(wal_db) == reference


async def test_recover_lock_keeps_wal_and_shm_files_another_process_has_open(
    executor: SqliteExecutor, wal_db: Path, tmp_path: Path, reference: tuple[int, str]
) -> None:
    wal, shm = wal_db.with_name("app.db-wal"), wal_db.with_name("app.db-shm")
    target = Target(executor="sqlite", name=str(wal_db))
    with other_process(python(IDLE, wal_db), "idle") as sibling:
        crash_a_writer(wal_db, CRASH_ROWS)
        before = inodes(wal, shm)
        assert wal.stat().st_size > 0
        assert main_file_alone(wal_db, tmp_path)[0] == 0

        result = await executor.run(recover(), target, step_snapshot(target))

        assert result.ok, result.detail
        assert f"held open by pid {sibling.pid} (" in result.detail
        assert "no process holds its write lock" in result.detail
        # Checkpointed and reset, never deleted: the sibling's files are the same files.
        assert inodes(wal, shm) == before
        assert wal.stat().st_size == 0
        assert main_file_alone(wal_db, tmp_path) == reference


async def test_recover_lock_waits_for_a_live_writer_and_kills_nothing(
    executor: SqliteExecutor, fragmented_db: Path, tmp_path: Path
) -> None:
    target = Target(executor="sqlite", name=str(fragmented_db))
    before = fingerprint(fragmented_db)
    with live_writer(fragmented_db) as writer:
        wal_inode = inodes(fragmented_db.with_name("app.db-wal"))
        with pytest.raises(TransientError) as locked:
            await executor.run(
                PlannedStep(action="recover_lock", timeout_s=0.3), target, step_snapshot(target)
            )
        message = str(locked.value)
        assert "a live process holds its write lock" in message
        assert f"held open by pid {writer.pid} (" in message
        assert writer.poll() is None, "the writer must still be alive"
        assert fingerprint(fragmented_db) == before
        assert inodes(fragmented_db.with_name("app.db-wal")) == wal_inode

    # The writer committed and exited: now the lock is free and nothing was lost.
    result = await executor.run(recover(), target, step_snapshot(target))
    assert result.ok, result.detail
    assert fingerprint(fragmented_db)[0] == before[0] + 1
    assert main_file_alone(fragmented_db, tmp_path) == fingerprint(fragmented_db)


async def test_recover_lock_blocked_by_a_reader_is_retried_later(
    executor: SqliteExecutor, bloated_db: BloatedDb
) -> None:
    with reader_in_other_process(bloated_db.path, "items") as reader:
        bloated_db.insert(500)  # frames the reader's snapshot keeps in the WAL
        expected = fingerprint(bloated_db.path)
        with pytest.raises(TransientError) as blocked:
            await executor.run(
                PlannedStep(action="recover_lock", timeout_s=0.3),
                bloated_db.target,
                step_snapshot(bloated_db.target),
            )
    message = str(blocked.value)
    assert "readers blocked the WAL checkpoint" in message
    assert re.search(r"[1-9]\d* of \d+ frames remain uncheckpointed", message), message
    assert f"held open by pid {reader.pid} (" in message
    assert fingerprint(bloated_db.path) == expected


async def test_recover_lock_on_a_rollback_journal_database(
    executor: SqliteExecutor, plain_db: Path
) -> None:
    before = fingerprint(plain_db)
    target = Target(executor="sqlite", name=str(plain_db))
    result = await executor.run(recover(), target, step_snapshot(target))
    assert result.ok, result.detail
    assert "'delete' journal mode, so no WAL to replay" in result.detail
    assert fingerprint(plain_db) == before


async def test_recover_lock_fails_on_a_damaged_database(
    executor: SqliteExecutor, data_dir: Path
) -> None:
    # A NULL where the schema now says NOT NULL: quick_check reports it.
    broken = make_db(
        data_dir / "broken.db",
        [
            "CREATE TABLE t(a)",
            "INSERT INTO t VALUES (NULL)",
            "PRAGMA writable_schema=ON",
            "UPDATE sqlite_master SET sql = 'CREATE TABLE t(a NOT NULL)' WHERE name = 't'",
        ],
    )
    garbage = data_dir / "garbage.db"
    overwrite(garbage, b"this is not a database" * 500)
    damaged = Target(executor="sqlite", name=str(broken))
    not_a_db = Target(executor="sqlite", name=str(garbage))

    result = await executor.run(recover(), damaged, step_snapshot(damaged))
    unreadable = await executor.run(recover(), not_a_db, step_snapshot(not_a_db))

    assert not result.ok
    assert result.detail.startswith(f"{broken}: ")
    assert result.detail.endswith("; quick_check found problems: NULL value in t.a")
    assert not unreadable.ok
    assert unreadable.detail.startswith(f"recover_lock of {garbage} failed: file is not a database")


# -- vacuum ---------------------------------------------------------------------

MIB = 1024 * 1024


def vacuum(timeout_s: float = 60) -> PlannedStep:
    return PlannedStep(action="vacuum", timeout_s=timeout_s)


def test_vacuum_space_needs_twice_the_database_and_its_wal() -> None:
    assert vacuum_space_problem(3 * MIB, 1 * MIB, 8 * MIB) is None
    assert vacuum_space_problem(0, 0, 0) is None
    problem = vacuum_space_problem(3 * MIB, 1 * MIB, 8 * MIB - 1)
    assert problem == (
        "it needs about 8.0 MiB free (twice the database's 3.0 MiB plus its WAL's 1.0 MiB), "
        "but only 8.0 MiB is free"
    )
    assert vacuum_space_problem(10 * MIB, 0, 19 * MIB) is not None


async def test_vacuum_reclaims_free_pages_and_keeps_every_row(
    executor: SqliteExecutor, fragmented_db: Path
) -> None:
    target = Target(executor="sqlite", name=str(fragmented_db))
    before = fingerprint(fragmented_db)
    size_before = file_size(fragmented_db)
    _, free_before = page_counts(fragmented_db)
    snapshot = await executor.snapshot(target, incident_id=5)

    result = await executor.run(vacuum(), target, snapshot)

    assert result.ok, result.detail
    assert f"VACUUM of {fragmented_db} reclaimed {free_before} freelist pages" in result.detail
    assert re.search(r"file \d+\.\d MiB -> \d+\.\d KiB, WAL 0 B -> 0 B$", result.detail), (
        result.detail
    )
    assert file_size(fragmented_db) < size_before / 2
    assert page_counts(fragmented_db)[1] == 0
    assert fingerprint(fragmented_db) == before == (FRAGMENTED_ROWS // 3, before[1])
    assert wal_size(fragmented_db) == 0
    # The backup the vacuum insisted on still holds every row.
    assert fingerprint(Path(snapshot.location)) == before


async def test_vacuum_refuses_without_a_usable_backup(
    executor: SqliteExecutor, fragmented_db: Path, plain_db: Path, data_dir: Path
) -> None:
    target = Target(executor="sqlite", name=str(fragmented_db))
    plain = Target(executor="sqlite", name=str(plain_db))
    damaged = await executor.snapshot(target, incident_id=1)
    overwrite(Path(damaged.location), b"this is not a database" * 500)
    unrelated = make_db(data_dir / "unrelated.db", ["CREATE TABLE users(name TEXT)"])
    of_unrelated = await executor.snapshot(Target(executor="sqlite", name=str(unrelated)), 1)
    cases = {
        "without a snapshot file": step_snapshot(target),
        "cannot be read as a database": damaged,
        "is of " + str(plain_db): await executor.snapshot(plain, incident_id=1),
        "does not hold this database's tables": of_unrelated.model_copy(update={"target": target}),
        "does not exist": step_snapshot(target, location=str(plain_db) + ".gone"),
    }
    size, pages = file_size(fragmented_db), page_counts(fragmented_db)
    for reason, snapshot in cases.items():
        result = await executor.run(vacuum(), target, snapshot)
        assert not result.ok
        assert result.detail.startswith(f"refused: VACUUM of {fragmented_db} needs a verified")
        assert reason in result.detail, result.detail
    assert (file_size(fragmented_db), page_counts(fragmented_db)) == (size, pages)


async def test_vacuum_that_runs_out_of_time_is_rolled_back(
    executor: SqliteExecutor, fragmented_db: Path
) -> None:
    target = Target(executor="sqlite", name=str(fragmented_db))
    snapshot = await executor.snapshot(target, incident_id=1)
    before = (fingerprint(fragmented_db), page_counts(fragmented_db), file_size(fragmented_db))

    result = await executor.run(vacuum(timeout_s=0.0001), target, snapshot)

    assert not result.ok
    assert result.detail == (
        f"VACUUM of {fragmented_db} did not finish within 0.0001 s and was rolled back: "
        "nothing changed"
    )
    assert (fingerprint(fragmented_db), page_counts(fragmented_db), file_size(fragmented_db)) == (
        before
    )


async def test_vacuum_blocked_by_a_live_writer_is_retried_later(
    executor: SqliteExecutor, fragmented_db: Path
) -> None:
    target = Target(executor="sqlite", name=str(fragmented_db))
    snapshot = await executor.snapshot(target, incident_id=1)
    pages = page_counts(fragmented_db)
    with live_writer(fragmented_db) as writer:
        with pytest.raises(TransientError) as locked:
            await executor.run(vacuum(timeout_s=0.3), target, snapshot)
        assert f"VACUUM of {fragmented_db} failed: database is locked" in str(locked.value)
        assert f"pid {writer.pid}" in str(locked.value)
    assert page_counts(fragmented_db)[1] == pages[1]


# -- fragmentation and lock checks -------------------------------------------------


def freelist_at_most(ratio: float) -> PlannedCheck:
    return PlannedCheck(check="freelist_ratio_at_most", params={"ratio": ratio})


async def test_freelist_ratio_around_the_threshold(
    executor: SqliteExecutor, fragmented_db: Path
) -> None:
    target = Target(executor="sqlite", name=str(fragmented_db))
    pages, free = page_counts(fragmented_db)
    share = free / pages

    at = await executor.check(freelist_at_most(share), target)
    under = await executor.check(freelist_at_most(share - 0.001), target)

    assert at.ok, at.detail
    assert not under.ok
    assert under.detail == f"freelist {free} of {pages} pages ({share:.1%}) > {share - 0.001:.1%}"


async def test_freelist_ratio_of_a_compact_database(
    executor: SqliteExecutor, plain_db: Path
) -> None:
    result = await executor.check(
        freelist_at_most(0), Target(executor="sqlite", name=str(plain_db))
    )
    assert result.ok, result.detail
    assert result.detail.startswith("freelist 0 of ")


async def test_writable_fails_while_a_live_writer_holds_the_lock(
    clock: FixedClock, tmp_path: Path, wal_db: Path
) -> None:
    quick = SqliteExecutor(tmp_path / "snapshots", clock, busy_timeout_s=0.2)
    target = Target(executor="sqlite", name=str(wal_db))
    with live_writer(wal_db) as writer:
        held = await quick.check(PlannedCheck(check="writable"), target)
    free = await quick.check(PlannedCheck(check="writable"), target)

    assert not held.ok
    assert "not writable: BEGIN IMMEDIATE failed within 0.2 s: database is locked" in held.detail
    assert f"held open by pid {writer.pid} (" in held.detail
    assert free.ok, free.detail
    assert free.detail == f"{wal_db} is writable: BEGIN IMMEDIATE took its write lock and let it go"


# -- built-in patterns and playbooks, from a realistic alert to a verified heal ---------

NOW = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return builtin_catalog(tmp_path, "sqlite")


def alertmanager(labels: dict[str, str], annotations: dict[str, str]) -> Alert:
    body = {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{labels["alertname"]}"}}',
        "status": "firing",
        "receiver": "grace",
        "groupLabels": {"alertname": labels["alertname"]},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "http://alertmanager.example:9093",
        "truncatedAlerts": 0,
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": annotations,
                "startsAt": "2026-11-24T02:58:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.example:9090/graph?g0.expr=up",
                "fingerprint": "3f2a9c1d5e6b7a80",
            }
        ],
    }
    [alert] = parse_alertmanager(json.dumps(body).encode(), received_at=NOW)
    return alert


def slack_text(text: str) -> Alert:
    event = {
        "type": "message",
        "channel": "C0ALERTS",
        "user": "U0ONCALL",
        "ts": "1.1",
        "text": text,
    }
    alert = parse_slack_message(event, channel="C0ALERTS", received_at=NOW)
    assert alert is not None
    return alert


def sentry_relay(db: Path) -> Alert:
    """A Sentry issue forwarded to the generic webhook, its db_path tag as a label."""
    body = {
        "id": "sentry-4509",
        "name": "OperationalError: database is locked",
        "severity": "error",
        "labels": {"db_path": str(db), "environment": "production", "project": "orders"},
        "text": (
            "sqlite3.OperationalError: database is locked\n"
            '  File "orders/store.py", line 88, in save_order'
        ),
        "link": "https://acme.sentry.io/issues/4509/",
    }
    [alert] = parse_generic(json.dumps(body).encode(), received_at=NOW)
    return alert


def locked_alerts(db: Path) -> dict[str, Alert]:
    return {
        "alertmanager rule": alertmanager(
            {"alertname": "SQLiteDatabaseLocked", "db_path": str(db), "severity": "critical"},
            {"summary": f"Writes to {db} keep failing"},
        ),
        "alertmanager log alert": alertmanager(
            {"alertname": "OrdersErrorLogs", "db_path": str(db), "job": "orders"},
            {
                "summary": "orders logged 37 errors in 5 minutes",
                "description": "sqlite3.OperationalError: database is locked",
            },
        ),
        "slack text": slack_text(f"[FIRING:1] SQLiteDatabaseLocked db_path={db} severity=critical"),
        "sentry relay": sentry_relay(db),
    }


def fragmented_alerts(db: Path) -> dict[str, Alert]:
    return {
        "alertmanager rule": alertmanager(
            {"alertname": "SQLiteFreelistHigh", "db_path": str(db), "severity": "warning"},
            {"summary": f"62% of {db.name} is free pages"},
        ),
        "slack text": slack_text(f"[FIRING:1] SQLiteFreelistHigh db_path={db}"),
    }


@dataclass
class Healed:
    plan: Plan
    snapshots: list[Snapshot]
    steps: list[StepResult]
    checks: list[CheckResult]
    benchmarks: list[BenchmarkResult]


async def heal(catalog: Catalog, executor: SqliteExecutor, alert: Alert, data_dir: Path) -> Healed:
    """What the engine does once a plan is approved: a snapshot before each
    step, the steps, then the checks and benchmarks."""
    diagnosis = catalog.diagnose(alert)
    assert diagnosis is not None, alert
    playbook = catalog.playbook_for(diagnosis.problem)
    assert playbook is not None
    plan = make_plan(playbook, alert, executor, [f"{data_dir}/*.db"])
    before = [await executor.measure(b, plan.target) for b in plan.benchmarks]
    snapshots, steps = [], []
    for step in plan.steps:
        snapshots.append(await executor.snapshot(plan.target, incident_id=9))
        steps.append(await executor.run(step, plan.target, snapshots[-1]))
    checks = [await executor.check(c, plan.target) for c in plan.checks]
    after = [await executor.measure(b, plan.target) for b in plan.benchmarks]
    benchmarks = [
        BenchmarkResult(benchmark=b.benchmark, before_s=s, after_s=a, tolerance=b.tolerance)
        for b, s, a in zip(plan.benchmarks, before, after, strict=True)
    ]
    return Healed(plan, snapshots, steps, checks, benchmarks)


@pytest.mark.parametrize(
    "source", ["alertmanager rule", "alertmanager log alert", "slack text", "sentry relay"]
)
def test_realistic_locked_alerts_are_diagnosed(catalog: Catalog, wal_db: Path, source: str) -> None:
    alert = locked_alerts(wal_db)[source]
    diagnosis = catalog.diagnose(alert)
    assert diagnosis is not None and diagnosis.problem == "sqlite_database_locked"
    assert str(wal_db) in diagnosis.explanation
    playbook = catalog.playbook_for(diagnosis.problem)
    assert playbook is not None and playbook.id == "sqlite-recover-lock" and playbook.tier == 2


@pytest.mark.parametrize("source", ["alertmanager rule", "slack text"])
def test_realistic_fragmentation_alerts_are_diagnosed(
    catalog: Catalog, wal_db: Path, source: str
) -> None:
    diagnosis = catalog.diagnose(fragmented_alerts(wal_db)[source])
    assert diagnosis is not None and diagnosis.problem == "sqlite_fragmented"
    playbook = catalog.playbook_for(diagnosis.problem)
    assert playbook is not None and playbook.id == "sqlite-vacuum" and playbook.tier == 2


def test_the_wal_alert_still_gets_the_checkpoint_playbook(catalog: Catalog, wal_db: Path) -> None:
    diagnosis = catalog.diagnose(slack_text(f"[FIRING:1] SQLiteWALTooLarge db_path={wal_db}"))
    assert diagnosis is not None
    playbook = catalog.playbook_for(diagnosis.problem)
    assert playbook is not None and playbook.id == "sqlite-wal-checkpoint"


def test_a_locked_error_naming_no_database_says_where_it_looked(catalog: Catalog) -> None:
    alert = alertmanager(
        {"alertname": "OrdersErrorLogs", "job": "orders"},
        {"description": "sqlite3.OperationalError: database is locked"},
    )
    diagnosis = catalog.diagnose(alert)
    assert diagnosis is not None and diagnosis.problem == "sqlite_database_locked"
    assert diagnosis.facts == {} and diagnosis.looked_for["db_path"][-1] == "the alert's text"


def test_a_locked_alert_naming_a_database_outside_the_allowlist_is_refused(
    catalog: Catalog, executor: SqliteExecutor, data_dir: Path, tmp_path: Path
) -> None:
    outside = fill(tmp_path / "secret.db", 1, wal=False)
    alert = sentry_relay(outside)
    diagnosis = catalog.diagnose(alert)
    assert diagnosis is not None
    playbook = catalog.playbook_for(diagnosis.problem)
    assert playbook is not None
    with pytest.raises(TargetRefused, match="not in the sqlite allowlist"):
        make_plan(playbook, alert, executor, [f"{data_dir}/*.db"])


@pytest.mark.parametrize("source", ["alertmanager rule", "sentry relay"])
async def test_a_locked_database_heals_from_the_alert_without_losing_a_row(
    catalog: Catalog,
    executor: SqliteExecutor,
    wal_db: Path,
    data_dir: Path,
    tmp_path: Path,
    reference: tuple[int, str],
    source: str,
) -> None:
    crash_a_writer(wal_db, CRASH_ROWS)

    healed = await heal(catalog, executor, locked_alerts(wal_db)[source], data_dir)

    assert healed.plan.playbook_id == "sqlite-recover-lock"
    assert healed.plan.target == Target(executor="sqlite", name=str(wal_db))
    assert [s.action for s in healed.steps] == ["recover_lock"]
    assert all(s.ok for s in healed.steps), healed.steps
    assert [c.check for c in healed.checks] == ["writable", "integrity_ok"]
    assert all(c.ok for c in healed.checks), healed.checks
    assert main_file_alone(wal_db, tmp_path) == reference
    # The snapshot taken before the step holds every committed row as well.
    assert fingerprint(Path(healed.snapshots[0].location)) == reference


async def test_a_fragmented_database_heals_from_the_alert(
    catalog: Catalog, executor: SqliteExecutor, fragmented_db: Path, data_dir: Path
) -> None:
    before = fingerprint(fragmented_db)
    size_before = file_size(fragmented_db)
    alert = fragmented_alerts(fragmented_db)["alertmanager rule"]

    healed = await heal(catalog, executor, alert, data_dir)

    assert healed.plan.playbook_id == "sqlite-vacuum"
    assert [s.action for s in healed.steps] == ["vacuum"]
    assert all(s.ok for s in healed.steps), healed.steps
    assert [c.check for c in healed.checks] == ["freelist_ratio_at_most", "integrity_ok"]
    assert all(c.ok for c in healed.checks), healed.checks
    assert [b.benchmark for b in healed.benchmarks] == ["read_latency"]
    assert all(b.ok for b in healed.benchmarks), healed.benchmarks
    assert file_size(fragmented_db) < size_before / 2
    assert fingerprint(fragmented_db) == before
    assert fingerprint(Path(healed.snapshots[0].location)) == before
