"""The durable Slack outbox: every write is stored first, then delivered here, once.

A Slack outage or a restart delays messages; it never loses them, nor shows one
twice. Each lane's writes go out in order: a channel's at most about one a
second with short bursts, and each person's ephemeral answers in a lane of
their own, so a burst of clicks never delays an incident's story. 429
Retry-After is honoured, 5xx and network errors backed off. Cards render from
the database when sent, so a coalesced update shows the incident as it is now.

Several GRACEs (replicas) on one database share one outbox: each worker
claims the rows it sends (`claim_outbox`: one write, each lane's head and a
token of the lane's pace, which all replicas share), so no two post the same
row and a channel's pace holds for all of them together. A claim lasts a
lease; a row whose sender died is claimed again once it runs out (or at once
when that replica starts again), and is looked up in Slack as below.

Exactly once, as a person sees it: a message is claimed, and so marked
'sending' (committed), before it is posted, and carries message metadata
naming its outbox row. When Slack's answer is lost (a crash, a timeout, a
dropped connection, a 5xx) the row stays 'sending', and its next attempt
looks for the message in the channel's history or the thread first
(bot/outbox_lookup.py): found, it is adopted (a card becomes the incident's
card) instead of being posted again. An update is idempotent and simply sent
again. An ephemeral cannot be looked up (Slack keeps no history of them): one
whose answer never came is not sent again (it was a moment's private answer,
and the person can ask again), while one Slack answered with a 5xx, saying it
failed, is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import random
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import outbox_lookup, uploads
from bot.cards import CardReader
from bot.metrics import Metrics
from bot.outbox_render import Refused, Render, rendered
from bot.rollup import rollup_message
from engine.api import ApprovalPolicy
from engine.ports import Clock
from engine.records import OutboxItem
from engine.storage_ports import CardStore

log = logging.getLogger(__name__)

RATE_PER_CHANNEL = 1.0
BURST_PER_CHANNEL = 3
MAX_BACKOFF_S = 60.0
IDLE_WAKE_S = 5.0
"""The longest the worker sleeps: this replica's enqueues wake it at once, and what
another replica queued (and could not send, having died) is seen within this."""
ROUND_GAP_S = 0.01  # in a storm every enqueue wakes the worker; one round serves them all
LEASE_S = 90.0
"""How long a claim holds a row for its worker. A delivery is a Slack call, or a
lookup and then a call, each cut off by the Slack client's 30 s timeout: a live
worker settles its row well within this, so another replica takes over only a
row whose sender is gone (or stuck past any answer Slack could still give).
Shorter would risk two replicas posting one row; longer, a dead replica's rows
waiting longer (a restarted replica takes its own back at once)."""
CLAIM_LIMIT = 50
"""Lanes one round claims at most: the Slack calls one worker makes at once, and
what is left for the other replicas meanwhile."""


@dataclass
class _Attempt:
    """One try at one row, and what it tells about whether Slack holds the write."""

    item: OutboxItem
    method: str
    in_doubt: bool
    """An earlier call may have delivered it, and no lookup has ruled that out."""
    posted: bool = False
    """This attempt made the write call (its answer may be lost)."""


@dataclass
class OutboxWorker:
    store: CardStore
    client: AsyncWebClient
    metrics: Metrics
    clock: Clock
    rate: float = RATE_PER_CHANNEL
    burst: int = BURST_PER_CHANNEL
    policy: ApprovalPolicy = field(default_factory=ApprovalPolicy)
    """Who a waiting card names as able to approve it."""
    replica: str = "local"
    """This GRACE's name among the replicas sharing the database."""
    claimer: str = field(init=False)
    """Who this worker's claims name: its replica and a suffix of its own."""
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _stopping: bool = False
    _refresh_waiting: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        # The SDK re-sends a request whose connection dropped; a re-sent post is a
        # second message. Every retry here is the worker's own, after a lookup.
        self.client = copy.copy(self.client)
        self.client.retry_handlers = []
        self._render = Render(self.store, CardReader(self.store, self.policy))
        self.claimer = f"{self.replica}#{uuid.uuid4().hex[:12]}"

    def wake(self) -> None:
        self._wake.set()

    async def refresh_waiting(self, key: str) -> bool:
        """True when an update of this card waits in the outbox and no worker has
        claimed it: it renders the card when sent, so it will show any later change.
        This replica knows what it queued; the store says whether it still waits
        (any replica's worker may have taken it since)."""
        if key not in self._refresh_waiting:
            return False
        if await self.store.outbox_waiting(key):
            return True
        self._refresh_waiting.discard(key)
        return False

    def refresh_queued(self, key: str) -> None:
        """`key` is a card's or a rollup's coalesce key: "card:N", "rollup:N"."""
        self._refresh_waiting.add(key)

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
        await self._release("at stop")  # what was in flight goes to the others at once

    async def _release(self, when: str) -> None:
        """End this replica's claims: rows it was sending are claimable (in doubt) now."""
        try:
            released = await self.store.release_outbox_claims(self.replica, self.clock.now())
        except Exception:
            log.exception("could not release replica %s's outbox claims %s", self.replica, when)
            return
        if released:
            log.info("released %d outbox rows replica %s held %s", released, self.replica, when)

    async def idle(self) -> None:
        """Wait until nothing is pending (for tests, the demo and a clean shutdown)."""
        while await self.store.outbox_pending():
            self.wake()
            await asyncio.sleep(0.02)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        await self._release("at start")  # this replica's earlier process is gone
        while not self._stopping:
            started = loop.time()
            try:
                delay = await self._round()
            except Exception:
                log.exception("outbox round failed; trying again shortly")
                delay = 1.0
            self._wake.clear()
            # Real time, not the clock's: the gap gives a storm's enqueues, made on this
            # loop, a moment to join the next round; a simulated clock's sleep has none.
            await asyncio.sleep(max(ROUND_GAP_S - (loop.time() - started), 0.0))
            if not self._wake.is_set():
                await self._pause(delay)

    async def _pause(self, delay: float) -> None:
        """Wait `delay` seconds of the clock, or until an enqueue wakes the worker."""
        waits = [
            asyncio.ensure_future(self.clock.sleep(delay)),
            asyncio.ensure_future(self._wake.wait()),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    async def _round(self) -> float:
        """Send every lane's head this worker could claim; return how long to sleep."""
        at = self.clock.now()
        claimed = await self.store.claim_outbox(
            self.claimer,
            at,
            rate=self.rate,
            burst=self.burst,
            lease_s=LEASE_S,
            limit=CLAIM_LIMIT,
        )
        await asyncio.gather(*(self._deliver(item) for item in claimed))
        if claimed:
            return 0.0
        next_due = await self.store.outbox_next_due(at, rate=self.rate, burst=self.burst)
        if next_due is None:
            return IDLE_WAKE_S
        return min(max((next_due - self.clock.now()).total_seconds(), 0.0), IDLE_WAKE_S)

    async def _deliver(self, item: OutboxItem) -> None:
        attempt = _Attempt(item, _METHOD[item.kind], in_doubt=item.sending)
        try:
            ts = await self._send(attempt)
        except Refused as exc:
            log.error("Slack write %s (%s) dropped: %s", item.id, item.kind, exc)
            await self.store.drop(item.id, str(exc), claimer=self.claimer)
            self.metrics.slack_request(attempt.method, "refused")
        except SlackApiError as exc:
            await self._failed(attempt, exc)
        except aiohttp.ClientConnectorError as exc:  # never reached Slack
            await self._retry(attempt, f"{type(exc).__name__}: {exc}", attempt.in_doubt)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            await self._unknown(attempt, f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a bug or the store: tried again later, in doubt if posted
            log.exception("Slack write %s (%s) failed unexpectedly", item.id, item.kind)
            await self._retry(
                attempt, f"{type(exc).__name__}: {exc}", attempt.in_doubt or attempt.posted
            )
        else:
            await self.store.mark_sent(item.id, ts, claimer=self.claimer)
            found = attempt.in_doubt and not attempt.posted
            self.metrics.slack_request(_METHOD[item.kind], "adopted" if found else "ok")

    async def _failed(self, attempt: _Attempt, exc: SlackApiError) -> None:
        item, status = attempt.item, exc.response.status_code
        error = str(exc.response.get("error", "")) if isinstance(exc.response.data, dict) else ""
        if status == 429:  # Slack did not take this call, nor will it take the lane's
            retry_after = _retry_after(exc)
            await self.store.retry_later(
                item.id,
                self.clock.now() + timedelta(seconds=retry_after),
                "ratelimited",
                maybe_delivered=attempt.in_doubt,
                claimer=self.claimer,
                hold_lane=True,
            )
            self.metrics.slack_request(attempt.method, "ratelimited")
        elif status >= 500 and item.kind == "ephemeral":
            # Slack says it failed; the rare one it showed anyway is seen twice, by one person.
            await self._retry(attempt, f"HTTP {status} {error}".strip(), maybe_delivered=False)
        elif status >= 500:
            await self._unknown(attempt, f"HTTP {status} {error}".strip())
        else:
            log.error("Slack refused write %s (%s): %s", item.id, item.kind, error or status)
            await self.store.drop(item.id, error or f"HTTP {status}", claimer=self.claimer)
            self.metrics.slack_request(attempt.method, "refused")

    async def _unknown(self, attempt: _Attempt, error: str) -> None:
        """No answer (or, but for an ephemeral, a 5xx): Slack may have carried it out."""
        item = attempt.item
        if item.kind == "ephemeral" and attempt.posted:
            log.warning("ephemeral %s may not have reached %s (%s)", item.id, item.user_id, error)
            await self.store.drop(
                item.id, f"outcome unknown ({error}); not sent twice", claimer=self.claimer
            )
            self.metrics.slack_request(attempt.method, "error")
            return
        await self._retry(attempt, error, attempt.in_doubt or attempt.posted)

    async def _retry(self, attempt: _Attempt, error: str, maybe_delivered: bool) -> None:
        item = attempt.item
        backoff = min(MAX_BACKOFF_S, 2.0**item.attempts) * random.uniform(0.5, 1.0)
        log.warning("Slack write %s failed (%s); retrying in %.1f s", item.id, error, backoff)
        not_before = self.clock.now() + timedelta(seconds=backoff)
        await self.store.retry_later(
            item.id, not_before, error, maybe_delivered=maybe_delivered, claimer=self.claimer
        )
        self.metrics.slack_request(attempt.method, "error")

    async def _send(self, attempt: _Attempt) -> str | None:
        """Slack's ts for the write (None for what has none); raises as Slack does."""
        item = attempt.item
        if item.kind == "update_card":
            channel, ts, card = await self._render.card_update(item)
            await self.client.chat_update(channel=channel, ts=ts, **card)
            return None
        if item.kind == "update":  # a notice redrawn in place: its ts, text and blocks
            await self.client.chat_update(channel=item.channel, **item.payload)
            return None
        if item.kind == "rollup":
            rollup = await self._render.rollup(item)
            if rollup.ts is not None:  # posted: updated in place
                attempt.method = "chat.update"
                await self.client.chat_update(
                    channel=rollup.channel, ts=rollup.ts, **rendered(rollup_message, rollup)
                )
                return None
        if item.kind == "upload":
            await self._upload(attempt)
            return None
        if item.kind == "ephemeral":
            if attempt.in_doubt:
                raise Refused("an earlier try may have reached the person; not sent twice")
            attempt.posted = True
            await self.client.chat_postEphemeral(
                channel=item.channel, user=str(item.user_id), text=item.payload["text"]
            )
            return None
        message = await self._render.message(item)
        if attempt.in_doubt:
            thread_ts = message.get("thread_ts")
            attempt.method = "conversations.replies" if thread_ts else "conversations.history"
            found = await outbox_lookup.find(self.client, item, message["channel"], thread_ts)
            if found is not None:
                log.info("Slack write %s was delivered before; adopting %s", item.id, found)
                return found
            attempt.in_doubt, attempt.method = False, _METHOD[item.kind]
        attempt.posted = True
        response = await self.client.chat_postMessage(**message, metadata=outbox_lookup.tag(item))
        return str(response["ts"])

    async def _upload(self, attempt: _Attempt) -> None:
        """A file shared in the thread of the row it names (`after`), sent before it."""
        item = attempt.item
        thread_ts = await self.store.sent_ts(int(item.payload["after"]))
        if thread_ts is None:
            raise Refused(f"outbox row {item.payload['after']} it goes under was never posted")
        if attempt.in_doubt:
            attempt.method = "conversations.replies"
            if await uploads.shared(self.client, item, thread_ts, item.payload["filename"]):
                return
            attempt.in_doubt, attempt.method = False, uploads.METHOD
        attempt.posted = True
        await uploads.upload(self.client, item.channel, thread_ts, item.payload)


_METHOD = {
    "notice": "chat.postMessage",
    "rollup": "chat.postMessage",  # chat.update once it is posted
    "post_card": "chat.postMessage",
    "update_card": "chat.update",
    "update": "chat.update",
    "thread": "chat.postMessage",
    "ephemeral": "chat.postEphemeral",
    "upload": uploads.METHOD,
}


def _retry_after(exc: SlackApiError) -> float:
    try:
        return max(float(exc.response.headers.get("Retry-After", 1)), 0.0)
    except (TypeError, ValueError):
        return 1.0
