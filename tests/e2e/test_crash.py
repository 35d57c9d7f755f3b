"""A crash mid-heal: `grace run` is killed with SIGKILL between its snapshot and
its verification, then a new GRACE starts on the same database.

Nothing here is simulated: the process really dies while SQLite's busy
handler waits on a reader in a third process.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bot.app import build
from bot.demo import APPROVER, CHANNEL, bloat_wal
from bot.devslack import DevSlack
from bot.settings import load_settings
from engine.models import IncidentState
from tests.sqlite_processes import reader_in_other_process

S = IncidentState
LEAD = "U0LEAD"
WEBHOOK_TOKEN = "crash-test-token"
# Tier 1, so the heal starts the moment the alert arrives.
PLAYBOOK = """
playbooks:
  - id: wal-checkpoint-now
    title: Checkpoint the WAL at once
    treats: [sqlite_wal_too_large]
    tier: 1
    target: {executor: sqlite, from_label: db_path}
    steps:
      - action: wal_checkpoint
        params: {mode: TRUNCATE}
        timeout: 120
    checks:
      - check: integrity_ok
"""


def rows(db: Path) -> tuple[int, int]:
    conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT count(*), total(length(body)) FROM events").fetchone()
    finally:
        conn.close()


def snapshot_rows(grace_db: Path) -> list[str]:
    if not grace_db.exists():
        return []
    conn = sqlite3.connect(f"{grace_db.as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        return [r[0] for r in conn.execute("SELECT location FROM snapshots")]
    except sqlite3.OperationalError:  # not migrated yet
        return []
    finally:
        conn.close()


@pytest.fixture
async def slack() -> AsyncIterator[DevSlack]:
    token, secret = f"xoxb-crash-{secrets.token_hex(4)}", secrets.token_hex(16)
    stand_in = DevSlack(
        token=token, signing_secret=secret, channels={CHANNEL: "alerts"}, users={APPROVER: "oc"}
    )
    await stand_in.start()
    yield stand_in
    await stand_in.stop()


def environment(tmp_path: Path, slack: DevSlack, app_dir: Path) -> dict[str, str]:
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()
    (playbooks / "now.yml").write_text(PLAYBOOK)
    config = tmp_path / "grace.yml"
    config.write_text(
        json.dumps(
            {
                "targets": {"sqlite": [str(app_dir / "*.db")]},
                "playbook_dirs": [str(playbooks)],
                "admins": [LEAD],
                "approvers": {"tier2": [APPROVER]},
                "snapshot_dir": str(tmp_path / "snapshots"),
            }
        )
    )
    return {
        "SLACK_BOT_TOKEN": slack.token,
        "SLACK_SIGNING_SECRET": slack.signing_secret,
        "SLACK_API_URL": slack.api_url,
        "GRACE_DB": str(tmp_path / "grace.db"),
        "GRACE_PORT": "0",
        "GRACE_ALERT_CHANNELS": CHANNEL,
        "GRACE_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
        "GRACE_CONFIG": str(config),
    }


def alertmanager_body(db: Path) -> str:
    alert = {
        "status": "firing",
        "labels": {"alertname": "SQLiteWALTooLarge", "db_path": str(db), "severity": "warning"},
        "annotations": {"summary": "WAL over 4 MiB"},
        "startsAt": "2026-11-24T03:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.local/graph",
        "fingerprint": "c0ffee0000000001",
    }
    return json.dumps(
        {
            "version": "4",
            "groupKey": '{}:{alertname="SQLiteWALTooLarge"}',
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "grace",
            "groupLabels": {"alertname": "SQLiteWALTooLarge"},
            "commonLabels": alert["labels"],
            "commonAnnotations": alert["annotations"],
            "externalURL": "http://alertmanager.local",
            "alerts": [alert],
        }
    )


async def kill_mid_heal(env: dict[str, str], cwd: Path, app_db: Path, grace_db: Path) -> None:
    """Start `grace run`, send the alert, SIGKILL it once its snapshot is recorded."""
    log_path = cwd / "grace-run.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "run",
            cwd=cwd,
            env={**os.environ, **env},
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            line = (await proc.stdout.readline()).decode()
        assert line.startswith("GRACE is running on http://"), log_path.read_text()
        url = line.split()[4]
        headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}", "Content-Type": "application/json"}
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{url}/alerts/alertmanager", data=alertmanager_body(app_db), headers=headers
            ) as resp,
        ):
            assert resp.status == 200, await resp.text()
        async with asyncio.timeout(30):
            # The other process's database is all there is to watch: poll it.
            while not snapshot_rows(grace_db):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    assert proc.returncode == -9, log_path.read_text()


async def test_a_crash_between_snapshot_and_verification_is_interrupted_not_rerun(
    tmp_path: Path, slack: DevSlack
) -> None:
    app_db = tmp_path / "app" / "app.db"
    owner = bloat_wal(app_db, rows=5000)
    env = environment(tmp_path, slack, app_db.parent)
    grace_db = Path(env["GRACE_DB"])
    try:
        with reader_in_other_process(app_db, "events"):
            before = rows(app_db)
            await kill_mid_heal(env, tmp_path, app_db, grace_db)
        [location] = snapshot_rows(grace_db)
        snapshot = Path(location)

        for key, value in env.items():
            os.environ[key] = value
        try:
            settings = load_settings()
        finally:
            for key in env:
                del os.environ[key]
        grace = await build(settings)
        await grace.start()  # finds the run the crash cut short
        slack.connect(f"{grace.url}/slack/events")
        try:
            [incident] = await grace.store.list_incidents()
            assert incident.state is S.INTERRUPTED
            assert "may be part-way changed" in incident.reason
            # The snapshot is intact and listed; nothing was restored or re-run.
            assert await asyncio.to_thread(snapshot.is_file)
            assert rows(snapshot) == before == rows(app_db)
            thread = await slack.wait_for(
                lambda: [
                    m.text
                    for card in slack.messages(CHANNEL)
                    for m in slack.thread(CHANNEL, card.ts)
                    if "Interrupted" in m.text
                ]
            )
            assert str(snapshot) in thread[0] and f"/grace clear {app_db}" in thread[0]
            [hold] = await grace.store.holds()
            assert hold.target.name == str(app_db) and hold.incident_id == incident.id

            # Held: a person's request for the same target is refused.
            await slack.slash_command(
                f"heal wal-checkpoint-now {app_db}", user=APPROVER, channel=CHANNEL
            )
            refused = await slack.wait_for(lambda: [m.text for m in slack.ephemerals(APPROVER)])
            assert "safe hold since incident" in refused[0]

            await slack.slash_command(f"clear {app_db}", user=APPROVER, channel=CHANNEL)
            answers = await slack.wait_for(
                lambda: len(slack.ephemerals(APPROVER)) == 2 and slack.ephemerals(APPROVER)
            )
            assert "Only GRACE's admins" in answers[1].text
            await slack.slash_command(f"clear {app_db}", user=LEAD, channel=CHANNEL)
            [cleared] = await slack.wait_for(lambda: slack.ephemerals(LEAD))
            assert "is cleared" in cleared.text
            assert await grace.store.holds() == []
            assert (await grace.store.get_incident(incident.id)).state is S.CLEARED

            # Cleared: the same request now heals, with the reader gone.
            await slack.slash_command(
                f"heal wal-checkpoint-now {app_db}", user=APPROVER, channel=CHANNEL
            )
            await slack.wait_for(lambda: len(slack.ephemerals(APPROVER)) == 3)
            await grace.healer.drain()
            healed = (await grace.store.list_incidents())[0]
            assert healed.id != incident.id and healed.state is S.RESOLVED
            assert rows(app_db) == before
        finally:
            await grace.stop()
    finally:
        owner.close()
