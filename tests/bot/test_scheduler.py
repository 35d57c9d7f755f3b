"""The scheduler runs housekeeping at start and survives a chore that fails; with
replicas on one database, its ticks and chores run in the lease's holder alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bot.scheduler import DEFAULT_LEASE_S, Lease, Scheduler
from engine.storage_ports import GraceStore
from storage.factory import open_store
from tests.storage.contract.conftest import ContractClock


class QuietHealer:
    async def tick(self) -> None:
        return None


async def test_chores_run_at_start_and_a_failing_one_does_not_stop_the_others() -> None:
    ran = asyncio.Event()

    async def broken() -> None:
        raise OSError("disk gone")

    async def purge() -> None:
        ran.set()

    scheduler = Scheduler(QuietHealer(), every_s=60, chores=[broken, purge])  # type: ignore[arg-type]
    scheduler.start()
    try:
        async with asyncio.timeout(5):
            await ran.wait()
    finally:
        await scheduler.stop()


# -- replicas: the ticks run in the one holding the lease -----------------------------

EVERY_S = 1.0


@dataclass
class CountingHealer:
    ticks: list[str] = field(default_factory=list)
    name: str = ""

    async def tick(self) -> None:
        self.ticks.append(self.name)


@pytest.fixture
def clock() -> ContractClock:
    return ContractClock()


@pytest.fixture
async def two_stores(tmp_path: Path, clock: ContractClock) -> AsyncIterator[list[GraceStore]]:
    """Two replicas' stores on one database, on one clock."""
    stores = [await open_store(tmp_path / "grace.db", clock, replica=n) for n in ("a", "b")]
    try:
        yield stores
    finally:
        for store in stores:
            await store.close()


def replica(store: GraceStore, name: str, fired: list[str], log: list[str]) -> Scheduler:
    async def forget() -> None:
        log.append(f"chore:{name}")

    async def purge_here() -> None:
        log.append(f"local:{name}")

    return Scheduler(
        CountingHealer(fired, name),  # type: ignore[arg-type]
        every_s=EVERY_S,
        chores=[forget],
        local_chores=[purge_here],
        lease=Lease(store, name),
    )


async def test_two_schedulers_on_one_database_tick_once_a_period(
    two_stores: list[GraceStore], clock: ContractClock
) -> None:
    fired: list[str] = []
    log: list[str] = []
    a, b = (replica(s, n, fired, log) for s, n in zip(two_stores, "ab", strict=True))
    assert a.lease_ttl_s == DEFAULT_LEASE_S

    for _ in range(10):
        assert [await a.step(), await b.step()] == [True, False]
        clock.advance(EVERY_S)
    assert fired == ["a"] * 10, "once a period, by the holder"
    # Chores once (at the start, the next are an hour away), by the holder; local ones
    # in every replica.
    assert sorted(log) == ["chore:a", "local:a", "local:b"]

    # a dies (stops without a word): b ticks only once a's lease expired.
    fired.clear()
    periods = 0
    while not await b.step():
        periods += 1
        clock.advance(EVERY_S)
    assert periods >= DEFAULT_LEASE_S - 2 * EVERY_S and fired == ["b"]
    assert log.count("chore:b") == 1, "the new holder's chores run at once"
    assert not await a.step(), "a is back: b holds the lease now"
    assert fired == ["b"]

    # A clean stop lets it go: a takes it at its next step, no TTL waited.
    await b.stop()
    assert await a.step() and fired == ["b", "a"]
    await a.stop()
    assert await b.step()


async def test_a_scheduler_that_loses_its_lease_stops_ticking(
    two_stores: list[GraceStore], clock: ContractClock
) -> None:
    fired: list[str] = []
    a = replica(two_stores[0], "a", fired, [])
    assert await a.step()
    # Its lease expired while it stalled, and b took it: a runs nothing more.
    clock.advance(a.lease_ttl_s)
    assert await two_stores[1].hold_lease("scheduler", "b", a.lease_ttl_s)
    assert not await a.step() and not a.holding
    assert fired == ["a"]


async def test_a_lease_that_cannot_be_renewed_is_not_held() -> None:
    class Unreachable:
        async def hold_lease(self, name: str, holder: str, ttl_s: float) -> bool:
            raise OSError("database unreachable")

        async def release_lease(self, name: str, holder: str) -> None:
            raise AssertionError("never held: nothing to release")

    fired: list[str] = []
    scheduler = Scheduler(
        CountingHealer(fired),  # type: ignore[arg-type]
        every_s=EVERY_S,
        lease=Lease(Unreachable(), "a"),  # type: ignore[arg-type]
    )
    assert not await scheduler.step()
    await scheduler.stop()
    assert fired == []
