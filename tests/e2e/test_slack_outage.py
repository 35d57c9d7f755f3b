"""Ten minutes without Slack: five of 500s, five of 429s with Retry-After, while
incidents in two channels queue their cards, thread replies and card updates.
Afterwards every message is in Slack exactly once, each thread in the order it
was told, and no channel ever saw writes faster than its limit.

The whole GRACE runs (webhooks, engine, SQLite, outbox) against DevSlack over
HTTP. Time is simulated: GRACE, its outbox and DevSlack read one clock that
moves when the outbox waits, so the ten minutes pass in a few real seconds.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr
from slack_sdk.web.async_client import AsyncWebClient

from bot.app import Grace, build
from bot.demo import CHANNEL, demo_settings
from bot.devslack import DevSlack
from bot.outbox_lookup import EVENT_TYPE
from engine.routing import Route
from tests.bot.test_outbox_worker import SimClock

OTHER = "C0DATABASE"
TOKEN = "outage-webhook-token"
RATE, BURST = 1.0, 3  # GRACE's defaults, and Slack's pace for chat.postMessage
ERRORS_FOR = timedelta(minutes=5)
LIMITED_FOR = timedelta(minutes=5)
RETRY_AFTER = 30


@dataclass
class Outage:
    """Slack's side of the outage, switched by the simulated clock."""

    slack: DevSlack
    starts: datetime | None = None

    def begin(self, at: datetime) -> None:
        self.starts = at
        self.slack.outage, self.slack.outage_status = True, 500

    def at(self, now: datetime) -> None:
        if self.starts is None or not self.slack.outage:
            return
        if now >= self.starts + ERRORS_FOR + LIMITED_FOR:
            self.slack.outage = False
            # Two posts are carried out as Slack recovers, their answers lost.
            self.slack.lose_answer("chat.postMessage", times=2)
        elif now >= self.starts + ERRORS_FOR:
            self.slack.outage_status, self.slack.outage_retry_after = 429, RETRY_AFTER


@dataclass
class World:
    slack: DevSlack
    grace: Grace
    clock: SimClock
    outage: Outage

    async def alert(self, *alerts: dict[str, Any]) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        url = f"{self.grace.url}/alerts/generic"
        async with aiohttp.ClientSession() as session:
            body = json.dumps({"alerts": list(alerts)})
            async with session.post(url, data=body, headers=headers) as resp:
                assert resp.status == 200, await resp.text()


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    clock = SimClock()
    clock.frozen = True  # until every write is queued
    token, secret = f"xoxb-{secrets.token_hex(4)}", secrets.token_hex(16)
    slack = DevSlack(
        token=token,
        signing_secret=secret,
        channels={CHANNEL: "alerts", OTHER: "database"},
        post_rate_per_channel=RATE,
        post_burst=BURST,
        clock=clock.seconds,
    )
    outage = Outage(slack)
    clock.on_advance = outage.at
    await slack.start()
    settings = demo_settings(tmp_path, slack, token, secret, tmp_path / "app").model_copy(
        update={
            "slack_rate": RATE,
            "slack_burst": BURST,
            "webhook_token": SecretStr(TOKEN),
            "routes": [Route(match={"team": "db"}, channel=OTHER)],
        }
    )
    grace = await build(settings, clock)
    await grace.start()
    slack.connect(f"{grace.url}/slack/events")
    try:
        yield World(slack, grace, clock, outage)
    finally:
        await grace.stop()
        await slack.stop()


def firing(n: int, status: str = "firing") -> dict[str, Any]:
    labels = {"host": f"web-{n}", **({"team": "db"} if n % 2 else {})}
    return {"name": "DiskFilling", "status": status, "labels": labels}


async def tagged(slack: DevSlack, channel: str) -> dict[str, list[int]]:
    """Each of the channel's cards by ts: its own outbox row, then its thread's, in
    thread order, read back from Slack with the metadata they were posted with."""
    reader = AsyncWebClient(token=slack.token, base_url=slack.api_url)
    history = await reader.conversations_history(channel=channel, include_all_metadata=True)
    out = {}
    for card in history["messages"]:
        thread = await reader.conversations_replies(
            channel=channel, ts=card["ts"], include_all_metadata=True
        )
        tags = [m["metadata"] for m in thread["messages"]]
        assert {t["event_type"] for t in tags} == {EVENT_TYPE}
        out[card["ts"]] = [t["event_payload"]["outbox_id"] for t in tags]
    return out


def writes_per_second(slack: DevSlack, channel: str) -> int:
    """The most writes Slack took for one channel in any one second."""
    times = sorted(
        c.at
        for c in slack.calls
        if c.method in ("chat.postMessage", "chat.update")
        and c.response.get("ok")
        and c.args.get("channel") == channel
    )
    return max((sum(1 for t in times[i:] if t - start < 1.0) for i, start in enumerate(times)))


async def test_ten_minutes_of_outage_deliver_everything_once_in_order(world: World) -> None:
    world.outage.begin(world.clock.now())
    await world.alert(*(firing(n) for n in range(6)))
    await world.alert(*(firing(n) for n in range(6)))  # seen again: the cards change
    await world.alert(firing(0, "resolved"), firing(1, "resolved"))
    await world.grace.healer.drain()
    queued = await world.grace.store.outbox_pending()
    assert queued >= 6 * 2 + 2 * 2, "cards, their first words, the all-clears"
    world.clock.frozen = False

    await world.slack.wait_for(lambda: not world.slack.outage, timeout=30)
    await world.grace.outbox.idle()

    assert world.outage.starts is not None
    recovered = world.outage.starts + ERRORS_FOR + LIMITED_FOR
    posts = [
        c for c in world.slack.calls if c.method == "chat.postMessage" and c.response.get("ok")
    ]
    assert min(c.at for c in posts) >= recovered.timestamp(), "nothing got through the outage"
    assert [c.response for c in world.slack.calls if "outage" in c.response][-1] == {"outage": 429}

    with sqlite3.connect(world.grace.settings.db) as db:
        rows = db.execute(
            "SELECT id, incident_id, state FROM outbox WHERE kind != 'update_card' ORDER BY id"
        ).fetchall()
    assert {state for _, _, state in rows} == {"sent"}
    told: dict[int, list[int]] = {}
    for row_id, incident_id, _ in rows:
        told.setdefault(incident_id, []).append(row_id)
    threads = {**await tagged(world.slack, CHANNEL), **await tagged(world.slack, OTHER)}
    assert sorted(threads.values()) == sorted(told.values()), "once each, in the order told"
    adopted = world.grace.metrics.registry.get_sample_value(
        "grace_slack_requests_total", {"method": "chat.postMessage", "outcome": "adopted"}
    )
    assert adopted == 2, "the two posts whose answers were lost were found, not re-posted"

    for channel in (CHANNEL, OTHER):
        assert writes_per_second(world.slack, channel) <= BURST + RATE
    assert not [c for c in world.slack.calls if c.response.get("error") == "ratelimited"]
    seen = [
        world.slack.render_message(m) for c in (CHANNEL, OTHER) for m in world.slack.messages(c)
    ]
    assert sum("Cleared by itself" in card for card in seen) == 2, "updates show the end"
    assert sum("2 received" in card for card in seen) == 4, "... and every repeat"
