"""The resilience layer with real purgatory breakers, real tenacity retries and
real asyncio deadlines; only the wall clock is ours, so a cool-down can pass
without waiting for it."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from types import SimpleNamespace

import purgatory.domain.model
import pytest

from engine.models import Target
from engine.ports import TransientError
from engine.resilience import (
    BreakerChange,
    CircuitOpen,
    DeadlineExceeded,
    Policy,
    Resilience,
)

TARGET = Target(executor="fake", name="/srv/app.db")
FAST = Policy(
    attempts=3,
    backoff_s=0.001,
    backoff_max_s=0.002,
    deadline_s=5,
    breaker_failures=3,
    breaker_cooldown_s=60,
    rate_per_s=1000,
    concurrency=4,
)


class Wall:
    """Seconds since the epoch, moved by the test; purgatory reads it too."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 24, 3, 0, tzinfo=UTC).timestamp()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def wall(monkeypatch: pytest.MonkeyPatch) -> Wall:
    clock = Wall()
    monkeypatch.setattr(purgatory.domain.model, "time", SimpleNamespace(time=clock))
    return clock


@pytest.fixture
def resilience(wall: Wall) -> Resilience:
    return Resilience({"fake": FAST}, wall=wall)


class Flaky:
    """Fails with the given errors, in order, then answers "ok"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


class Changes(list[BreakerChange]):
    async def __call__(self, change: BreakerChange) -> None:
        self.append(change)


async def fail_until_open(resilience: Resilience, changes: Changes) -> None:
    for _ in range(FAST.breaker_failures):
        with pytest.raises(ValueError):
            await resilience.call(TARGET, Flaky(ValueError("disk on fire")), on_change=changes)


async def test_transient_errors_are_retried_then_succeed(resilience: Resilience) -> None:
    flaky = Flaky(TransientError("locked"), TransientError("locked"))

    assert await resilience.call(TARGET, flaky) == "ok"
    assert flaky.calls == 3


async def test_transient_errors_stop_after_the_policy_attempts(resilience: Resilience) -> None:
    flaky = Flaky(*(TransientError(f"locked {n}") for n in range(5)))

    with pytest.raises(TransientError, match="locked 2"):
        await resilience.call(TARGET, flaky)
    assert flaky.calls == FAST.attempts


async def test_permanent_errors_are_not_retried(resilience: Resilience) -> None:
    flaky = Flaky(ValueError("no such column"))

    with pytest.raises(ValueError, match="no such column"):
        await resilience.call(TARGET, flaky)
    assert flaky.calls == 1


async def test_persistent_errors_open_the_breaker_and_later_calls_fail_fast(
    resilience: Resilience, wall: Wall
) -> None:
    changes = Changes()
    await fail_until_open(resilience, changes)

    retry_at = datetime.fromtimestamp(wall.now + FAST.breaker_cooldown_s, UTC)
    assert changes == [
        BreakerChange("fake:/srv/app.db", "open", retry_at, "ValueError: disk on fire")
    ]
    untouched = Flaky()
    with pytest.raises(CircuitOpen, match="try it again after 2026-11-24 03:01:00 UTC") as raised:
        await resilience.call(TARGET, untouched, on_change=changes)
    assert untouched.calls == 0
    assert raised.value.retry_at == retry_at
    assert await resilience.open_breakers() == {"fake:/srv/app.db": retry_at}
    # Other targets keep working: the breaker is per target.
    other = Target(executor="fake", name="/srv/other.db")
    assert await resilience.call(other, Flaky()) == "ok"


async def test_after_the_cool_down_one_trial_call_closes_it(
    resilience: Resilience, wall: Wall
) -> None:
    changes = Changes()
    await fail_until_open(resilience, changes)
    wall.now += FAST.breaker_cooldown_s + 1

    gate = asyncio.Event()
    started = asyncio.Event()

    async def trial() -> str:
        started.set()
        await gate.wait()
        return "healthy"

    first = asyncio.create_task(resilience.call(TARGET, trial, on_change=changes))
    await started.wait()
    second = Flaky()
    with pytest.raises(CircuitOpen, match="trial call is in progress"):
        await resilience.call(TARGET, second)
    assert second.calls == 0
    gate.set()

    assert await first == "healthy"
    assert changes[-1] == BreakerChange("fake:/srv/app.db", "closed")
    assert await resilience.call(TARGET, Flaky()) == "ok"
    assert await resilience.open_breakers() == {}


async def test_a_failed_trial_opens_it_again_with_a_new_time(
    resilience: Resilience, wall: Wall
) -> None:
    changes = Changes()
    await fail_until_open(resilience, changes)
    wall.now += FAST.breaker_cooldown_s + 1

    with pytest.raises(ValueError):
        await resilience.call(TARGET, Flaky(ValueError("still on fire")), on_change=changes)

    reopened = changes[-1]
    assert reopened.state == "open"
    assert reopened.retry_at == datetime.fromtimestamp(wall.now + FAST.breaker_cooldown_s, UTC)
    with pytest.raises(CircuitOpen):
        await resilience.call(TARGET, Flaky())


async def test_a_hung_call_is_cut_at_its_deadline(resilience: Resilience) -> None:
    never = asyncio.Event()
    calls = 0

    async def hang() -> None:
        nonlocal calls
        calls += 1
        await never.wait()

    with pytest.raises(DeadlineExceeded, match=r"within 0\.05 s"):
        await resilience.call(TARGET, hang, deadline_s=0.05)
    assert calls == 1  # a hung call is not retried: it may still be acting


async def test_restores_pass_an_open_breaker(resilience: Resilience) -> None:
    await fail_until_open(resilience, Changes())

    assert await resilience.call(TARGET, Flaky(), breaker=False) == "ok"


async def test_concurrency_is_bounded_per_executor(wall: Wall) -> None:
    resilience = Resilience({"fake": FAST.model_copy(update={"concurrency": 2})}, wall=wall)
    gate = asyncio.Event()
    running = 0
    most = 0
    entered = asyncio.Queue[None]()

    async def work() -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        entered.put_nowait(None)
        await gate.wait()
        running -= 1

    targets = [Target(executor="fake", name=f"/srv/{n}.db") for n in range(5)]
    tasks = [asyncio.create_task(resilience.call(t, work)) for t in targets]
    await entered.get()
    await entered.get()
    assert entered.empty() and running == 2
    gate.set()
    await asyncio.gather(*tasks)
    assert most == 2


async def test_calls_are_rate_limited_per_executor(wall: Wall) -> None:
    resilience = Resilience({"fake": FAST.model_copy(update={"rate_per_s": 1})}, wall=wall)
    started: list[float] = []

    async def work() -> None:
        started.append(time.monotonic())

    await asyncio.gather(*(resilience.call(TARGET, work) for _ in range(2)))

    # One call per second: the second waited for the bucket to refill.
    assert started[1] - started[0] >= 0.5
