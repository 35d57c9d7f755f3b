"""The inbox shared by replicas: what one accepted and never handled (it died in
between) is handled by another once a liveness TTL has passed, and never by the
replica handling it now."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.ack_first import AckFirst
from bot.inbox import Inbox
from storage.store import SqliteStore
from tests.storage.conftest import FakeClock

TTL = timedelta(seconds=30)


class Replica:
    """One replica's inbox on the shared database; its handler records and may wait."""

    def __init__(self, store: SqliteStore) -> None:
        self.tasks: list[asyncio.Task[Any]] = []
        self.inbox = Inbox(store, self._spawn, AckFirst(quiet_s=0, spawn=self._spawn))
        self.handled: list[str] = []
        self.started = asyncio.Event()
        self.gate = asyncio.Event()
        self.gate.set()
        self.inbox.handle("alert", self._handle)

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        self.tasks.append(asyncio.ensure_future(work))

    async def _handle(self, payload: dict[str, Any]) -> None:
        self.started.set()
        await self.gate.wait()
        self.handled.append(payload["text"])

    async def settle(self) -> None:
        while self.tasks:
            await self.tasks.pop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def stores(
    tmp_path: Path, clock: FakeClock
) -> AsyncIterator[tuple[SqliteStore, SqliteStore]]:
    one = await SqliteStore.open(tmp_path / "grace.db", clock, replica="grace-1")
    two = await SqliteStore.open(tmp_path / "grace.db", clock, replica="grace-2")
    yield one, two
    await one.close()
    await two.close()


async def test_a_dead_replicas_delivery_is_handled_once_its_ttl_passed(stores, clock):
    dead_store, live_store = stores
    # The dead replica committed a delivery (Slack got its 200) and died before handling it.
    await dead_store.accept_delivery("event:Ev1", "alert", {"text": "disk full"})
    live = Replica(live_store)

    assert await live.inbox.take_over(clock.now() - TTL) == 0  # it may still be handled
    clock.advance(TTL.total_seconds() + 1)
    assert await live.inbox.take_over(clock.now() - TTL) == 1
    await live.settle()
    assert live.handled == ["disk full"]
    assert await live_store.unhandled_deliveries() == []
    assert await live.inbox.take_over(clock.now() - TTL) == 0


async def test_a_delivery_being_handled_here_is_not_taken_over_by_itself(stores, clock):
    store, _ = stores
    slow = Replica(store)
    slow.gate.clear()  # its handler is still at work when the tick comes
    assert await slow.inbox.accept("event:Ev2", "alert", {"text": "slow one"})
    await slow.started.wait()  # its handler is at work, waiting on the gate
    clock.advance(TTL.total_seconds() + 1)

    assert await slow.inbox.take_over(clock.now() - TTL) == 0
    slow.gate.set()
    await slow.settle()
    assert slow.handled == ["slow one"]
