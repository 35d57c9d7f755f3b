"""Fixtures for a running DevSlack stand-in (see bot/devslack/)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest

from bot.devslack import DevSlack

DevSlackFactory = Callable[..., Coroutine[Any, Any, DevSlack]]


@pytest.fixture
async def devslack_factory() -> AsyncIterator[DevSlackFactory]:
    """Start DevSlack instances with overrides on port 0; every one is stopped afterwards."""
    started: list[DevSlack] = []

    async def make(**overrides: Any) -> DevSlack:
        options: dict[str, Any] = {
            "token": "xoxb-devslack-test",
            "signing_secret": "devslack-test-signing-secret",
            "channels": {"C0ALERTS": "alerts", "C0OPS": "ops"},
            "users": {"U0ALICE": "alice", "U0BOB": "bob"},
            **overrides,
        }
        slack = DevSlack(**options)
        await slack.start()
        started.append(slack)
        return slack

    try:
        yield make
    finally:
        for slack in started:
            await slack.stop()


@pytest.fixture
async def devslack(devslack_factory: DevSlackFactory) -> DevSlack:
    """A started DevSlack with channels C0ALERTS (#alerts), C0OPS (#ops), users alice and bob."""
    return await devslack_factory()
