"""Two GRACEs on one database share their breakers: the resilience layer of each
(real purgatory breakers, our wall clock) with its own store on the same SQLite
file as its board."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import purgatory.domain.model
import pytest

from engine.resilience import BreakerChange, CircuitOpen, Resilience, circuit_of
from storage.store import SqliteStore
from tests.engine.test_resilience import FAST, TARGET, Changes, Flaky, Wall
from tests.storage.conftest import FakeClock

CIRCUIT = circuit_of(TARGET)
COOL_DOWN = FAST.breaker_cooldown_s


@pytest.fixture
def wall(monkeypatch: pytest.MonkeyPatch) -> Wall:
    clock = Wall()
    monkeypatch.setattr(purgatory.domain.model, "time", SimpleNamespace(time=clock))
    return clock


@pytest.fixture
async def replicas(
    db_path: Path, clock: FakeClock, wall: Wall
) -> AsyncIterator[tuple[Resilience, Resilience]]:
    """Replica A and replica B: a store each on one database, each its own breakers."""
    stores = [await SqliteStore.open(db_path, clock) for _ in range(2)]
    try:
        a, b = (Resilience({"fake": FAST}, wall=wall, board=store) for store in stores)
        yield a, b
    finally:
        for store in stores:
            await store.close()


async def open_on(replica: Resilience, changes: Changes, why: str = "disk on fire") -> None:
    for _ in range(FAST.breaker_failures):
        with pytest.raises(ValueError):
            await replica.call(TARGET, Flaky(ValueError(why)), on_change=changes)


def after(wall: Wall) -> datetime:
    """When a breaker opened now lets a trial call through."""
    return datetime.fromtimestamp(wall.now + COOL_DOWN, UTC)


async def test_opened_by_one_replica_refused_by_the_other_and_closed_for_both_by_its_trial(
    replicas: tuple[Resilience, Resilience], wall: Wall
) -> None:
    a, b = replicas
    on_a, on_b = Changes(), Changes()
    await open_on(a, on_a)
    retry_at = after(wall)
    assert on_a == [BreakerChange(CIRCUIT, "open", retry_at, "ValueError: disk on fire")]

    untouched = Flaky()
    with pytest.raises(CircuitOpen) as refused:
        await b.call(TARGET, untouched, on_change=on_b)
    assert untouched.calls == 0
    assert refused.value.retry_at == retry_at
    assert await b.open_breakers() == {CIRCUIT: retry_at}

    wall.now += COOL_DOWN + 1
    trial = Flaky()
    assert await b.call(TARGET, trial, on_change=on_b) == "ok"
    assert trial.calls == 1
    assert on_b == [BreakerChange(CIRCUIT, "closed")]
    assert await a.open_breakers() == {}

    # A follows: its next call is an ordinary one (no second "closed"), and its
    # breaker counts failures from zero again: one failure does not reopen it.
    assert await a.call(TARGET, Flaky(), on_change=on_a) == "ok"
    with pytest.raises(ValueError):
        await a.call(TARGET, Flaky(ValueError("blip")), on_change=on_a)
    assert len(on_a) == 1
    assert await b.open_breakers() == {}


async def test_one_replica_makes_the_trial_call_and_its_failure_reopens_it_for_both(
    replicas: tuple[Resilience, Resilience], wall: Wall
) -> None:
    a, b = replicas
    on_a = Changes()
    await open_on(a, on_a)
    wall.now += COOL_DOWN + 1

    gate, started = asyncio.Event(), asyncio.Event()

    async def failing_trial() -> str:
        started.set()
        await gate.wait()
        raise ValueError("still on fire")

    first = asyncio.create_task(a.call(TARGET, failing_trial, on_change=on_a))
    await started.wait()
    claimed = after(wall)  # the trial's claim moved the board's time on by a cool-down
    untouched = Flaky()
    with pytest.raises(CircuitOpen, match="trial call is in progress"):
        await a.call(TARGET, untouched)
    with pytest.raises(CircuitOpen) as refused:
        await b.call(TARGET, untouched)
    assert (untouched.calls, refused.value.retry_at) == (0, claimed)
    wall.now += 1  # the trial takes a second, then fails
    gate.set()
    with pytest.raises(ValueError, match="still on fire"):
        await first

    retry_at = after(wall)
    assert on_a[-1] == BreakerChange(CIRCUIT, "open", retry_at, "ValueError: still on fire")
    untouched = Flaky()
    with pytest.raises(CircuitOpen) as refused:
        await b.call(TARGET, untouched)
    assert (untouched.calls, refused.value.retry_at) == (0, retry_at)
    assert await b.open_breakers() == await a.open_breakers() == {CIRCUIT: retry_at}


async def test_a_failed_trial_on_the_other_replica_reopens_it_with_a_new_time(
    replicas: tuple[Resilience, Resilience], wall: Wall
) -> None:
    a, b = replicas
    await open_on(a, Changes())
    wall.now += COOL_DOWN + 1

    on_b = Changes()
    with pytest.raises(ValueError):
        await b.call(TARGET, Flaky(ValueError("still on fire")), on_change=on_b)

    retry_at = after(wall)
    assert on_b == [BreakerChange(CIRCUIT, "open", retry_at, "ValueError: still on fire")]
    untouched = Flaky()
    with pytest.raises(CircuitOpen) as refused:
        await a.call(TARGET, untouched)
    assert (untouched.calls, refused.value.retry_at) == (0, retry_at)

    # The next cool-down's trial, on A this time, closes it for both.
    wall.now += COOL_DOWN + 1
    assert await a.call(TARGET, Flaky()) == "ok"
    assert await b.call(TARGET, Flaky()) == "ok"
    assert await b.open_breakers() == {}


async def test_restores_pass_a_breaker_another_replica_opened(
    replicas: tuple[Resilience, Resilience],
) -> None:
    a, b = replicas
    await open_on(a, Changes())

    assert await b.call(TARGET, Flaky(), breaker=False) == "ok"


async def test_after_the_cool_down_only_one_replica_makes_the_trial_call(
    replicas: tuple[Resilience, Resilience], wall: Wall
) -> None:
    a, b = replicas
    await open_on(a, Changes())
    wall.now += COOL_DOWN + 1
    gate = asyncio.Event()
    calls = 0

    async def trial() -> str:
        nonlocal calls
        calls += 1
        await gate.wait()
        return "healthy"

    tasks = [asyncio.create_task(replica.call(TARGET, trial)) for replica in (a, b)]
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    [refused], [trying] = done, pending
    assert isinstance(refused.exception(), CircuitOpen)
    gate.set()
    assert await trying == "healthy"
    assert calls == 1
    assert await a.open_breakers() == {}
