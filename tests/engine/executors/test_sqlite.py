"""The sqlite executor against real database files, a real second process and
real symlinks: no mocks, so a broken operation fails here."""

from __future__ import annotations

import contextlib
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.executors.sqlite import SqliteExecutor
from engine.models import PlannedBenchmark, PlannedCheck, PlannedStep, Snapshot, Target
from engine.ports import Executor, TargetRefused
from tests.engine.executors.conftest import (
    BloatedDb,
    FixedClock,
    fingerprint,
    step_snapshot,
    wal_size,
)

READER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN")
conn.execute("SELECT count(*) FROM items").fetchone()
print("reading", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
conn.close()
"""


@contextlib.contextmanager
def reader_in_other_process(db: Path) -> Iterator[None]:
    """Another process holding an open read transaction on `db` until exit.

    It says "reading" once its snapshot is taken; that line, not a sleep, is
    what the test waits for.
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", READER, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "reading"
        yield
    finally:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write("\n")
            proc.stdin.close()
        assert proc.wait(timeout=30) == 0


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
    assert set(port.spec.actions) == {"wal_checkpoint"}
    assert set(port.spec.checks) == {"wal_size_at_most", "integrity_ok", "scalar_at_least"}
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


async def test_checkpoint_blocked_by_a_reader_in_another_process_is_not_success(
    executor: SqliteExecutor, bloated_db: BloatedDb
) -> None:
    with reader_in_other_process(bloated_db.path):
        # Commits after the reader's snapshot: frames it still needs the WAL for.
        bloated_db.insert(500)
        expected = fingerprint(bloated_db.path)
        result = await executor.run(
            checkpoint("TRUNCATE", timeout_s=0.3),
            bloated_db.target,
            step_snapshot(bloated_db.target),
        )

        assert not result.ok
        assert "busy" in result.detail
        assert "readers or writers" in result.detail
        assert "failed" in result.detail
        assert "succeeded" not in result.detail
        match = re.search(r"(\d+) of (\d+) frames remain", result.detail)
        assert match, result.detail
        assert 0 < int(match[1]) <= int(match[2])
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
    with reader_in_other_process(bloated_db.path):
        bloated_db.insert(500)
        result = await executor.run(
            checkpoint("PASSIVE"), bloated_db.target, step_snapshot(bloated_db.target)
        )

    assert not result.ok
    assert "succeeded" not in result.detail
    assert re.search(r"[1-9]\d* remain", result.detail), result.detail


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
    monkeypatch.chdir(plain_db.parent)  # even when it would resolve inside the allowlist
    assert "not an absolute path" in refused(executor, plain_db.name, allowlist)


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
