"""The clock that drives time-based decisions (reminders, expiry) from the database.

Each tick asks the database what is due, so a deadline that passed while GRACE
was down is honoured at the first tick after start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from engine.healer import Healer

log = logging.getLogger(__name__)


@dataclass
class Scheduler:
    healer: Healer
    every_s: float
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="grace-scheduler")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.healer.tick()
            except Exception:
                log.exception("scheduled tick failed; trying again at the next one")
            await asyncio.sleep(self.every_s)
