"""The durable Slack outbox: every write is stored first, then delivered here.

A Slack outage or a restart delays messages; it never loses them. Each
channel's writes go out in order (its oldest pending write first), at most
about one a second with short bursts, honouring 429 Retry-After and backing off
on 5xx and network errors. Cards are rendered from the database when sent, so
a coalesced update always shows the incident as it is now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiohttp
from slack_sdk.errors import SlackApiError, SlackObjectFormationError
from slack_sdk.web.async_client import AsyncWebClient

from bot.blocks import card_blocks, card_text
from bot.metrics import Metrics
from engine.models import Incident, Pause
from storage.store import OutboxItem, SqliteStore

log = logging.getLogger(__name__)

RATE_PER_CHANNEL = 1.0
BURST_PER_CHANNEL = 3
MAX_BACKOFF_S = 60.0
IDLE_WAKE_S = 5.0  # a safety net: enqueues wake the worker at once anyway
ROUND_GAP_S = 0.01  # in a storm every enqueue wakes the worker; one round serves them all


class _Refused(Exception):
    """Slack (or the message itself) refuses this write for good; retrying cannot help."""


@dataclass
class _Bucket:
    """A token bucket per channel; a 429 closes it until Retry-After has passed."""

    rate: float
    burst: int
    tokens: float = 0.0
    at: float = 0.0
    closed_until: float = 0.0

    def wait(self, now: float) -> float:
        """Seconds until a write may go out (0 when it may go now)."""
        self.tokens = min(float(self.burst), self.tokens + (now - self.at) * self.rate)
        self.at = now
        return max(self.closed_until - now, (1 - self.tokens) / self.rate, 0.0)

    def take(self) -> None:
        self.tokens -= 1

    def settle(self, now: float) -> None:
        """Refill again only from Slack's answer: Slack counted the write when it
        arrived, somewhere before now, so this bucket never runs ahead of Slack's."""
        self.at = now


@dataclass
class OutboxWorker:
    store: SqliteStore
    client: AsyncWebClient
    metrics: Metrics
    rate: float = RATE_PER_CHANNEL
    burst: int = BURST_PER_CHANNEL
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _stopping: bool = False
    _refresh_waiting: set[int] = field(default_factory=set)

    def wake(self) -> None:
        self._wake.set()

    def refresh_waiting(self, incident_id: int) -> bool:
        """True when an update of this card waits in the outbox and has not started
        going out: it renders the card when sent, so it will show any later change."""
        return incident_id in self._refresh_waiting

    def refresh_queued(self, incident_id: int) -> None:
        self._refresh_waiting.add(incident_id)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="grace-outbox")

    async def stop(self, flush_within: float = 5.0) -> None:
        """Deliver what can go within `flush_within`; the rest waits in the database."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(flush_within):
                await self.idle()
        self._stopping = True
        self.wake()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def idle(self) -> None:
        """Wait until nothing is pending (for tests, the demo and a clean shutdown)."""
        while await self.store.outbox_pending():
            self.wake()
            await asyncio.sleep(0.02)

    async def _run(self) -> None:
        while not self._stopping:
            started = self.clock()
            try:
                delay = await self._round()
            except Exception:
                log.exception("outbox round failed; trying again shortly")
                delay = 1.0
            self._wake.clear()
            await asyncio.sleep(max(ROUND_GAP_S - (self.clock() - started), 0.0))
            if self._wake.is_set():
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    async def _round(self) -> float:
        """Send every channel's head that its bucket allows; return how long to sleep."""
        now = self.clock()
        heads = await self.store.outbox_heads(datetime.now(UTC))
        ready: list[OutboxItem] = []
        waits: list[float] = []
        for item in heads:
            bucket = self._buckets.setdefault(
                item.channel, _Bucket(self.rate, self.burst, self.burst, now)
            )
            wait = bucket.wait(now)
            if wait > 0:
                waits.append(wait)
                continue
            bucket.take()
            ready.append(item)
        await asyncio.gather(*(self._deliver(item) for item in ready))
        if ready:
            return 0.0
        next_due = await self.store.outbox_next_due()
        if next_due is not None:
            waits.append(max((next_due - datetime.now(UTC)).total_seconds(), 0.0))
        return min(waits, default=IDLE_WAKE_S)

    async def _deliver(self, item: OutboxItem) -> None:
        method = _METHOD[item.kind]
        try:
            ts = await self._attempt(item)
        except _Refused as exc:
            log.error("Slack write %s (%s) dropped: %s", item.id, item.kind, exc)
            await self.store.drop(item.id, str(exc))
            self.metrics.slack_request(method, "refused")
        except SlackApiError as exc:
            await self._failed(item, method, exc)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            await self._retry(item, method, "error", f"{type(exc).__name__}: {exc}")
        else:
            await self.store.mark_sent(item.id, ts)
            self.metrics.slack_request(method, "ok")

    async def _failed(self, item: OutboxItem, method: str, exc: SlackApiError) -> None:
        status = exc.response.status_code
        error = str(exc.response.get("error", "")) if isinstance(exc.response.data, dict) else ""
        if status == 429:
            retry_after = _retry_after(exc)
            self._buckets[item.channel].closed_until = self.clock() + retry_after
            await self.store.retry_later(
                item.id, datetime.now(UTC) + timedelta(seconds=retry_after), "ratelimited"
            )
            self.metrics.slack_request(method, "ratelimited")
        elif status >= 500:
            await self._retry(item, method, "error", f"HTTP {status} {error}".strip())
        else:
            log.error("Slack refused write %s (%s): %s", item.id, item.kind, error or status)
            await self.store.drop(item.id, error or f"HTTP {status}")
            self.metrics.slack_request(method, "refused")

    async def _retry(self, item: OutboxItem, method: str, outcome: str, error: str) -> None:
        backoff = min(MAX_BACKOFF_S, 2.0**item.attempts) * random.uniform(0.5, 1.0)
        log.warning("Slack write %s failed (%s); retrying in %.1f s", item.id, error, backoff)
        await self.store.retry_later(item.id, datetime.now(UTC) + timedelta(seconds=backoff), error)
        self.metrics.slack_request(method, outcome)

    async def _attempt(self, item: OutboxItem) -> str | None:
        try:
            return await self._send(item)
        finally:
            self._buckets[item.channel].settle(self.clock())

    async def _send(self, item: OutboxItem) -> str | None:
        if item.kind == "update_card":
            # From here on a change needs a new update: this one may read too early.
            self._refresh_waiting.discard(item.incident_id)
        if item.kind == "ephemeral":
            await self.client.chat_postEphemeral(
                channel=item.channel, user=str(item.user_id), text=item.payload["text"]
            )
            return None
        assert item.incident_id is not None
        if item.kind == "post_card":
            incident = await self.store.get_incident(item.incident_id)
            if incident is None:
                raise _Refused(f"incident {item.incident_id} does not exist")
            # A person's words are answered in their thread; an alert gets a card of its own.
            response = await self.client.chat_postMessage(
                channel=item.channel,
                text=card_text(incident),
                blocks=_blocks(incident, await self.store.paused()),
                thread_ts=incident.alert.thread_ts,
            )
            return str(response["ts"])
        card = await self.store.card_of(item.incident_id)
        if card is None:
            raise _Refused(f"the card of incident {item.incident_id} was never posted")
        if item.kind == "update_card":
            incident = await self.store.get_incident(item.incident_id)
            assert incident is not None
            await self.client.chat_update(
                channel=card.channel,
                ts=card.ts,
                text=card_text(incident),
                blocks=_blocks(incident, await self.store.paused()),
            )
        else:
            await self.client.chat_postMessage(
                channel=card.channel, thread_ts=card.story_ts, text=item.payload["text"]
            )
        return None


_METHOD = {
    "post_card": "chat.postMessage",
    "update_card": "chat.update",
    "thread": "chat.postMessage",
    "ephemeral": "chat.postEphemeral",
}


def _blocks(incident: Incident, pause: Pause | None) -> list[dict[str, object]]:
    try:
        return [block.to_dict() for block in card_blocks(incident, pause)]
    except SlackObjectFormationError as exc:
        raise _Refused(f"the card breaks Slack's block rules: {exc}") from None


def _retry_after(exc: SlackApiError) -> float:
    try:
        return max(float(exc.response.headers.get("Retry-After", 1)), 0.0)
    except (TypeError, ValueError):
        return 1.0
