"""This replica's heartbeat: every few seconds it tells the database it is alive.

The plans a replica runs are recorded as its own; the others leave them alone
while its heartbeat is younger than the liveness TTL (`replica_ttl_s`), and take
them over (end them `interrupted`, engine/recovery.py) once it is older: the
replica was killed. It beats every third of the TTL, so two beats may be lost
before it is taken for dead. The first beat is made before GRACE runs anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime

from engine.ports import Clock
from engine.storage_ports import LeaseStore

log = logging.getLogger(__name__)


@dataclass
class Heartbeat:
    store: LeaseStore
    replica: str
    ttl_s: float
    clock: Clock
    _task: asyncio.Task[None] | None = None
    _started_at: datetime | None = field(default=None)

    @property
    def every_s(self) -> float:
        return self.ttl_s / 3

    async def start(self) -> None:
        """Beat once (a failure here stops the start: the database is unreachable),
        then keep beating in the background."""
        self._started_at = self.clock.now()
        await self.beat()
        self._task = asyncio.create_task(self._run(), name="grace-heartbeat")

    async def beat(self) -> None:
        assert self._started_at is not None, "start() first"
        await self.store.heartbeat(self.replica, self._started_at)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            try:
                await self.beat()
            except Exception:
                log.exception("heartbeat failed; other replicas may take this one for dead")
