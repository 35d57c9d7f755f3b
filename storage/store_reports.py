"""`SqliteStore`'s reads for people: `/grace` reports and App Home."""

from __future__ import annotations

from datetime import datetime

from engine.models import Incident
from engine.records import HomeRows, IncidentStory, Page, StatusRows, Viewer
from engine.stats import StatsReport, periods
from storage import home as home_rows
from storage import reports as report_rows
from storage import stats as stats_rows
from storage.db import time_text
from storage.store_core import StoreCore


class ReportsMixin(StoreCore):
    """What `/grace` commands and the Home show, each read as of one moment."""

    async def status_rows(self, limit: int = 20) -> StatusRows:
        """`/grace status`: open incidents by state, the first `limit` pending
        approvals (soonest deadline first) and the outbox backlog, as of one moment."""
        async with self._reading() as conn:
            return await report_rows.consistent(conn, lambda c: report_rows.status(c, limit))

    async def incident_page(self, *, open_only: bool, limit: int = 20) -> Page[Incident]:
        """`/grace incidents`: the newest `limit` incidents (not ended, or all) and their total."""
        async with self._reading() as conn:
            return await report_rows.consistent(
                conn, lambda c: report_rows.incident_page(c, open_only, limit)
            )

    async def stats(self, *, until: datetime, days: int) -> StatsReport:
        """`/grace stats`: the last `days` days up to `until`, and as many before them,
        read in one transaction."""
        current, previous = periods(until, days)
        async with self._reading() as conn:
            return await report_rows.consistent(
                conn, lambda c: stats_rows.stats_report(c, current, previous)
            )

    async def incident_story(self, incident_id: int) -> IncidentStory | None:
        """`/grace incidents N`: everything stored about one incident; None if unknown."""
        async with self._reading() as conn:
            return await report_rows.consistent(conn, lambda c: report_rows.story(c, incident_id))

    # -- App Home ------------------------------------------------------------

    async def home_opened(self, user: str, channel: str) -> None:
        """`user` opened GRACE's Home (its channel is `channel`): committed before
        Slack is answered, so a restart still republishes theirs."""
        now = time_text(self._clock.now())
        await self._write(lambda conn: home_rows.opened(conn, user, channel, now))

    async def home_notice(self, user: str, text: str) -> bool:
        """GRACE's answer to `user` on their Home; False when they never opened it."""
        now = time_text(self._clock.now())
        return await self._write(lambda conn: home_rows.notice(conn, user, text, now))

    async def home_viewers(self) -> list[Viewer]:
        """Everyone who ever opened the Home: one row a person."""
        return [home_rows.viewer_from_row(r) for r in await self._fetchall(home_rows.VIEWERS)]

    async def home_rows(
        self, week: tuple[datetime, datetime], *, pending_limit: int, open_limit: int
    ) -> HomeRows:
        """What every Home shows, as of one moment; `week` is [start, end)."""
        bounds = (time_text(week[0]), time_text(week[1]))
        async with self._reading() as conn:
            return await report_rows.consistent(
                conn, lambda c: home_rows.rows(c, bounds, pending_limit, open_limit)
            )
