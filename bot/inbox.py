"""Durable before acknowledged: what Slack delivers is committed before Slack hears back.

Slack never sends a delivery again once it got its answer, so an alert posted
in an alert channel, an Approve or Dry run click, a submitted rejection and a
`/grace` command that changes something are a row of the inbox
(storage/inbox.py, group-committed) before the listener returns and Bolt
answers; the work runs after. A delivery accepted but not handled when GRACE
died is handled at its next start, and one Slack sends again (its retry after
a slow answer) is recognised by its key and not handled twice.

Handlers are registered by the listener module of their surface and must be
safe to run twice: a kill after the work and before its row is marked
handled runs it again at start-up (intake is idempotent by delivery key,
decisions by person and plan, heal requests by their trigger).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from datetime import datetime
from typing import Any

from bot.ack_first import AckFirst
from engine.records import Delivery
from engine.storage_ports import InboxStore

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[None]]


class Inbox:
    """`acks` holds the work back while Slack's requests are answered (bot/ack_first.py)."""

    def __init__(
        self,
        store: InboxStore,
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
        acks: AckFirst,
    ):
        self._store = store
        self._spawn = spawn
        self._acks = acks
        self._handlers: dict[str, Handler] = {}
        self._running: set[int] = set()
        """Deliveries this replica is handling now: never taken over from itself."""

    def handle(self, kind: str, handler: Handler) -> None:
        """Deliveries of `kind` are handled by `handler(payload)`."""
        if kind in self._handlers:
            raise ValueError(f"inbox kind {kind!r} has a handler already")
        self._handlers[kind] = handler

    async def accept(self, key: str, kind: str, payload: Mapping[str, Any]) -> bool:
        """Commit a delivery, then handle it after the caller answers Slack.

        False when a delivery with this key was accepted before: Slack sent it
        again, and it is (or was) handled once.
        """
        if kind not in self._handlers:
            raise ValueError(f"no handler for inbox kind {kind!r}")
        delivery_id = await self._store.accept_delivery(key, kind, payload)
        if delivery_id is None:
            return False
        delivery = Delivery(delivery_id, kind, dict(payload))
        self._acks.defer(lambda: self._spawn(self._run(delivery)))
        return True

    def later(self, work: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Run `work()`, which answers a request already acked, once the acks let it."""
        self._acks.defer(lambda: self._spawn(work()))

    async def resume(self) -> int:
        """At start-up, before Slack can deliver anything new: what was accepted but
        not handled is handled after this returns, oldest first. Read first, so a
        delivery accepted from now on is handled by its own `accept` alone."""
        pending = await self._store.unhandled_deliveries()
        self._spawn(self._run_all(pending))
        return len(pending)

    async def take_over(self, accepted_before: datetime) -> int:
        """Deliveries another replica accepted before `accepted_before` (a liveness TTL
        ago) and never marked handled: it died in between. They are handled here, as a
        start-up handles its own; handlers are safe to run twice."""
        stale = [
            d
            for d in await self._store.unhandled_deliveries(accepted_before)
            if d.id not in self._running
        ]
        self._running.update(d.id for d in stale)
        self._spawn(self._run_all(stale))
        return len(stale)

    async def _run_all(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            await self._run(delivery)

    async def _run(self, delivery: Delivery) -> None:
        self._running.add(delivery.id)
        try:
            await self._handle(delivery)
        finally:
            self._running.discard(delivery.id)

    async def _handle(self, delivery: Delivery) -> None:
        handler = self._handlers.get(delivery.kind)
        try:
            if handler is None:
                log.error("inbox delivery %s has no handler for %r", delivery.id, delivery.kind)
            else:
                await handler(delivery.payload)
        except Exception:
            # Marked handled all the same: a delivery that fails every time must not
            # fail again at every start. The log says which, without its payload.
            log.exception("inbox delivery %s (%s) failed", delivery.id, delivery.kind)
        await self._store.delivery_handled(delivery.id)
