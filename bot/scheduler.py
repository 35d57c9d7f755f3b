"""The clock that drives time-based decisions (reminders, expiry, taking over the
runs of a replica that died, the weekly report) from the database.

Each tick asks the database what is due, so a deadline (or a report's time)
that passed while GRACE was down is honoured at the first tick after start.
Housekeeping chores (such as forgetting old deliveries) run at start and then
every `chore_every_s`.

Several replicas may share the database: the ticks and chores then run in one
of them at a time, the one holding the lease named `scheduler`. Each step
renews it first (its TTL is `lease_ttl_s`); a replica that finds
it held by another does nothing this time round, and takes it once the
holder stops renewing (it died) or lets it go (a clean stop). Local chores
(purging this host's quarantine) run in every replica, lease or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from engine.api import Healer
from engine.storage_ports import LeaseStore

log = logging.getLogger(__name__)

Chore = Callable[[], Awaitable[object]]

LEASE = "scheduler"
"""The lease whose holder runs the ticks and chores."""

DEFAULT_LEASE_S = 15.0
"""The lease's TTL unless told: longer than any one tick or chore takes, since
each is begun under a lease renewed just before it."""


@dataclass(frozen=True)
class Lease:
    """Where the scheduler's lease is held, and by whom (this replica's name)."""

    store: LeaseStore
    holder: str
    name: str = LEASE


@dataclass
class Scheduler:
    healer: Healer
    every_s: float
    chores: Sequence[Chore] = ()
    chore_every_s: float = 3600.0
    ticks: Sequence[Chore] = ()
    """Run at every tick after the healer's, each on its own (one failing stops none)."""
    lease: Lease | None = None
    """Run ticks and chores only while holding it; None: always (GRACE alone)."""
    local_chores: Sequence[Chore] = ()
    """Chores about this host rather than the database: run in every replica."""
    lease_s: float = DEFAULT_LEASE_S
    """How long the lease outlives its last renewal (GRACE gives its replicas' liveness
    TTL: a replica silent that long is dead, its ticks taken over as its runs are)."""
    _task: asyncio.Task[None] | None = None
    _chores_due: float = field(default=0.0)
    _local_due: float = field(default=0.0)
    _holding: bool = field(default=False)

    @property
    def lease_ttl_s(self) -> float:
        """`lease_s`, and a few ticks at least: a replica that died stops the ticks
        that long at most."""
        return max(3 * self.every_s, self.lease_s)

    @property
    def holding(self) -> bool:
        """Whether this replica held the lease when it last asked."""
        return self._holding

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="grace-scheduler")

    async def stop(self) -> None:
        """Stop ticking and let the lease go, so another replica ticks at once."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.lease is not None and self._holding:
            self._holding = False
            try:
                await self.lease.store.release_lease(self.lease.name, self.lease.holder)
            except Exception:
                log.exception("the scheduler's lease was not released; it expires on its own")

    async def _run(self) -> None:
        while True:
            await self.step()
            await asyncio.sleep(self.every_s)

    async def step(self) -> bool:
        """One time round: the ticks, and the chores when due, under the lease (each
        begun only while it is held); then the local chores when due. Whether this
        replica held the lease throughout."""
        for tick in (self.healer.tick, *self.ticks):
            if not await self._hold():
                break
            try:
                await tick()
            except Exception:
                log.exception("scheduled tick failed; trying again at the next one")
        else:
            if time.monotonic() >= self._chores_due:
                self._chores_due = time.monotonic() + self.chore_every_s
                await self._do_chores(self.chores, under_lease=True)
        if time.monotonic() >= self._local_due:
            self._local_due = time.monotonic() + self.chore_every_s
            await self._do_chores(self.local_chores, under_lease=False)
        return self._holding

    async def _hold(self) -> bool:
        if self.lease is None:
            self._holding = True
            return True
        was = self._holding
        try:
            self._holding = await self.lease.store.hold_lease(
                self.lease.name, self.lease.holder, self.lease_ttl_s
            )
        except Exception:
            # Not knowing is not holding: better a tick late than two at once.
            log.exception("the scheduler's lease could not be renewed; not ticking")
            self._holding = False
        if self._holding != was:
            log.info(
                "%s the scheduler's lease",
                "took" if self._holding else "another replica holds",
            )
            if self._holding:
                self._chores_due = 0.0  # chores at once, as at a start
        return self._holding

    async def _do_chores(self, chores: Sequence[Chore], *, under_lease: bool) -> None:
        for chore in chores:
            if under_lease and not await self._hold():
                return
            try:
                await chore()
            except Exception:
                log.exception("housekeeping failed; trying again in %s s", self.chore_every_s)
