"""The store's circuit breakers shared by replicas (`engine.ports.BreakerBoard`)."""

from __future__ import annotations

from datetime import datetime

from storage import breakers
from storage.db import parse_time
from storage.store_core import StoreCore


class BreakersMixin(StoreCore):
    """Which target circuits are open for every GRACE on this database, and until when."""

    async def breaker_opened(self, circuit: str, retry_at: datetime, cause: str) -> None:
        now = self._clock.now()
        await self._write(lambda conn: breakers.opened(conn, circuit, retry_at, cause, now))

    async def breaker_closed(self, circuit: str) -> None:
        await self._write(lambda conn: breakers.closed(conn, circuit))

    async def breaker_open_until(self, circuit: str) -> datetime | None:
        row = await self._fetchone(f"{breakers.OPEN_SELECT} WHERE circuit = ?", (circuit,))
        return None if row is None else parse_time(row["retry_at"])

    async def claim_breaker_trial(self, circuit: str, seen: datetime, until: datetime) -> bool:
        return await self._write(lambda conn: breakers.claim_trial(conn, circuit, seen, until))

    async def open_breakers(self) -> dict[str, datetime]:
        rows = await self._fetchall(f"{breakers.OPEN_SELECT} ORDER BY circuit")
        return {row["circuit"]: parse_time(row["retry_at"]) for row in rows}
