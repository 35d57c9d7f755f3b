"""The two servers bench/ack_latency.py compares, each a process of its own.

GRACE is `grace run` (uvloop, its start-up heap frozen: what production runs)
on a fresh database, with the Slack stand-in in the bench's own process, at
Slack's pace (GRACE's defaults: 1 write a second per lane, bursts of 3). It
is given incidents awaiting approval, each with its card posted, so every
click names a real plan. The bare app is a Bolt `AsyncApp` configured as
GRACE's is (the same token and Slack, its signing secret, process before
response) whose listeners only `await ack()`, served by Bolt's own aiohttp
adapter on uvloop.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import socket
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from _ack_requests import APPROVER, PEOPLE
from _storm_runs import stop_process, wait_until

from bot.demo import CHANNEL, MONITOR, bloat_wal
from bot.devslack import Message
from tests.crash_harness import GraceProcess, Slack, free_port
from tests.grace_db import GraceDb

HOST = "127.0.0.1"
SLACK_RATE, SLACK_BURST = 1.0, 3  # Slack's per-channel limit, as the stand-in enforces it
CARDS_WITHIN_S = 120.0  # the cards of a dozen incidents, at one write a second


@dataclass
class Grace:
    """`grace run`, the stand-in it talks to, and the incidents the clicks name."""

    slack: Slack
    process: GraceProcess
    db: GraceDb
    targets: list[str]
    owners: list[sqlite3.Connection] = field(default_factory=list)
    cards: list[Message] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.process.env["GRACE_PORT"])

    @property
    def pid(self) -> int:
        assert self.process.proc is not None
        return self.process.proc.pid

    def unhandled(self) -> int:
        """Deliveries committed to the inbox and not yet handled."""
        return int(self.db.value("SELECT count(*) FROM inbox WHERE handled_at IS NULL"))

    def committed(self) -> int:
        return int(self.db.value("SELECT count(*) FROM inbox"))

    def outbox_backlog(self) -> int:
        pending = "SELECT count(*) FROM outbox WHERE state IN ('pending', 'sending')"
        return int(self.db.value(pending))

    async def close(self) -> None:
        if self.process.proc is not None:
            await stop_process(self.process.proc)
        await self.process.close()
        await self.slack.stop()
        for owner in self.owners:
            owner.close()


async def start_grace(workdir: Path, incidents: int) -> Grace:
    """GRACE running with `incidents` tier-2 incidents awaiting approval, cards posted."""
    users = {MONITOR: "monitoring", APPROVER: "oncall", **{p: p.lower() for p in PEOPLE}}
    slack = Slack(
        token="xoxb-bench-ack",
        signing_secret="bench-ack-signing-secret",
        channels={CHANNEL: "alerts"},
        users=users,
        post_rate_per_channel=SLACK_RATE,
        post_burst=SLACK_BURST,
    )
    await slack.start()
    app_dir = workdir / "app"
    targets = [str(app_dir / f"app{n:02}.db") for n in range(incidents)]
    env = _environment(workdir, slack, app_dir)
    grace = Grace(slack, GraceProcess(env, workdir), GraceDb(Path(env["GRACE_DB"])), targets)
    grace.owners = [bloat_wal(Path(t), rows=300) for t in targets]
    try:
        await _open_incidents(grace)
    except BaseException:
        await grace.close()  # a failed start leaves no `grace run` behind
        raise
    return grace


async def _open_incidents(grace: Grace) -> None:
    """Start GRACE, then one alert per target, until every card is posted."""
    slack, incidents = grace.slack, len(grace.targets)
    await grace.process.start()
    slack.connect(f"http://{HOST}:{grace.port}/slack/events")
    for target in grace.targets:
        await slack.post_message_as(
            CHANNEL,
            f"[FIRING:1] SQLiteWALTooLarge db_path={target} severity=warning",
            bot_id="B0ALERTMANAGER",
            username="Alertmanager",
        )
    waiting = "SELECT count(*) FROM incidents WHERE state = 'awaiting_approval'"
    if not await wait_until(lambda: grace.db.value(waiting) == incidents, CARDS_WITHIN_S):
        raise RuntimeError(f"{incidents} incidents did not all await approval:\n{_tail(grace)}")
    if not await wait_until(lambda: len(slack.grace_cards()) == incidents, CARDS_WITHIN_S):
        raise RuntimeError(f"{incidents} cards were not all posted:\n{_tail(grace)}")
    grace.cards = slack.grace_cards()


def _tail(grace: Grace) -> str:
    return grace.process.log_tail()


def _environment(workdir: Path, slack: Slack, app_dir: Path) -> dict[str, str]:
    """GRACE's settings: its defaults, one tier-2 approver, the app databases as targets."""
    config = workdir / "grace.yml"
    settings = {
        "targets": {"sqlite": [str(app_dir / "*.db")]},
        "approvers": {"tier2": [APPROVER]},
        "snapshot_dir": str(workdir / "snapshots"),
        "slack_rate": SLACK_RATE,
        "slack_burst": SLACK_BURST,
    }
    config.write_text(json.dumps(settings))
    return {
        "SLACK_BOT_TOKEN": slack.token,
        "SLACK_SIGNING_SECRET": slack.signing_secret,
        "SLACK_API_URL": slack.api_url,
        "GRACE_DB": str(workdir / "grace.db"),
        "GRACE_HOST": HOST,
        "GRACE_PORT": str(free_port()),
        "GRACE_ALERT_CHANNELS": CHANNEL,
        "GRACE_CONFIG": str(config),
        # `/grace status` asks every executor whether it can act; the aws one must not
        # look for credentials off this machine (the instance metadata service).
        "AWS_EC2_METADATA_DISABLED": "true",
    }


# ------------------------------------------------------------------ the bare app


@dataclass
class Bare:
    """The bare Bolt app's process and port."""

    process: mp.process.BaseProcess
    port: int

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    async def close(self) -> None:
        self.process.terminate()  # the process this bench spawned, by its own handle
        await asyncio.to_thread(self.process.join, 10)


def start_bare(slack: Slack) -> Bare:
    """The bare app in a spawned process, listening once this returns."""
    sock = socket.socket()
    sock.bind((HOST, 0))
    sock.listen(1024)  # connections wait in the backlog until the app accepts
    ctx = mp.get_context("spawn")
    process = ctx.Process(
        target=_serve_bare,
        args=(sock, slack.token, slack.signing_secret, slack.api_url),
        daemon=True,
    )
    process.start()
    port = int(sock.getsockname()[1])
    sock.close()  # the child holds its own copy
    return Bare(process, port)


def _serve_bare(sock: socket.socket, token: str, secret: str, api_url: str) -> None:
    import uvloop
    from aiohttp import web
    from slack_bolt.async_app import AsyncApp
    from slack_bolt.context.ack.async_ack import AsyncAck
    from slack_sdk.web.async_client import AsyncWebClient

    from bot.ids import ActionId, Command

    app = AsyncApp(
        client=AsyncWebClient(token=token, base_url=api_url),
        signing_secret=secret,
        process_before_response=True,
    )

    async def just_ack(ack: AsyncAck) -> None:
        await ack()

    app.action(ActionId.APPROVE)(just_ack)
    app.action(ActionId.DRY_RUN)(just_ack)
    app.command(Command.GRACE)(just_ack)
    uvloop.install()
    web.run_app(app.web_app(), sock=sock, access_log=None, print=None)
