"""`SqliteStore`'s weekly report: its numbers, and the claim that posts it once."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from engine.weekly import Period, WeeklyReport
from storage import reports as report_rows
from storage import weekly as weekly_rows
from storage.db import parse_time, time_text
from storage.store_core import StoreCore


class WeeklyMixin(StoreCore):
    """The week's report, read in one transaction and claimed by one replica."""

    async def weekly_report(self, period: Period, tz: str, days: list[Period]) -> WeeklyReport:
        """The report's numbers for `period` and each of its `days`, in one transaction."""
        async with self._reading() as conn:
            return await report_rows.consistent(
                conn, lambda c: weekly_rows.read_report(c, period, tz, days)
            )

    async def installed_at(self) -> datetime:
        """When this database was created (its first migration)."""
        row = await self._fetchone("SELECT applied_at FROM schema_version ORDER BY version LIMIT 1")
        assert row is not None, "an open store is migrated"
        return parse_time(row[0])

    async def report_claimed(self, period: Period) -> bool:
        return await self._fetchone(weekly_rows.REPORTED, (time_text(period.end),)) is not None

    async def claim_report(
        self, period: Period, channel: str, message: Mapping[str, Any], chart: Mapping[str, Any]
    ) -> bool:
        """Claim the period and queue its message and chart at once; False if claimed before."""
        now_text = time_text(self._clock.now())
        return await self._write(
            lambda conn: weekly_rows.claim(conn, period, channel, message, chart, now_text)
        )
