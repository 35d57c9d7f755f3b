"""A store's side of several replicas on one database: leases, heartbeats, and the
runs whose runner is gone (storage/leases.py). Which replica this store writes
for is `StoreCore.replica`; the move into a running state records it as the
incident's runner (storage/store_incidents.py)."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta

from engine.models import Incident
from storage import leases
from storage.rows import incident_from_row
from storage.store_core import StoreCore


class ReplicasMixin(StoreCore):
    """`LeaseStore` (engine/storage_ports.py) and `Store.orphaned_runs`."""

    async def hold_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        """Take the lease if it is free, expired or `holder`'s (renewing it); False while
        another holder's is in force. The claim is one compare-and-set write."""
        if ttl_s <= 0:
            raise ValueError(f"a lease's TTL must be positive, not {ttl_s}")
        now = self._clock.now()
        until = now + timedelta(seconds=ttl_s)

        def op(conn: sqlite3.Connection) -> bool:
            return leases.hold(conn, name, holder, now, until)

        return await self._write(op)

    async def release_lease(self, name: str, holder: str) -> None:
        def op(conn: sqlite3.Connection) -> None:
            leases.release(conn, name, holder)

        await self._write(op)

    async def heartbeat(self, replica: str, started_at: datetime) -> None:
        now = self._clock.now()

        def op(conn: sqlite3.Connection) -> None:
            leases.beat(conn, replica, started_at, now)

        await self._write(op)

    async def orphaned_runs(self, replica: str, ttl_s: float, *, own: bool) -> list[Incident]:
        """Running incidents nobody carries on any more (see `Store.orphaned_runs`)."""
        cutoff = self._clock.now() - timedelta(seconds=ttl_s)
        sql, params = leases.orphaned(replica, own=own, cutoff=cutoff)
        return [incident_from_row(row) for row in await self._fetchall(sql, params)]
