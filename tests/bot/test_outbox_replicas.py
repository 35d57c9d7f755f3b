"""Two GRACEs on one database, each with its outbox worker, against one DevSlack:
every queued write is posted once, whichever worker claims it, and a row whose
worker died goes out once its claim runs out, found in Slack if it got there.

Real parts: two SQLite stores on one file, two workers with the Slack SDK's
client, DevSlack over HTTP with its per-channel rate limit. Time is the
simulated clock of tests/bot/test_outbox_worker.py, one for both workers and
DevSlack.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.devslack import DevSlack
from bot.metrics import Metrics
from bot.outbox import LEASE_S, OutboxWorker
from bot.outbox_lookup import tag
from engine.models import Alert
from storage.store import SqliteStore
from tests.bot.test_outbox_worker import CHANNEL, USER, SimClock


@dataclass
class Replicas:
    slack: DevSlack
    clock: SimClock
    stores: list[SqliteStore]
    workers: list[OutboxWorker]
    metrics: list[Metrics]

    def start(self, replica: str, on: int) -> None:
        """A worker for `replica`, on the `on`th store (and its metrics)."""
        client = AsyncWebClient(token=self.slack.token, base_url=self.slack.api_url)
        worker = OutboxWorker(
            self.stores[on], client, self.metrics[on], self.clock, replica=replica
        )
        worker.start()
        self.workers.append(worker)

    async def delivered(self) -> None:
        await asyncio.wait_for(asyncio.gather(*(w.idle() for w in self.workers)), 20)

    def counted(self, outcome: str) -> float:
        return sum(
            m.registry.get_sample_value(
                "grace_slack_requests_total", {"method": "chat.postMessage", "outcome": outcome}
            )
            or 0.0
            for m in self.metrics
        )


@pytest.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[Replicas]:
    clock = SimClock()
    slack = DevSlack(
        token="xoxb-replicas",
        signing_secret="secret",
        channels={CHANNEL: "alerts"},
        users={USER: "alice"},
        post_rate_per_channel=1.0,
        clock=clock.seconds,
    )
    await slack.start()
    stores = [await SqliteStore.open(tmp_path / "grace.db", clock) for _ in range(2)]
    made = Replicas(slack, clock, stores, [], [Metrics(), Metrics()])
    try:
        yield made
    finally:
        for worker in made.workers:
            await worker.stop(flush_within=0)
        for store in stores:
            await store.close()
        await slack.stop()


async def test_two_workers_post_every_write_once(replicas: Replicas) -> None:
    """Eight incidents' cards, each with a thread reply, queued through both GRACEs;
    one card's answer is lost on the way back, so it is looked up, not posted again."""
    a, b = replicas.stores
    incidents = []
    for n in range(8):
        alert = Alert(
            source="generic",
            source_key=f"k{n}",
            name="DiskFilling",
            labels={"host": f"web-{n}"},
            channel=CHANNEL,
            received_at=replicas.clock.now(),
        )
        [intake] = await a.ingest_alerts([alert], f"d{n}")
        assert intake.incident is not None
        incidents.append(intake.incident)
    rows: dict[int, int] = {}  # outbox row -> incident
    for n, incident in enumerate(incidents):
        via = (a, b)[n % 2]
        card = await via.enqueue(CHANNEL, "post_card", {}, incident_id=incident.id)
        await via.enqueue(CHANNEL, "thread", {"text": f"story {n}"}, incident_id=incident.id)
        rows[card or 0] = incident.id
    replicas.slack.lose_answer("chat.postMessage", match=lambda args: "thread_ts" not in args)
    replicas.start("grace-a", on=0)
    replicas.start("grace-b", on=1)
    await replicas.delivered()

    cards = [m for m in replicas.slack.messages(CHANNEL) if m.blocks]
    reader = AsyncWebClient(token=replicas.slack.token, base_url=replicas.slack.api_url)
    history = await reader.conversations_history(channel=CHANNEL, include_all_metadata=True)
    posted = Counter(m["metadata"]["event_payload"]["outbox_id"] for m in history["messages"])
    assert posted == Counter(rows.keys()), "each card posted once"
    for card in cards:
        [reply] = replicas.slack.thread(CHANNEL, card.ts)
        assert reply.text.startswith("story ")
    for incident in incidents:
        known = await b.card_of(incident.id)
        assert known is not None and known.ts in {card.ts for card in cards}
    assert replicas.counted("adopted") == 1, "the lost answer's card was found, not re-posted"


async def test_a_row_whose_worker_died_goes_out_once_after_its_lease(
    replicas: Replicas,
) -> None:
    """A GRACE claimed a notice, posted it and died before it could say so. Another
    GRACE leaves the row alone while the claim lasts, then finds it in Slack."""
    store = replicas.stores[0]
    row = await store.enqueue(CHANNEL, "notice", {"text": "GRACE is paused."})
    later = await store.enqueue(CHANNEL, "notice", {"text": "GRACE is resumed."})
    claimed_at = replicas.clock.now()
    [item] = await store.claim_outbox(
        "grace-dead#1", claimed_at, rate=1, burst=3, lease_s=LEASE_S, limit=10
    )
    poster = AsyncWebClient(token=replicas.slack.token, base_url=replicas.slack.api_url)
    await poster.chat_postMessage(channel=CHANNEL, text=item.payload["text"], metadata=tag(item))
    replicas.start("grace-b", on=1)
    await replicas.delivered()

    texts = [m.text for m in replicas.slack.messages(CHANNEL)]
    assert texts == ["GRACE is paused.", "GRACE is resumed."], "once each, in order"
    assert replicas.clock.now() - claimed_at >= timedelta(seconds=LEASE_S), "not before its end"
    assert await store.sent_ts(row or 0) == replicas.slack.messages(CHANNEL)[0].ts
    assert await store.sent_ts(later or 0) is not None
    assert replicas.counted("adopted") == 1
