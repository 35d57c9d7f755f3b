"""A survey of executors answers for every one, whatever each does."""

from __future__ import annotations

import asyncio

from engine.availability import survey
from engine.models import Availability
from tests.engine.fakes import FakeExecutor


class Hanging(FakeExecutor):
    async def available(self) -> Availability:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class Broken(FakeExecutor):
    async def available(self) -> Availability:
        raise ConnectionError("socket gone")


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
