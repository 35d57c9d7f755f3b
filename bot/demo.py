"""`grace demo`: one whole incident on this machine, no Slack account needed.

A real SQLite database with a bloated write-ahead log, the real bot on a free
port, and the local Slack stand-in delivering the alert and the Approve click
as signed HTTP requests, exactly as Slack would; with `--socket-mode`, over
the WebSocket GRACE opens with its own Socket Mode code, as in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from pydantic import SecretStr

from bot.app import Grace, build
from bot.devslack import DevSlack, Message
from bot.ids import ActionId
from bot.settings import Approvers, Settings
from bot.socket_mode import SocketModeLink
from engine.models import IncidentState

CHANNEL = "C0ALERTS"
APPROVER = "U0ONCALL"
MONITOR = "U0MONITOR"


def bloat_wal(path: Path, rows: int = 40_000) -> sqlite3.Connection:
    """Write a WAL-mode database whose log is never checkpointed.

    Returns the open connection: like the application that owns the file, it
    must stay open, or SQLite checkpoints and deletes the WAL when it closes.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, body TEXT)")
    with conn:
        conn.executemany(
            "INSERT INTO events (body) VALUES (?)",
            ((f"event {i} " + "x" * 180,) for i in range(rows)),
        )
    return conn


def wal_size(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def demo_settings(
    workdir: Path,
    slack: DevSlack,
    token: str,
    secret: str,
    db_dir: Path,
    app_token: str | None = None,
) -> Settings:
    """GRACE for the demo; with `app_token`, in Socket Mode, where no signing secret is
    needed: nothing reaches GRACE but over the connection it opened itself."""
    return Settings(
        slack_bot_token=token,
        slack_signing_secret=None if app_token else secret,
        slack_app_token=SecretStr(app_token) if app_token else None,
        slack_api_url=slack.api_url,
        db=workdir / "grace.db",
        port=0,
        alert_channels=[CHANNEL],
        approvers=Approvers(tier2=[APPROVER]),
        targets={"sqlite": [str(db_dir / "*.db")]},
        snapshot_dir=workdir / "snapshots",
        playbook_dirs=[],
        # The stand-in has no rate limit of its own; a brisker pace keeps the demo short.
        slack_rate=20.0,
    )


def _find_card(slack: DevSlack) -> Message | None:
    return next((m for m in slack.messages(CHANNEL) if m.bot_id and m.blocks), None)


@contextlib.asynccontextmanager
async def delivering(grace: Grace, slack: DevSlack) -> AsyncIterator[None]:
    """While inside, what people do in the stand-in reaches GRACE: POSTed to its
    /slack/events, or in Socket Mode over the link GRACE keeps up (bot/socket_mode.py)."""
    app_token = grace.settings.slack_app_token
    if app_token is None:
        slack.connect(f"{grace.url}/slack/events")
        yield
        return
    link = SocketModeLink(grace.bolt, app_token.get_secret_value())
    running = asyncio.ensure_future(link.run())
    try:
        await slack.wait_for(lambda: running.done() or slack.socket.connections, timeout=15)
        if running.done():
            running.result()  # the stand-in refused the token: raised as the ConfigError it is
        yield
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await link.close()


async def run_demo(out: Callable[[str], None] = print, socket_mode: bool = False) -> int:
    with tempfile.TemporaryDirectory(prefix="grace-demo-") as tmp:
        workdir = Path(tmp)
        app_db = workdir / "app" / "app.db"
        owner = bloat_wal(app_db)
        before = wal_size(app_db)
        token, secret = f"xoxb-demo-{secrets.token_hex(8)}", secrets.token_hex(16)
        slack = DevSlack(
            token=token,
            signing_secret=secret,
            channels={CHANNEL: "alerts"},
            users={APPROVER: "oncall", MONITOR: "monitoring"},
        )
        await slack.start()
        app_token = slack.use_socket_mode() if socket_mode else None
        settings = demo_settings(workdir, slack, token, secret, app_db.parent, app_token)
        grace = await build(settings)
        try:
            await grace.start()
            async with delivering(grace, slack):
                how = "over Socket Mode" if socket_mode else f"at {grace.url}/slack/events"
                out(f"GRACE on {grace.url}, Slack stand-in on {slack.api_url}, delivering {how}")
                out(f"{app_db}: WAL is {before / 2**20:.1f} MiB\n")
                await slack.post_message_as(
                    CHANNEL,
                    f"[FIRING:1] SQLiteWALTooLarge db_path={app_db} severity=warning",
                    user=MONITOR,
                )
                card = await slack.wait_for(lambda: _find_card(slack), timeout=15)
                await slack.click(CHANNEL, card.ts, ActionId.APPROVE, user=APPROVER)
                # The learning summary is the thread's last word: the heal is over.
                await slack.wait_for(lambda: _thread_told(slack, card.ts), timeout=60)
                await grace.healer.drain()
            after = wal_size(app_db)
            incident = await grace.store.incident_for_card(CHANNEL, card.ts)
            assert incident is not None
        finally:
            await grace.stop()
            await slack.stop()
            owner.close()
        out(slack.transcript(CHANNEL))
        out(f"\nWAL before: {before:,} bytes; after: {after:,} bytes")
        if socket_mode:
            acked = len(slack.socket.acks)
            out(f"Socket Mode: {len(slack.socket.sent)} envelopes sent, {acked} acknowledged")
        out(f"Incident #{incident.id} ended {incident.state.value}.")
        return 0 if incident.state is IncidentState.RESOLVED else 1


def _thread_told(slack: DevSlack, ts: str) -> bool:
    return any("Learned" in (m.text or "") for m in slack.thread(CHANNEL, ts))
