"""A whole GRACE on loopback: the real bot and database, the Slack stand-in, a real app database."""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from pydantic import SecretStr

from bot.app import Grace, build
from bot.demo import APPROVER, CHANNEL, MONITOR, bloat_wal, demo_settings
from bot.devslack import Delivery, DevSlack, Message
from bot.ids import ActionId
from engine.models import Incident
from engine.ports import Clock

OTHER_CHANNEL = "C0RANDOM"
WEBHOOK_TOKEN = "webhook-test-token"


class Harness:
    def __init__(self, slack: DevSlack, grace: Grace, app_db: Path, owner: sqlite3.Connection):
        self.slack = slack
        self.grace = grace
        self.app_db = app_db
        self.owner = owner

    async def alert(self, text: str | None = None, **poster: str) -> Delivery:
        """The WAL alert (or `text`), posted by the monitoring user: a person."""
        text = text or f"[FIRING:1] SQLiteWALTooLarge db_path={self.app_db} severity=warning"
        return await self.slack.post_message_as(CHANNEL, text, **(poster or {"user": MONITOR}))

    async def integration_alert(self, text: str | None = None) -> Delivery:
        """The same, posted by an integration: its plan keeps its playbook's tier."""
        return await self.alert(text, bot_id="B0ALERTMANAGER", username="Alertmanager")

    def cards(self) -> list[Message]:
        """GRACE's incident cards: its top-level messages with blocks."""
        return [
            m for m in self.slack.messages(CHANNEL) if m.bot_id == self.slack.bot_id and m.blocks
        ]

    async def card(self) -> Message:
        return await self.slack.wait_for(lambda: next(iter(self.cards()), None))

    async def click(self, card: Message, user: str = APPROVER, action: str = ActionId.APPROVE):
        return await self.slack.click(CHANNEL, card.ts, action, user=user)

    def thread(self, card: Message) -> list[str]:
        return [m.text for m in self.slack.thread(CHANNEL, card.ts)]

    async def finished(self, card: Message, within_s: float = 10.0) -> Incident:
        """The learning summary is the last word of every heal."""
        await self.slack.wait_for(
            lambda: any("Learned" in t for t in self.thread(card)), timeout=within_s
        )
        await self.grace.healer.drain()
        await self.grace.outbox.idle()
        incident = await self.grace.store.incident_for_card(CHANNEL, card.ts)
        assert incident is not None
        return incident

    async def incidents(self) -> list[Incident]:
        return await self.grace.store.list_incidents(limit=1000)

    async def post(
        self,
        source: str,
        body: bytes | str,
        *,
        token: str | None = WEBHOOK_TOKEN,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict]:
        """POST to `/alerts/<source>` (which may go on with a sub-path) as a sender would."""
        sent = {"Content-Type": content_type, **(headers or {})}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        data = body.encode() if isinstance(body, str) else body
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.grace.url}/alerts/{source}", data=data, headers=sent) as resp,
        ):
            return resp.status, await resp.json()

    async def metrics(self) -> str:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.grace.url}/metrics") as resp,
        ):
            return await resp.text()


MakeHarness = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def make_harness(tmp_path: Path) -> AsyncIterator[MakeHarness]:
    started: list[Harness] = []

    async def make(
        playbooks: str | None = None,
        rows: int = 5000,
        usergroups: dict[str, list[str]] | None = None,
        clock: Clock | None = None,
        **overrides: object,
    ) -> Harness:
        app_db = tmp_path / "app" / "app.db"
        owner = bloat_wal(app_db, rows=rows)
        token, secret = f"xoxb-test-{secrets.token_hex(4)}", secrets.token_hex(16)
        slack = DevSlack(
            token=token,
            signing_secret=secret,
            channels={CHANNEL: "alerts", OTHER_CHANNEL: "random"},
            users={APPROVER: "oncall", MONITOR: "monitoring"},
            usergroups=usergroups,
        )
        await slack.start()
        settings = demo_settings(tmp_path, slack, token, secret, app_db.parent).model_copy(
            update={"slack_rate": 500.0, "webhook_token": SecretStr(WEBHOOK_TOKEN), **overrides}
        )
        if playbooks is not None:
            folder = tmp_path / "playbooks"
            folder.mkdir()
            (folder / "custom.yml").write_text(playbooks)
            settings = settings.model_copy(update={"playbook_dirs": [folder]})
        grace = await build(settings, clock)
        await grace.start()
        slack.connect(f"{grace.url}/slack/events")
        harness = Harness(slack, grace, app_db, owner)
        started.append(harness)
        return harness

    yield make
    for harness in started:
        await harness.grace.stop()
        await harness.slack.stop()
        harness.owner.close()
