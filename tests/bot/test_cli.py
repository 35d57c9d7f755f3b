"""`grace` as an operator meets it: clear one-line errors, honest exit codes."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import EXIT_CONFIG, EXIT_UNAVAILABLE, event_loop_factory, freeze_startup_heap, main
from engine.clock import SystemClock
from storage.factory import open_store
from tests.pg_server import PgServer, free_port

ROOT = Path(__file__).parents[2]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "GRACE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GRACE_DB", str(tmp_path / "grace.db"))


def test_run_without_a_token_names_the_variable(capsys):
    assert main(["run"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "SLACK_BOT_TOKEN must be set" in err and "Traceback" not in err


def test_run_in_http_mode_needs_the_signing_secret(monkeypatch, capsys):
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    assert main(["run"]) == EXIT_CONFIG
    assert "SLACK_SIGNING_SECRET must be set in HTTP mode" in capsys.readouterr().err


def test_a_bad_variable_is_named(monkeypatch, capsys):
    monkeypatch.setenv("GRACE_PORT", "three thousand")
    assert main(["check"]) == EXIT_CONFIG
    assert "GRACE_PORT: Input should be a valid integer" in capsys.readouterr().err


def check_with_playbook(monkeypatch, tmp_path, capsys, name: str, yaml: str, config: str = ""):
    """`grace check` with one user playbook file; returns its exit code, stderr and path."""
    folder = tmp_path / "playbooks"
    folder.mkdir()
    (folder / name).write_text(yaml)
    (tmp_path / "grace.yml").write_text(f"playbook_dirs: [{folder}]\n{config}")
    monkeypatch.setenv("GRACE_CONFIG", str(tmp_path / "grace.yml"))
    return main(["check"]), capsys.readouterr().err, folder / name


def test_check_names_the_playbook_file_line_and_field(monkeypatch, tmp_path, capsys):
    code, err, path = check_with_playbook(
        monkeypatch,
        tmp_path,
        capsys,
        "mine.yml",
        "playbooks:\n  - id: mine\n    title: Mine\n    treats: [sqlite_wal_too_large]\n"
        "    tier: 2\n    target: {executor: sqlite, from_label: db_path}\n"
        "    steps: [{action: wal_checkpoint, params: {mode: SOMETIMES}}]\n"
        "    checks: [{check: integrity_ok}]\n",
    )
    assert code == EXIT_CONFIG
    assert f"{path}:7: playbooks[0].steps[0].params.mode:" in err


def test_a_wrong_key_in_the_config_file_is_named(monkeypatch, tmp_path, capsys):
    config = tmp_path / "grace.yml"
    config.write_text("approvers: {tier2: [U1], teir3: [U2]}\n")
    monkeypatch.setenv("GRACE_CONFIG", str(config))
    assert main(["check"]) == EXIT_CONFIG
    assert f"{config}: approvers.teir3: Extra inputs are not permitted" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("yaml", "field"),
    [
        ("targets: {sqllite: [/srv/*.db]}\n", "targets"),
        ("resilience: {dockr: {attempts: 2}}\n", "resilience"),
        ("resilience: {sqlite: {attempts: lots}}\n", "resilience.sqlite.attempts"),
        ("services: {api: {config_file: /etc/api.yml}}\n", "services.api"),
    ],
)
def test_executor_settings_are_checked(monkeypatch, tmp_path, capsys, yaml, field):
    config = tmp_path / "grace.yml"
    config.write_text(yaml)
    monkeypatch.setenv("GRACE_CONFIG", str(config))
    assert main(["check"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert f"{config}: {field}:" in err and "Traceback" not in err
    if field in ("targets", "resilience"):
        assert "unknown executor" in err
        assert "known: aws, docker, files, kubernetes, service, sqlite" in err


def test_a_missing_config_file_is_named(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("GRACE_CONFIG", str(tmp_path / "nope.yml"))
    assert main(["check"]) == EXIT_CONFIG
    assert "nope.yml: no such file" in capsys.readouterr().err


def test_check_passes_and_warns_about_what_is_missing(capsys):
    from engine.catalog import load_catalog
    from engine.executors.plugin import specs

    builtins = load_catalog([], specs())
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert (
        f"config ok: {len(builtins.patterns)} patterns, {len(builtins.playbooks)} playbooks" in out
    )
    assert "approvers.tier2 is empty" in out and "targets.sqlite is empty" in out


def test_audit_verify_passes_then_names_the_tampered_row(tmp_path, capsys):
    import asyncio
    from datetime import UTC, datetime

    from engine.clock import SystemClock
    from engine.models import Alert
    from storage.store import SqliteStore

    async def write() -> None:
        store = await SqliteStore.open(tmp_path / "grace.db", SystemClock())
        alerts = [
            Alert(
                source="generic",
                source_key=f"k{n}",
                name="Disk",
                labels={"host": f"h{n}"},
                channel="C1",
                received_at=datetime.now(UTC),
            )
            for n in range(3)
        ]
        await store.ingest_alerts(alerts, "d1")
        for n in range(4):
            await store.audit("U1", "test.event", detail={"n": n})
        await store.close()

    asyncio.run(write())
    assert main(["audit", "verify"]) == 0
    out = capsys.readouterr().out
    assert "audit chain ok: 5 rows" in out and "match their audit rows: 1 deliveries" in out
    with sqlite3.connect(tmp_path / "grace.db") as raw:
        raw.execute("UPDATE alerts SET status = 'resolved' WHERE source_key = 'k1'")
    assert main(["audit", "verify"]) == 1
    assert "stored alerts do not match their audit row" in capsys.readouterr().out
    with sqlite3.connect(tmp_path / "grace.db") as raw:
        raw.execute("DROP TRIGGER audit_log_no_update")
        raw.execute("""UPDATE audit_log SET detail = '{"n": 99}' WHERE seq = 4""")
    assert main(["audit", "verify"]) == 1
    assert "BROKEN at row 4" in capsys.readouterr().out


def test_audit_verify_without_a_database(capsys, tmp_path):
    assert main(["audit", "verify"]) == EXIT_CONFIG
    assert "no such database" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["audit", "verify"], ["stats"], ["run"], ["check"]])
def test_an_unreachable_postgresql_is_named_without_its_password(
    monkeypatch, capsys, pg_server: PgServer, command
):
    closed = free_port()
    monkeypatch.setenv("GRACE_DB", f"postgresql://grace:s3cret@127.0.0.1:{closed}/grace")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "signing")
    assert main(command) == EXIT_UNAVAILABLE
    err = capsys.readouterr().err
    assert f"GRACE_DB=postgresql://127.0.0.1:{closed}/grace" in err and "Traceback" not in err
    assert "s3cret" not in err, "a URL's password is never printed"


def test_check_reports_the_postgresql_store_its_server_and_schema(
    monkeypatch, capsys, pg_server: PgServer
):
    from storage.db import load_migrations

    newest = load_migrations("postgresql")[-1].version
    dsn = pg_server.fresh_database()
    monkeypatch.setenv("GRACE_DB", dsn)
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    where = f"postgresql://127.0.0.1:{pg_server.port}/{dsn.rsplit('/', 1)[1]}"
    assert f"store: postgresql {where}, PostgreSQL {pg_server.version()}" in out
    assert f"not created yet (start-up applies migrations 1-{newest})" in out
    assert pg_server.password not in out

    async def open_once() -> None:
        store = await open_store(dsn, SystemClock())
        await store.close()

    asyncio.run(open_once())
    assert main(["check"]) == 0
    assert f"schema {newest}, up to date" in capsys.readouterr().out


def test_check_reports_the_sqlite_store_without_creating_it(capsys, tmp_path):
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert f"store: sqlite {tmp_path / 'grace.db'}; not created yet" in out
    assert not (tmp_path / "grace.db").exists()


def test_demo_heals_a_real_database_and_exits_zero():
    done = subprocess.run(
        [sys.executable, "-m", "bot", "demo"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Incident #1 ended resolved." in done.stdout
    assert "after: 0 bytes" in done.stdout
    assert "[Approve] [Reject]" in done.stdout and "succeeded, median" in done.stdout


async def test_run_serves_until_sigterm_then_exits_cleanly(devslack, tmp_path):
    import asyncio
    import os
    import signal

    import aiohttp

    env = {
        **os.environ,
        "SLACK_BOT_TOKEN": devslack.token,
        "SLACK_SIGNING_SECRET": devslack.signing_secret,
        "SLACK_API_URL": devslack.api_url,
        "GRACE_PORT": "0",
        "GRACE_ALERT_CHANNELS": "C0ALERTS",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(30):
            line = (await proc.stdout.readline()).decode()
        assert line.startswith("GRACE is running on http://127.0.0.1:"), line
        url = line.split()[4]
        async with aiohttp.ClientSession() as session, session.get(f"{url}/healthz") as resp:
            assert resp.status == 200
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert (tmp_path / "grace.db").is_file()
    assert [c.method for c in devslack.calls] == ["auth.test", "conversations.info"]


def test_a_playbook_widening_its_tiers_approvers_is_refused(monkeypatch, tmp_path, capsys):
    code, err, path = check_with_playbook(
        monkeypatch,
        tmp_path,
        capsys,
        "wide.yml",
        "playbooks:\n  - id: wide\n    title: Wide\n    treats: [sqlite_wal_too_large]\n"
        "    tier: 2\n    target: {executor: sqlite, from_label: db_path}\n"
        "    steps: [{action: wal_checkpoint}]\n    checks: [{check: integrity_ok}]\n"
        "    approval: {approvers: [U0ONCALL, U0INTERN]}\n",
        config="approvers: {tier2: [U0ONCALL]}\n",
    )
    assert code == EXIT_CONFIG
    assert f"{path}: wide: approver U0INTERN is not on approvers.tier2" in err


def test_audit_export_writes_json_lines_since_a_time(tmp_path, capsys):
    import asyncio
    import json

    from storage.store import SqliteStore
    from tests.storage.conftest import FakeClock

    async def write() -> None:
        clock = FakeClock()
        store = await SqliteStore.open(tmp_path / "grace.db", clock)
        await store.audit("U1", "early")
        clock.advance(3600)
        await store.audit("U2", "late", detail={"why": "test"})
        await store.close()

    asyncio.run(write())
    assert main(["audit", "export"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["action"] for r in rows] == ["early", "late"] and rows[1]["detail"] == {"why": "test"}
    out = tmp_path / "audit.jsonl"
    assert main(["audit", "export", "--since", "2025-03-01T12:30:00", "--out", str(out)]) == 0
    assert [json.loads(line)["action"] for line in out.read_text().splitlines()] == ["late"]
    assert main(["audit", "export", "--since", "yesterday"]) == EXIT_CONFIG
    assert "--since 'yesterday': not an ISO date" in capsys.readouterr().err


def test_the_startup_heap_is_frozen_out_of_collections():
    # What `grace run` built to start outlives every request; no collection should walk it.
    built_at_start = ["settings", "catalog"]
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() > 0
        assert not any(obj is built_at_start for obj in gc.get_objects())
    finally:
        gc.unfreeze()
    assert any(obj is built_at_start for obj in gc.get_objects())


def test_grace_run_serves_on_uvloop():
    import uvloop

    factory = event_loop_factory()
    assert factory is not None
    loop = factory()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


def test_stats_print_the_period_or_json_and_refuse_a_bad_period(tmp_path, capsys):
    import asyncio
    import json
    from datetime import UTC, datetime

    from engine.clock import SystemClock
    from engine.models import Alert
    from storage.store import SqliteStore

    assert main(["stats"]) == EXIT_CONFIG  # no database yet: said in one line
    assert "no such database" in capsys.readouterr().err

    async def write() -> None:
        store = await SqliteStore.open(tmp_path / "grace.db", SystemClock())
        alert = Alert(
            source="generic",
            source_key="k1",
            name="DiskAlmostFull",
            labels={"host": "h1"},
            channel="C1",
            received_at=datetime.now(UTC),
        )
        await store.ingest_alerts([alert], "d1")
        await store.close()

    asyncio.run(write())
    assert main(["stats", "--days", "30"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("*GRACE over the last 30 days* (")
    assert "*Incidents:* 1 (:arrow_up: 1 from 0 the period before)" in out
    assert "*Heals:* none ran (no rate; none ran the period before)" in out
    assert main(["stats", "--json"]) == 0
    numbers = json.loads(capsys.readouterr().out)
    assert numbers["days"] == 7 and numbers["current"]["incidents"] == 1
    assert numbers["current"]["success_rate"] is None and numbers["previous"]["incidents"] == 0
    assert numbers["current"]["top_alerts"] == [{"alert": "DiskAlmostFull", "incidents": 1}]
    for bad in ("0", "week"):
        with pytest.raises(SystemExit) as refused:
            main(["stats", "--days", bad])
        assert refused.value.code == 2
        assert "--days" in capsys.readouterr().err
