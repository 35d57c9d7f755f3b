from __future__ import annotations

import asyncio
from datetime import UTC, datetime


class SystemClock:
    """The wall clock, and real waiting: what GRACE runs on outside tests."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
