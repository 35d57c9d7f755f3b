"""The files executor against real trees: real bytecode, real logs, real
symlinks, another file system (/dev/shm), a real mount point that is busy and
an immutable directory. No mocks, so a broken operation fails here."""

from __future__ import annotations

import compileall
import contextlib
import gzip
import hashlib
import json
import os
import py_compile
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from engine.catalog import Catalog, load_catalog
from engine.executors.files import FilesExecutor
from engine.executors.files.quarantine import Manifest, RestoreError
from engine.executors.plugin import specs
from engine.intake.alertmanager import parse_alertmanager
from engine.models import (
    Alert,
    PlannedBenchmark,
    PlannedCheck,
    PlannedStep,
    Snapshot,
    StepResult,
    Target,
)
from engine.planning import make_plan
from engine.ports import Executor, TargetRefused, TransientError
from tests.engine.executors.conftest import FixedClock, builtin_catalog, step_snapshot

MIB = 1024 * 1024
DAY = 86400
NOBODY = 65534
OLD_SOURCE = 'FLAVOUR = "old"\n'
NEW_SOURCE = 'FLAVOUR = "new"\n'


# -- fixtures and helpers ---------------------------------------------------------


@pytest.fixture
def executor(tmp_path: Path, clock: FixedClock) -> FilesExecutor:
    return FilesExecutor(tmp_path / "grace", clock)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    # realpath, so Target names compare equal even when tmp itself is a symlink
    folder = (tmp_path / "srv").resolve()
    folder.mkdir()
    return folder


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A tree outside every allowlisted root that symlinks under the root point into."""
    folder = (tmp_path / "outside").resolve()
    (folder / "__pycache__").mkdir(parents=True)
    (folder / "__pycache__" / "secret.cpython-311.pyc").write_bytes(b"not yours")
    (folder / "big.log").write_bytes(log_lines(2 * MIB))
    (folder / "other.log").write_bytes(b"someone else's log\n")
    return folder


@pytest.fixture
def other_fs(tmp_path: Path) -> Iterator[Path]:
    """A folder on another file system than the tree, so moves must copy."""
    folder = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="grace-test-"))
    try:
        assert os.stat(folder).st_dev != os.stat(tmp_path).st_dev
        yield folder
    finally:
        shutil.rmtree(folder)


def target_of(path: Path) -> Target:
    return Target(executor="files", name=str(path))


def log_lines(size: int) -> bytes:
    out = bytearray()
    i = 0
    while len(out) < size:
        out += f"2026-11-24T02:{i % 60:02d}:00Z INFO GET /api/orders/{i} 200 12ms\n".encode()
        i += 1
    return bytes(out[:size])


def tree_state(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every path under root, links not followed: type, mode, owner, content
    hash and mtime for files, the target for links."""
    state: dict[str, tuple[Any, ...]] = {}
    for directory, dirnames, filenames in os.walk(root, followlinks=False):
        for name in [*dirnames, *filenames]:
            path = Path(directory) / name
            st = os.lstat(path)
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                state[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                state[rel] = ("dir", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                owner = (st.st_uid, st.st_gid)
                state[rel] = ("file", stat.S_IMODE(st.st_mode), owner, st.st_mtime_ns, digest)
    return state


def make_app(root: Path) -> Path:
    """A Python app with real bytecode in three `__pycache__` directories."""
    app = root / "app"
    sources = {
        "manage.py": "import shop\n",
        "shop/__init__.py": "",
        "shop/models.py": "class Order:\n    total = 0\n",
        "shop/settings.py": OLD_SOURCE,
        "shop/api/__init__.py": "",
        "shop/api/views.py": "from shop.models import Order\n",
    }
    for rel, text in sources.items():
        (app / rel).parent.mkdir(parents=True, exist_ok=True)
        (app / rel).write_text(text)
    compile_app(app)
    os.chmod(next((app / "shop" / "__pycache__").glob("models.*.pyc")), 0o600)
    return app


def compile_app(app: Path) -> None:
    """What importing does: real bytecode in `__pycache__` beside each source."""
    assert compileall.compile_dir(
        str(app), quiet=1, invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP
    )


def set_age(path: Path, now: float, seconds: float) -> None:
    os.utime(path, (now - seconds, now - seconds), follow_symlinks=False)


def make_logs(logs: Path, now: float) -> dict[str, bytes]:
    """A log directory as a busy service leaves it; returns the original contents."""
    contents = {
        "app.log": log_lines(3 * MIB),
        "app.log.1.gz": gzip.compress(b"yesterday\n"),
        "app.log.2.gz": gzip.compress(b"two days ago\n"),
        "app.log.3.gz": gzip.compress(b"three days ago\n"),
        "app.log.4": b"four days ago, never compressed\n",
        "worker.log": b"small\n",
        "worker.log.2.gz": gzip.compress(b"a month ago\n"),
        "worker.log.9.gz": gzip.compress(b"far beyond keep\n"),
        "idle.log": b"",
        "notes.txt": log_lines(2 * MIB),
        "nested/db.log": log_lines(2 * MIB),
    }
    ages = {"app.log.1.gz": 1, "app.log.2.gz": 2, "app.log.3.gz": 3, "app.log.4": 4}
    ages |= {"worker.log.2.gz": 30, "worker.log.9.gz": 1}
    for rel, data in contents.items():
        path = logs / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        set_age(path, now, ages.get(rel, 0.1) * DAY)
    os.chmod(logs / "app.log", 0o640)
    os.chown(logs / "app.log", NOBODY, NOBODY)
    return contents


def rotate(keep: int = 3, compress: bool = True, **more: Any) -> PlannedStep:
    params = {"keep": keep, "max_age_days": 14.0, "compress": compress, "min_bytes": MIB}
    return PlannedStep(action="rotate_logs", params=params | more, timeout_s=60)


CLEAR = PlannedStep(action="clear_pycache", params={}, timeout_s=60)


async def run_step(
    executor: FilesExecutor, path: Path, step: PlannedStep
) -> tuple[StepResult, Snapshot]:
    snapshot = await executor.snapshot(target_of(path), incident_id=7)
    return await executor.run(step, target_of(path), snapshot), snapshot


async def check(executor: FilesExecutor, path: Path, name: str, **params: Any) -> tuple[bool, str]:
    result = await executor.check(PlannedCheck(check=name, params=params), target_of(path))
    return result.ok, result.detail


def manifest_of(snapshot: Snapshot) -> Manifest:
    return Manifest.model_validate_json((Path(snapshot.location) / "manifest.json").read_bytes())


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[None]:
    """chattr +i: even root cannot rename entries out of it."""
    subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@contextlib.contextmanager
def mounted_over(path: Path) -> Iterator[None]:
    """A tmpfs mounted on the directory: renaming a mount point fails with EBUSY."""
    subprocess.run(["mount", "-t", "tmpfs", "grace-test", str(path)], check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def exists(path: Path) -> bool:
    return os.path.lexists(path)


def appending(path: Path) -> BinaryIO:
    """A writer holding its log open, as a service does between reopens."""
    return open(path, "ab")


def python_in(app: Path, code: str) -> subprocess.CompletedProcess[str]:
    """The app's own interpreter run, not writing bytecode, so checks stay meaningful."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=app, env=env, capture_output=True, text=True, timeout=60
    )


# -- the port ---------------------------------------------------------------------


def test_satisfies_the_executor_port(executor: FilesExecutor) -> None:
    port: Executor = executor
    assert port.name == "files"
    assert set(port.spec.actions) == {"clear_pycache", "rotate_logs"}
    assert set(port.spec.checks) == {
        "no_pycache",
        "dir_size_at_most",
        "disk_free_at_least",
        "logs_at_most",
    }
    assert set(port.spec.benchmarks) == {"walk_latency"}


@pytest.mark.parametrize("pattern", ["", "logs/*.log", "a\0b"])
def test_a_pattern_must_be_a_file_name_glob(pattern: str) -> None:
    model = FilesExecutor.spec.actions["rotate_logs"]
    with pytest.raises(ValueError, match="file-name glob"):
        model.model_validate({"keep": 1, "max_age_days": 1.0, "pattern": pattern})


async def test_available(executor: FilesExecutor) -> None:
    assert (await executor.available()).ok


async def test_unavailable_when_the_quarantine_cannot_be_made(
    tmp_path: Path, clock: FixedClock
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    availability = await FilesExecutor(blocker / "grace", clock).available()
    assert not availability.ok
    assert "quarantine folder" in availability.reason and str(blocker) in availability.reason


# -- targets ----------------------------------------------------------------------


def test_a_directory_under_a_root_resolves_to_its_realpath(
    executor: FilesExecutor, root: Path
) -> None:
    (root / "log" / "app" / "nginx").mkdir(parents=True)
    (root / "current").symlink_to(root / "log" / "app")
    allow = [str(root / "log" / "app")]
    assert executor.resolve_target(str(root / "log" / "app"), allow).name == str(
        root / "log" / "app"
    )
    assert executor.resolve_target(str(root / "current" / "nginx"), allow) == target_of(
        root / "log" / "app" / "nginx"
    )


def test_a_sibling_with_the_same_prefix_is_not_under_the_root(
    executor: FilesExecutor, root: Path
) -> None:
    (root / "log" / "app").mkdir(parents=True)
    (root / "log" / "app2").mkdir()
    with pytest.raises(TargetRefused, match="not under any allowlisted root"):
        executor.resolve_target(str(root / "log" / "app2"), [str(root / "log" / "app")])


def test_roots_may_hold_glob_segments(executor: FilesExecutor, root: Path) -> None:
    for rel in ("srv/shop/logs/nginx", "srv/shop/data", "srv/shop/logs2"):
        (root / rel).mkdir(parents=True)
    allow = [f"{root}/srv/*/logs"]
    resolved = executor.resolve_target(str(root / "srv/shop/logs/nginx"), allow)
    assert resolved == target_of(root / "srv/shop/logs/nginx")
    for refused in ("srv/shop/data", "srv/shop/logs2"):
        with pytest.raises(TargetRefused, match="not under any allowlisted root"):
            executor.resolve_target(str(root / refused), allow)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("relative/logs", "not an absolute path"),
        ("{root}/logs\0/etc", "NUL byte"),
        ("{root}/a-file", "not a directory"),
        ("{root}/missing", "does not exist"),
        ("{root}/escape", "not under any allowlisted root"),
        ("{root}/escape/__pycache__", "not under any allowlisted root"),
    ],
)
def test_untrusted_labels_are_refused(
    executor: FilesExecutor, root: Path, outside: Path, value: str, message: str
) -> None:
    (root / "a-file").write_text("")
    (root / "escape").symlink_to(outside)
    with pytest.raises(TargetRefused, match=message) as refused:
        executor.resolve_target(value.format(root=root), [str(root)])
    assert "files target" in str(refused.value)


def test_nothing_is_allowed_without_an_allowlist(executor: FilesExecutor, root: Path) -> None:
    with pytest.raises(TargetRefused, match="no directories are allowlisted"):
        executor.resolve_target(str(root), [])


def test_a_tree_holding_the_quarantine_is_refused(root: Path, clock: FixedClock) -> None:
    executor = FilesExecutor(root / "var" / "grace", clock)
    (root / "var" / "grace" / "quarantine").mkdir(parents=True)
    for value in (root, root / "var" / "grace" / "quarantine"):
        with pytest.raises(TargetRefused, match="overlaps GRACE's quarantine"):
            executor.resolve_target(str(value), [str(root)])


# -- snapshots --------------------------------------------------------------------


async def test_each_step_gets_its_own_private_quarantine_folder(
    executor: FilesExecutor, root: Path, tmp_path: Path
) -> None:
    first = await executor.snapshot(target_of(root), incident_id=7)
    second = await executor.snapshot(target_of(root), incident_id=7)
    assert first.location != second.location
    for snapshot in (first, second):
        folder = Path(snapshot.location)
        assert folder.parent == (tmp_path / "grace" / "quarantine").resolve()
        assert folder.name.startswith("incident-7-20261124T030000Z")
        assert mode_of(folder) == 0o700
        manifest = manifest_of(snapshot)
        assert (manifest.incident_id, manifest.target, manifest.changes) == (7, str(root), [])
    quarantine = (tmp_path / "grace" / "quarantine").resolve()
    assert str(quarantine) in executor.describe_snapshot(target_of(root))


async def test_a_step_needs_its_own_quarantine_folder(executor: FilesExecutor, root: Path) -> None:
    with pytest.raises(ValueError, match=r"is not \(or no longer\) a quarantine folder"):
        await executor.run(CLEAR, target_of(root), step_snapshot(target_of(root)))


# -- clear_pycache ----------------------------------------------------------------


async def test_clear_pycache_moves_every_cache_and_rollback_restores_it(
    executor: FilesExecutor, root: Path
) -> None:
    app = make_app(root)
    before = tree_state(root)
    ok, detail = await check(executor, app, "no_pycache")
    assert not ok and "3 __pycache__ left" in detail

    result, snapshot = await run_step(executor, app, CLEAR)

    assert result.ok, result.detail
    assert "moved 3 __pycache__ directories" in result.detail and snapshot.location in result.detail
    assert not list(app.rglob("__pycache__"))
    assert [p for p in tree_state(root) if p.endswith(".py")] == [
        p for p in before if p.endswith(".py")
    ]
    kept = sorted(p.name for p in (Path(snapshot.location) / "items").iterdir())
    assert len(kept) == 3 and all(name.endswith("-__pycache__") for name in kept)
    assert await check(executor, app, "no_pycache") == (
        True,
        f"no __pycache__ directory under {app}",
    )

    await executor.restore(snapshot)

    assert tree_state(root) == before


async def test_clearing_a_tree_without_caches_changes_nothing(
    executor: FilesExecutor, root: Path
) -> None:
    result, snapshot = await run_step(executor, root, CLEAR)
    assert result.ok and result.detail == f"nothing to clear: no __pycache__ directory under {root}"
    assert manifest_of(snapshot).changes == []


async def test_symlinks_out_of_the_root_are_neither_followed_nor_moved(
    executor: FilesExecutor, root: Path, outside: Path
) -> None:
    app = make_app(root)
    (app / "vendor").mkdir()
    (app / "vendor" / "__pycache__").symlink_to(outside / "__pycache__")
    (app / "linked").symlink_to(outside)
    outside_before = tree_state(outside)

    result, _ = await run_step(executor, app, CLEAR)

    assert result.ok, result.detail
    assert "moved 3 __pycache__" in result.detail
    assert f"left alone: vendor/__pycache__ (a symlink to {outside / '__pycache__'})" in (
        result.detail
    )
    assert (app / "vendor" / "__pycache__").is_symlink() and (app / "linked").is_symlink()
    assert tree_state(outside) == outside_before
    ok, detail = await check(executor, app, "no_pycache")
    assert ok and "left alone: vendor/__pycache__" in detail


async def test_a_busy_directory_is_transient_and_a_retry_finishes_the_step(
    executor: FilesExecutor, root: Path
) -> None:
    app = make_app(root)
    before = tree_state(root)
    snapshot = await executor.snapshot(target_of(app), incident_id=7)
    with mounted_over(app / "shop" / "__pycache__"), pytest.raises(TransientError, match="busy"):
        await executor.run(CLEAR, target_of(app), snapshot)
    # Only the move that happened is recorded, not the one that failed.
    assert [c.path for c in manifest_of(snapshot).changes] == [str(app / "__pycache__")]

    retried = await executor.run(CLEAR, target_of(app), snapshot)

    assert retried.ok and "moved 2 __pycache__ directories" in retried.detail
    await executor.restore(snapshot)
    assert tree_state(root) == before


async def test_a_permission_failure_is_a_failed_step_that_rollback_undoes(
    executor: FilesExecutor, root: Path
) -> None:
    app = make_app(root)
    before = tree_state(root)
    with immutable(app / "shop"):
        result, snapshot = await run_step(executor, app, CLEAR)
    assert not result.ok
    assert f"clear_pycache on {app} stopped" in result.detail
    assert "Operation not permitted" in result.detail and str(app / "shop") in result.detail
    assert "1 change(s) made before that are recorded" in result.detail

    await executor.restore(snapshot)

    assert tree_state(root) == before


async def test_no_change_starts_after_the_step_timeout(executor: FilesExecutor, root: Path) -> None:
    app = make_app(root)
    before = tree_state(root)
    step = PlannedStep(action="clear_pycache", params={}, timeout_s=1e-9)
    result, snapshot = await run_step(executor, app, step)
    assert not result.ok and "timeout passed" in result.detail
    assert "nothing was changed" in result.detail
    assert manifest_of(snapshot).changes == [] and tree_state(root) == before


async def test_a_vanished_target_fails_the_step_and_the_check(
    executor: FilesExecutor, root: Path
) -> None:
    app = make_app(root)
    snapshot = await executor.snapshot(target_of(app), incident_id=7)
    app.rename(root / "elsewhere")
    result = await executor.run(CLEAR, target_of(app), snapshot)
    assert not result.ok and result.detail == f"clear_pycache refused: {app} no longer exists"
    assert await check(executor, app, "no_pycache") == (False, f"{app} no longer exists")


# -- restore ----------------------------------------------------------------------


async def test_restore_never_overwrites_what_is_there_now(
    executor: FilesExecutor, root: Path
) -> None:
    app = make_app(root)
    before = tree_state(root)
    _, snapshot = await run_step(executor, app, CLEAR)
    # The app imports again and Python writes fresh caches where the old ones were.
    compile_app(app)
    fresh = tree_state(root)

    with pytest.raises(RestoreError, match="GRACE will not overwrite it") as refused:
        await executor.restore(snapshot)

    assert "__pycache__" in str(refused.value) and snapshot.location in str(refused.value)
    assert tree_state(root) == fresh
    assert len(list((Path(snapshot.location) / "items").iterdir())) == 3
    # A person moves the fresh caches away; the retried restore finishes the job.
    for cache in app.rglob("__pycache__"):
        shutil.rmtree(cache)
    await executor.restore(snapshot)
    assert tree_state(root) == before


async def test_restore_moves_created_files_aside_never_deleting_them(
    executor: FilesExecutor, root: Path, clock: FixedClock
) -> None:
    logs = root / "logs"
    make_logs(logs, clock.now().timestamp())
    before = tree_state(root)
    _, snapshot = await run_step(executor, logs, rotate())
    (logs / "nested" / "db.log").write_bytes(b"written after the app reopened its log\n")
    (logs / "app.log").unlink()
    (logs / "app.log").write_bytes(b"the app's own new log\n")

    await executor.restore(snapshot)

    assert tree_state(root) == before
    displaced = Path(snapshot.location) / "displaced"
    kept = {p.name.split("-", 1)[1]: p.read_bytes() for p in displaced.iterdir()}
    assert kept["app.log"] == b"the app's own new log\n"
    assert kept["db.log"] == b"written after the app reopened its log\n"
    assert set(kept) == {"app.log", "app.log.1.gz", "db.log", "db.log.1.gz"}


async def test_restore_refuses_to_rename_back_a_different_file(
    executor: FilesExecutor, root: Path, clock: FixedClock
) -> None:
    logs = root / "logs"
    make_logs(logs, clock.now().timestamp())
    _, snapshot = await run_step(executor, logs, rotate(compress=False))
    # Another rotation (say, logrotate's own) moved GRACE's file on and made a new one.
    (logs / "app.log.1").rename(logs / "app.log.keep")
    (logs / "app.log.1").write_bytes(b"not GRACE's\n")

    with pytest.raises(
        RestoreError, match=r"app\.log\.1 back to .*no longer the file GRACE renamed"
    ):
        await executor.restore(snapshot)

    assert (logs / "app.log.1").read_bytes() == b"not GRACE's\n"
    assert not exists(logs / "app.log")


async def test_restore_twice_changes_nothing_more(
    executor: FilesExecutor, root: Path, clock: FixedClock
) -> None:
    logs = root / "logs"
    make_logs(logs, clock.now().timestamp())
    before = tree_state(root)
    _, snapshot = await run_step(executor, logs, rotate())
    await executor.restore(snapshot)
    await executor.restore(snapshot)
    assert tree_state(root) == before
    assert all(change.undone for change in manifest_of(snapshot).changes)


# -- rotate_logs ------------------------------------------------------------------


async def test_rotate_logs_like_logrotate_and_roll_back_byte_for_byte(
    executor: FilesExecutor, root: Path, clock: FixedClock
) -> None:
    logs = root / "logs"
    now = clock.now().timestamp()
    original = make_logs(logs, now)
    app_log = os.stat(logs / "app.log")
    before = tree_state(root)

    result, snapshot = await run_step(executor, logs, rotate(keep=3))

    assert result.ok, result.detail
    assert set(tree_state(logs)) == {
        "app.log",
        "app.log.1.gz",
        "app.log.2.gz",
        "app.log.3.gz",
        "worker.log",
        "idle.log",
        "notes.txt",
        "nested",
        "nested/db.log",
        "nested/db.log.1.gz",
    }
    fresh = os.stat(logs / "app.log")
    assert fresh.st_size == 0 and stat.S_IMODE(fresh.st_mode) == 0o640
    assert (fresh.st_uid, fresh.st_gid) == (NOBODY, NOBODY)
    packed = os.stat(logs / "app.log.1.gz")
    assert gzip.decompress((logs / "app.log.1.gz").read_bytes()) == original["app.log"]
    assert (stat.S_IMODE(packed.st_mode), packed.st_uid) == (0o640, NOBODY)
    assert packed.st_mtime_ns == app_log.st_mtime_ns
    assert (logs / "app.log.2.gz").read_bytes() == original["app.log.1.gz"]
    assert (logs / "app.log.3.gz").read_bytes() == original["app.log.2.gz"]
    assert (
        gzip.decompress((logs / "nested" / "db.log.1.gz").read_bytes()) == original["nested/db.log"]
    )
    for untouched in ("worker.log", "idle.log", "notes.txt"):
        assert (logs / untouched).read_bytes() == original[untouched]
    # Everything that left the tree waits in the quarantine, byte for byte.
    items = Path(snapshot.location) / "items"
    kept = {p.name.split("-", 1)[1]: p.read_bytes() for p in items.iterdir()}
    gone = ["app.log", "app.log.3.gz", "app.log.4", "worker.log.2.gz", "worker.log.9.gz"]
    assert kept == {Path(rel).name: original[rel] for rel in [*gone, "nested/db.log"]}
    assert "rotated 2 log(s)" in result.detail and "app.log (3.0 MiB," in result.detail
    assert "quarantined 4 old generation(s) beyond keep=3 or older than 14 days" in result.detail
    assert "on the same file system" in result.detail and "purged after 7 days" in result.detail

    await executor.restore(snapshot)

    assert tree_state(root) == before


async def test_rotation_without_compression_keeps_the_writers_file(
    executor: FilesExecutor, root: Path, clock: FixedClock
) -> None:
    logs = root / "logs"
    original = make_logs(logs, clock.now().timestamp())
    with appending(logs / "app.log") as writer:
        result, _ = await run_step(executor, logs, rotate(keep=5, compress=False))
        # The documented trade-off: until it reopens, the writer writes the rotated file.
        writer.write(b"a late line\n")
    assert result.ok, result.detail
    assert (logs / "app.log.1").read_bytes() == original["app.log"] + b"a late line\n"
    assert (logs / "app.log").read_bytes() == b""
    assert (logs / "app.log.2.gz").read_bytes() == original["app.log.1.gz"]


async def test_symlinked_logs_are_left_alone(
    executor: FilesExecutor, root: Path, outside: Path
) -> None:
    logs = root / "logs"
    logs.mkdir()
    (logs / "real.log").write_bytes(log_lines(2 * MIB))
    (logs / "escape.log").symlink_to(outside / "big.log")
    (logs / "api.log").write_bytes(log_lines(2 * MIB))
    (logs / "api.log.1").symlink_to(outside / "other.log")
    (logs / "archive").symlink_to(outside)
    outside_before = tree_state(outside)

    result, _ = await run_step(executor, logs, rotate())

    assert result.ok, result.detail
    assert "rotated 1 log(s) under" in result.detail and "real.log (2.0 MiB" in result.detail
    assert f"escape.log (a symlink to {outside / 'big.log'})" in result.detail
    assert f"api.log.1 (a symlink to {outside / 'other.log'})" in result.detail
    assert (logs / "api.log").stat().st_size == 2 * MIB
    assert (logs / "escape.log").is_symlink() and (logs / "api.log.1").is_symlink()
    assert tree_state(outside) == outside_before


async def test_nothing_to_rotate_says_why(executor: FilesExecutor, root: Path) -> None:
    (root / "app.log").write_bytes(b"tiny\n")
    result, _ = await run_step(executor, root, rotate())
    assert result.ok
    assert result.detail == (
        f"nothing to rotate under {root}: no log matching '*.log' of at least 1.0 MiB, "
        "no generation beyond keep=3 or older than 14 days"
    )


async def test_rotation_into_another_file_system_copies_then_restores(
    root: Path, clock: FixedClock, other_fs: Path
) -> None:
    executor = FilesExecutor(other_fs, clock)
    logs = root / "logs"
    original = make_logs(logs, clock.now().timestamp())
    app = make_app(root)
    before = tree_state(root)

    rotated, first = await run_step(executor, logs, rotate())
    cleared, second = await run_step(executor, app, CLEAR)

    assert rotated.ok and cleared.ok, (rotated.detail, cleared.detail)
    assert "on another file system" in rotated.detail
    kept = next((Path(first.location) / "items").glob("*-app.log"))
    assert kept.read_bytes() == original["app.log"]
    assert (os.stat(kept).st_uid, stat.S_IMODE(os.stat(kept).st_mode)) == (NOBODY, 0o640)
    assert gzip.decompress((logs / "app.log.1.gz").read_bytes()) == original["app.log"]

    await executor.restore(second)
    await executor.restore(first)

    assert tree_state(root) == before


# -- checks and benchmark ----------------------------------------------------------


async def test_logs_at_most_sees_only_live_logs(
    executor: FilesExecutor, root: Path, clock: FixedClock
) -> None:
    logs = root / "logs"
    make_logs(logs, clock.now().timestamp())
    ok, detail = await check(executor, logs, "logs_at_most", bytes=MIB)
    assert not ok
    assert detail == (
        f"logs under {logs} larger than 1.0 MiB: app.log (3.0 MiB), nested/db.log (2.0 MiB)"
    )
    await run_step(executor, logs, rotate())
    assert await check(executor, logs, "logs_at_most", bytes=MIB) == (
        True,
        f"every '*.log' log under {logs} is at most 1.0 MiB",
    )


async def test_dir_size_counts_each_file_once_and_no_link_target(
    executor: FilesExecutor, root: Path, outside: Path
) -> None:
    (root / "a").write_bytes(b"a" * 1000)
    (root / "sub").mkdir()
    (root / "sub" / "b").write_bytes(b"b" * 500)
    os.link(root / "a", root / "sub" / "same-as-a")
    (root / "escape.log").symlink_to(outside / "big.log")
    assert await check(executor, root, "dir_size_at_most", bytes=1500) == (
        True,
        f"{root} holds 1.5 KiB in 2 files <= 1.5 KiB",
    )
    ok, detail = await check(executor, root, "dir_size_at_most", bytes=1499)
    assert not ok and detail.endswith("> 1.5 KiB")


async def test_disk_free_at_least(executor: FilesExecutor, root: Path) -> None:
    usage = shutil.disk_usage(root)
    shown = f"has {100 * usage.free / usage.total:.1f}% free"
    ok, detail = await check(executor, root, "disk_free_at_least", percent=0.0)
    assert ok and shown in detail and str(root) in detail
    ok, detail = await check(executor, root, "disk_free_at_least", percent=100.0)
    assert not ok and detail.endswith("< 100%")


async def test_walk_latency_grows_with_the_tree(executor: FilesExecutor, root: Path) -> None:
    (root / "small").mkdir()
    for i in range(400):
        (root / "big" / f"d{i}" / "e").mkdir(parents=True)
    bench = PlannedBenchmark(benchmark="walk_latency", params={"repeat": 5}, tolerance=0.5)
    small = await executor.measure(bench, target_of(root / "small"))
    big = await executor.measure(bench, target_of(root / "big"))
    assert 0 < small < big


# -- purge ------------------------------------------------------------------------


async def test_purge_deletes_only_folders_older_than_quarantine_days(
    tmp_path: Path, root: Path, clock: FixedClock
) -> None:
    executor = FilesExecutor(tmp_path / "grace", clock, quarantine_days=7)
    make_app(root)
    _, old = await run_step(executor, root, CLEAR)
    clock.current += timedelta(days=6)
    young = await executor.snapshot(target_of(root), incident_id=8)
    undated = tmp_path / "grace" / "quarantine" / "copied-by-hand"
    undated.mkdir()
    assert await executor.purge_quarantine() == []

    clock.current += timedelta(days=1, seconds=1)
    assert await executor.purge_quarantine() == [Path(old.location)]

    assert not exists(Path(old.location))
    assert exists(Path(young.location)) and exists(undated)


async def test_purge_keeps_the_folders_of_held_incidents(
    tmp_path: Path, root: Path, clock: FixedClock
) -> None:
    executor = FilesExecutor(tmp_path / "grace", clock, quarantine_days=1)
    held = await executor.snapshot(target_of(root), incident_id=3)
    done = await executor.snapshot(target_of(root), incident_id=4)
    clock.current += timedelta(days=2)

    assert await executor.purge_quarantine(keep={3}) == [Path(done.location)]
    assert exists(Path(held.location))


# -- the built-in patterns and playbooks, from a real alert ---------------------------


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return builtin_catalog(tmp_path, "files")


def test_the_files_builtins_load_beside_every_other_builtin() -> None:
    catalog = load_catalog([], specs())
    treating = {p: catalog.playbook_for(p) for p in ("disk_filling_with_logs", "stale_bytecode")}
    assert {p: b.id for p, b in treating.items() if b} == {
        "disk_filling_with_logs": "files-rotate-logs",
        "stale_bytecode": "files-clear-pycache",
    }


def alertmanager_alert(
    name: str, labels: dict[str, str], annotations: dict[str, str], at: datetime
) -> Alert:
    """The alert exactly as GRACE's Alertmanager intake makes it from a webhook."""
    alert = {
        "status": "firing",
        "labels": {"alertname": name, **labels},
        "annotations": annotations,
        "startsAt": (at - timedelta(minutes=5)).isoformat(),
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=...",
        "fingerprint": "5d3f0e2c4a1b9e77",
    }
    payload = {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{name}"}}',
        "status": "firing",
        "receiver": "grace",
        "groupLabels": {"alertname": name},
        "commonLabels": alert["labels"],
        "commonAnnotations": annotations,
        "externalURL": "http://alertmanager:9093",
        "alerts": [alert],
    }
    [parsed] = parse_alertmanager(json.dumps(payload).encode(), received_at=at)
    return parsed


async def heal_from_alert(
    executor: FilesExecutor, catalog: Catalog, alert: Alert, allowlist: list[str]
) -> tuple[str, list[Snapshot]]:
    """What the engine does: diagnose, plan, a snapshot before each step, then the
    checks; they must fail before the heal and pass after it. The playbook id."""
    diagnosis = catalog.diagnose(alert)
    assert diagnosis is not None
    playbook = catalog.playbook_for(diagnosis.problem)
    assert playbook is not None
    plan = make_plan(playbook, alert, executor, allowlist)
    before = [await executor.check(c, plan.target) for c in plan.checks]
    assert not all(result.ok for result in before), before
    snapshots = []
    for step in plan.steps:
        snapshot = await executor.snapshot(plan.target, incident_id=7)
        snapshots.append(snapshot)
        result = await executor.run(step, plan.target, snapshot)
        assert result.ok, result.detail
    after = [await executor.check(c, plan.target) for c in plan.checks]
    assert all(result.ok for result in after), after
    return f"{diagnosis.pattern_id} -> {playbook.id} (tier {playbook.tier})", snapshots


@pytest.mark.parametrize(
    ("alertname", "summary", "pattern"),
    [
        (
            "NodeFilesystemAlmostOutOfSpace",
            "Filesystem has less than 5% space left.",
            "files-disk-almost-full-of-logs",
        ),
        (
            "NodeFilesystemSpaceFillingUp",
            "Filesystem is predicted to run out of space within the next 4 hours.",
            "files-disk-filling-up-with-logs",
        ),
    ],
)
async def test_disk_filling_with_logs_from_node_exporter_alert_to_verified_heal(
    executor: FilesExecutor,
    catalog: Catalog,
    root: Path,
    clock: FixedClock,
    alertname: str,
    summary: str,
    pattern: str,
) -> None:
    logs = root / "var" / "log" / "shop"
    original = make_logs(logs, clock.now().timestamp())
    before = tree_state(root)
    labels = {
        "device": "/dev/vda1",
        "fstype": "ext4",
        "instance": "web-1:9100",
        "job": "node",
        "mountpoint": "/var",
        "severity": "warning",
        "log_dir": str(logs),
    }
    description = "Filesystem on /dev/vda1 at web-1:9100 has only 3.2% available space left."
    alert = alertmanager_alert(
        alertname, labels, {"summary": summary, "description": description}, clock.now()
    )
    diagnosis = catalog.diagnose(alert)
    assert diagnosis is not None
    assert diagnosis.explanation.startswith("The file system /var on web-1:9100")

    path, snapshots = await heal_from_alert(executor, catalog, alert, [f"{root}/var/log/*"])

    assert path == f"{pattern} -> files-rotate-logs (tier 2)"
    assert gzip.decompress((logs / "app.log.1.gz").read_bytes()) == original["app.log"]
    for snapshot in reversed(snapshots):
        await executor.restore(snapshot)
    assert tree_state(root) == before


async def test_a_log_dir_outside_the_allowlist_is_refused_at_planning(
    executor: FilesExecutor, catalog: Catalog, root: Path, clock: FixedClock
) -> None:
    labels = {"mountpoint": "/", "instance": "web-1:9100", "log_dir": "/etc"}
    alert = alertmanager_alert("NodeFilesystemAlmostOutOfSpace", labels, {}, clock.now())
    diagnosis = catalog.diagnose(alert)
    assert diagnosis is not None
    playbook = catalog.playbook_for(diagnosis.problem)
    assert playbook is not None
    with pytest.raises(TargetRefused, match="'/etc'"):
        make_plan(playbook, alert, executor, [f"{root}/var/log/*"])


async def test_corrupt_bytecode_from_an_import_error_to_a_working_import(
    executor: FilesExecutor, catalog: Catalog, root: Path, clock: FixedClock
) -> None:
    app = make_app(root)
    pyc = next((app / "shop" / "__pycache__").glob("models.*.pyc"))
    # Half-written when the disk filled: a valid header, a truncated body.
    pyc.write_bytes(pyc.read_bytes()[:20])
    broken = python_in(app, "import shop.models")
    assert broken.returncode != 0
    error = broken.stderr.strip().splitlines()[-1]
    assert error == "EOFError: marshal data too short"
    before = tree_state(root)
    # A Loki alerting rule on the app's logs, routed through Alertmanager.
    alert = alertmanager_alert(
        "ShopWorkerImportErrors",
        {"service": "shop", "severity": "critical", "app_dir": str(app)},
        {"summary": "shop workers crash while importing", "description": error},
        clock.now(),
    )

    path, snapshots = await heal_from_alert(executor, catalog, alert, [str(root)])

    assert path == "files-corrupt-bytecode -> files-clear-pycache (tier 1)"
    assert python_in(app, "import shop.models").returncode == 0
    for snapshot in reversed(snapshots):
        await executor.restore(snapshot)
    assert tree_state(root) == before
    assert python_in(app, "import shop.models").stderr.strip().endswith(error)


async def test_stale_bytecode_from_alert_to_the_new_code_running(
    executor: FilesExecutor, catalog: Catalog, root: Path, clock: FixedClock
) -> None:
    app = make_app(root)
    settings = app / "shop" / "settings.py"
    compiled = os.stat(settings)
    # A deploy that keeps sizes and mtimes: Python cannot tell the cache is stale.
    settings.write_text(NEW_SOURCE)
    os.utime(settings, ns=(compiled.st_atime_ns, compiled.st_mtime_ns))
    show = "import shop.settings; print(shop.settings.FLAVOUR)"
    assert python_in(app, show).stdout == "old\n"
    alert = alertmanager_alert(
        "StaleBytecode",
        {"service": "shop", "severity": "warning", "app_dir": str(app)},
        {"summary": "shop runs code older than its release"},
        clock.now(),
    )

    path, _ = await heal_from_alert(executor, catalog, alert, [str(root)])

    assert path == "files-stale-bytecode -> files-clear-pycache (tier 1)"
    assert python_in(app, show).stdout == "new\n"
