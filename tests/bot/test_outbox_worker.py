"""The outbox worker against DevSlack: every write once as a person sees it, whatever
answer Slack loses; answers to clicks on their own, one per burst.

Real parts: the SQLite store, the notifier the engine uses, the worker with the
Slack SDK's client, DevSlack over HTTP. Time is simulated (`SimClock`): the
worker's waits move it, so backoffs and Retry-After take no real time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.devslack import DevSlack, Message
from bot.metrics import Metrics
from bot.notifier import OutboxNotifier
from bot.outbox import BURST_PER_CHANNEL, OutboxWorker
from bot.outbox_lookup import EVENT_TYPE
from engine.models import Alert, Incident
from engine.story import NeedsHuman
from storage.store import SqliteStore

CHANNEL, USER = "C0ALERTS", "U0ALICE"


class SimClock:
    """Time that passes only when the outbox worker waits: minutes of Slack outage
    in a blink, with every stored time and Slack's rate limits on the same clock.

    It starts an hour behind the wall clock, which DevSlack's message ts follow:
    GRACE's clock running behind Slack's is what a lookup by time must survive."""

    def __init__(self, on_advance: Callable[[datetime], None] | None = None) -> None:
        self.current = datetime.now(UTC) - timedelta(hours=1)
        self.frozen = False  # while frozen, waits take a moment of real time instead
        self.on_advance = on_advance  # told each new time, before anyone acts on it

    def now(self) -> datetime:
        return self.current

    def seconds(self) -> float:
        return self.current.timestamp()

    async def sleep(self, seconds: float) -> None:
        if self.frozen:
            await asyncio.sleep(0.01)
            return
        self.current += timedelta(seconds=seconds)
        if self.on_advance is not None:
            self.on_advance(self.current)
        await asyncio.sleep(0)


@dataclass
class Rig:
    slack: DevSlack
    store: SqliteStore
    worker: OutboxWorker
    notifier: OutboxNotifier
    clock: SimClock
    metrics: Metrics
    alerts: int = 0

    async def incident(self) -> Incident:
        self.alerts += 1
        n = self.alerts
        alert = Alert(
            source="generic",
            source_key=f"k{n}",
            name="DiskFilling",
            labels={"host": f"web-{n}"},
            channel=CHANNEL,
            received_at=self.clock.now(),
        )
        [intake] = await self.store.ingest_alerts([alert], f"d{n}")
        assert intake.incident is not None
        return intake.incident

    def cards(self) -> list[Message]:
        return [m for m in self.slack.messages(CHANNEL) if m.blocks]

    def counted(self, outcome: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "grace_slack_requests_total", {"method": "chat.postMessage", "outcome": outcome}
        )
        return value or 0.0

    async def restart(self) -> None:
        """A new worker, as a new GRACE starts one, on the same database."""
        await self.worker.stop(flush_within=0)
        self.worker = make_worker(self.slack, self.store, self.metrics, self.clock)
        self.notifier = OutboxNotifier(self.store, self.worker)
        self.worker.start()


def make_worker(
    slack: DevSlack, store: SqliteStore, metrics: Metrics, clock: SimClock
) -> OutboxWorker:
    client = AsyncWebClient(token=slack.token, base_url=slack.api_url)
    return OutboxWorker(store, client, metrics, clock)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    clock = SimClock()
    slack = DevSlack(
        token="xoxb-outbox",
        signing_secret="secret",
        channels={CHANNEL: "alerts"},
        users={USER: "alice"},
        post_rate_per_channel=1.0,
        clock=clock.seconds,
    )
    await slack.start()
    store = await SqliteStore.open(tmp_path / "grace.db", clock)
    metrics = Metrics()
    worker = make_worker(slack, store, metrics, clock)
    worker.start()
    made = Rig(slack, store, worker, OutboxNotifier(store, worker), clock, metrics)
    try:
        yield made
    finally:
        await made.worker.stop(flush_within=0)
        await store.close()
        await slack.stop()


async def delivered(rig: Rig) -> None:
    await asyncio.wait_for(rig.worker.idle(), 10)


async def test_every_post_names_its_outbox_row(rig: Rig) -> None:
    incident = await rig.incident()
    await rig.notifier.post_card(incident)
    await rig.notifier.tell_thread(incident, NeedsHuman(reason="no playbook"))
    await delivered(rig)
    [card] = rig.cards()
    reader = AsyncWebClient(token=rig.slack.token, base_url=rig.slack.api_url)
    thread = await reader.conversations_replies(
        channel=CHANNEL, ts=card.ts, include_all_metadata=True
    )
    tags = [m["metadata"] for m in thread["messages"]]
    assert {tag["event_type"] for tag in tags} == {EVENT_TYPE}
    assert [tag["event_payload"]["outbox_id"] for tag in tags] == [1, 2]


async def test_a_card_whose_answer_was_lost_is_found_not_posted_again(rig: Rig) -> None:
    incident = await rig.incident()
    rig.slack.lose_answer("chat.postMessage")
    await rig.notifier.post_card(incident)
    await rig.notifier.tell_thread(incident, NeedsHuman(reason="no playbook"))
    await delivered(rig)
    [card] = rig.cards()
    card_of = await rig.store.card_of(incident.id)
    assert card_of is not None and card_of.ts == card.ts, "the card found is the incident's"
    assert [m.text for m in rig.slack.thread(CHANNEL, card.ts)] == [
        ":raising_hand: *Needs a human.* no playbook"
    ]
    methods = [c.method for c in rig.slack.calls]
    assert methods == ["chat.postMessage", "conversations.history", "chat.postMessage"]
    assert (rig.counted("ok"), rig.counted("error")) == (1, 1)


async def test_a_thread_reply_whose_answer_was_lost_is_told_once(rig: Rig) -> None:
    incident = await rig.incident()
    rig.slack.lose_answer("chat.postMessage", match=lambda args: "thread_ts" in args)
    await rig.notifier.post_card(incident)
    for reason in ("first", "second"):
        await rig.notifier.tell_thread(incident, NeedsHuman(reason=reason))
    await delivered(rig)
    [card] = rig.cards()
    thread = rig.slack.thread(CHANNEL, card.ts)
    assert [m.text.rsplit(" ", 1)[-1] for m in thread] == ["first", "second"]
    assert "conversations.replies" in [c.method for c in rig.slack.calls]


async def test_a_write_killed_mid_call_is_adopted_by_the_next_worker(rig: Rig) -> None:
    incident = await rig.incident()
    rig.slack.lose_answer("chat.postMessage", hang=0.5)
    await rig.notifier.post_card(incident)
    await rig.slack.wait_for(lambda: rig.cards())
    await rig.restart()  # the first worker dies before Slack's answer reaches it
    await rig.notifier.update_card(incident)
    await delivered(rig)
    [card] = rig.cards()
    assert (await rig.store.card_of(incident.id)) == (CHANNEL, card.ts, None)
    assert card.edits, "the update went to the card that was found"
    assert rig.counted("adopted") == 1


async def test_a_5xx_is_looked_up_then_posted_once(rig: Rig) -> None:
    incident = await rig.incident()
    rig.slack.fail_next("chat.postMessage", "internal_error", status=500, retry_after=None)
    await rig.notifier.post_card(incident)
    await delivered(rig)
    assert len(rig.cards()) == 1
    methods = [c.method for c in rig.slack.calls]
    assert methods == ["chat.postMessage", "conversations.history", "chat.postMessage"]


async def test_a_lookup_slack_refuses_for_good_posts_rather_than_lose(rig: Rig) -> None:
    incident = await rig.incident()
    rig.slack.fail_next("chat.postMessage", "internal_error", status=500, retry_after=None)
    rig.slack.fail_next("conversations.history", "missing_scope", status=200, retry_after=None)
    await rig.notifier.post_card(incident)
    await delivered(rig)
    assert len(rig.cards()) == 1


async def test_an_ephemeral_whose_answer_was_lost_is_not_sent_twice(rig: Rig) -> None:
    rig.slack.lose_answer("chat.postEphemeral")
    await rig.notifier.tell_user(CHANNEL, USER, "You have already decided on this plan.")
    await delivered(rig)
    assert len(rig.slack.ephemerals(USER)) == 1
    assert [c.method for c in rig.slack.calls] == ["chat.postEphemeral"]


async def test_an_ephemeral_slack_says_it_failed_is_sent_again(rig: Rig) -> None:
    rig.slack.fail_next("chat.postEphemeral", "internal_error", status=503, retry_after=None)
    await rig.notifier.tell_user(CHANNEL, USER, "You have already decided on this plan.")
    await delivered(rig)
    assert len(rig.slack.ephemerals(USER)) == 1
    assert [c.method for c in rig.slack.calls] == ["chat.postEphemeral"] * 2


async def test_answers_to_clicks_never_wait_behind_the_story(rig: Rig) -> None:
    incident = await rig.incident()
    rig.clock.frozen = True  # no token comes back, no Retry-After passes, till unfrozen
    rig.slack.fail_next("chat.postMessage", status=429, retry_after=600)
    await rig.notifier.post_card(incident)
    await rig.slack.wait_for(lambda: rig.slack.calls)
    refusal = "Someone else decided on this plan first."
    await asyncio.gather(*(rig.notifier.tell_user(CHANNEL, USER, refusal) for _ in range(1000)))
    await rig.notifier.tell_user(CHANNEL, "U0BOB", refusal)
    assert await rig.store.outbox_pending() <= 3, "the card, and one answer each at most"
    await rig.slack.wait_for(
        lambda: {m.recipient for m in rig.slack.ephemerals()} == {USER, "U0BOB"}
    )
    assert rig.cards() == [], "the card still waits for its Retry-After"
    rig.clock.frozen = False
    await delivered(rig)
    assert len(rig.cards()) == 1
    # Once, or (on a busy machine) once more per answer already on its way: the frozen
    # clock lets the person's lane send at most its burst, then one waiting answer.
    assert len(rig.slack.ephemerals(USER)) <= BURST_PER_CHANNEL + 1
