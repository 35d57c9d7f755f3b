"""A survey of executors answers for every one, whatever each does."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

import pytest

from engine.availability import Availabilities, survey
from engine.models import Availability
from tests.engine.fakes import FakeExecutor, FixedClock


class Hanging(FakeExecutor):
    async def available(self) -> Availability:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class Broken(FakeExecutor):
    async def available(self) -> Availability:
        raise ConnectionError("socket gone")


@dataclass
class Counting(FakeExecutor):
    """Answers once `gate` opens (at once without one), counting the checks."""

    gate: asyncio.Event | None = None
    checks: int = 0

    async def available(self) -> Availability:
        self.checks += 1
        if self.gate is not None:
            await self.gate.wait()
        return Availability(ok=True)


class Missing(FakeExecutor):
    async def available(self) -> Availability:
        return Availability(ok=False, reason="no kubeconfig")


async def test_every_executor_gets_an_answer_in_name_order() -> None:
    executors = {
        "zeta": FakeExecutor(name="zeta"),
        "hang": Hanging(name="hang"),
        "boom": Broken(name="boom"),
        "k8s": Missing(name="k8s"),
    }

    answers = await survey(executors, timeout_s=0.05)

    assert list(answers) == ["boom", "hang", "k8s", "zeta"]
    assert answers["zeta"] == Availability(ok=True)
    assert answers["k8s"] == Availability(ok=False, reason="no kubeconfig")
    assert answers["hang"].reason == "did not say within 0.05 s whether it can act"
    assert answers["boom"].reason == "its check failed: ConnectionError: socket gone"


async def test_an_answer_is_reused_until_it_is_stale() -> None:
    clock, executor = FixedClock(), Counting()
    availabilities = Availabilities(clock, ttl=timedelta(seconds=10))

    assert [await availabilities.of(executor) for _ in range(50)] == [Availability(ok=True)] * 50
    assert executor.checks == 1

    clock.current += timedelta(seconds=10)
    assert (await availabilities.of(executor)).ok
    assert executor.checks == 2


async def test_overlapping_asks_share_one_check() -> None:
    executor = Counting(gate=asyncio.Event())
    availabilities = Availabilities(FixedClock())

    asks = [asyncio.create_task(availabilities.of(executor)) for _ in range(20)]
    await asyncio.sleep(0)
    executor.gate.set()

    assert {a.ok for a in await asyncio.gather(*asks)} == {True}
    assert executor.checks == 1


async def test_a_caller_that_gives_up_leaves_the_check_to_the_others() -> None:
    executor = Counting(gate=asyncio.Event())
    availabilities = Availabilities(FixedClock())
    impatient = asyncio.create_task(availabilities.of(executor))
    patient = asyncio.create_task(availabilities.of(executor))
    await asyncio.sleep(0)

    impatient.cancel()
    executor.gate.set()

    assert (await patient).ok
    with pytest.raises(asyncio.CancelledError):
        await impatient
    assert executor.checks == 1


async def test_a_hanging_or_broken_check_is_an_answer_not_a_failure() -> None:
    availabilities = Availabilities(FixedClock(), timeout_s=0.05)

    hung = await availabilities.of(Hanging(name="hang"))
    broke = await availabilities.of(Broken(name="boom"))

    assert hung == Availability(ok=False, reason="did not say within 0.05 s whether it can act")
    assert broke == Availability(ok=False, reason="its check failed: ConnectionError: socket gone")
