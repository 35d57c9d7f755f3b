"""The clock that drives time-based decisions (reminders, expiry, the weekly
report) from the database.

Each tick asks the database what is due, so a deadline (or a report's time)
that passed while GRACE was down is honoured at the first tick after start.
Housekeeping chores (such as purging old quarantine) run at start and then
every `chore_every_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from engine.api import Healer

log = logging.getLogger(__name__)

Chore = Callable[[], Awaitable[object]]


@dataclass
class Scheduler:
    healer: Healer
    every_s: float
    chores: Sequence[Chore] = ()
    chore_every_s: float = 3600.0
    ticks: Sequence[Chore] = ()
    """Run at every tick after the healer's, each on its own (one failing stops none)."""
    _task: asyncio.Task[None] | None = None
    _chores_due: float = field(default=0.0)

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
            for tick in (self.healer.tick, *self.ticks):
                try:
                    await tick()
                except Exception:
                    log.exception("scheduled tick failed; trying again at the next one")
            if time.monotonic() >= self._chores_due:
                self._chores_due = time.monotonic() + self.chore_every_s
                await self._do_chores()
            await asyncio.sleep(self.every_s)

    async def _do_chores(self) -> None:
        for chore in self.chores:
            try:
                await chore()
            except Exception:
                log.exception("housekeeping failed; trying again in %s s", self.chore_every_s)
