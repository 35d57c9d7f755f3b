"""The weekly report: which period is due, and what a report holds.

A cron expression read in the team's time zone ends each period, so "0 9 * *
MON" in Europe/Berlin is Monday 09:00 there, summer and winter. The period due
at any moment is the one that ended at the latest firing: after a stop of
three weeks only the last week is due, so a missed period is reported once,
not once per week missed.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import Field, field_validator

from engine.autonomy import TierChange
from engine.models import Frozen
from engine.stats import PeriodStats, StatsReport

_JUST_AFTER = timedelta(seconds=1)
"""croniter's previous firing is strictly before its start: a firing at this very
second is due now."""


class ReportSchedule(Frozen):
    """`weekly_report:` in the config."""

    channel: str = Field(description="the channel the report is posted in")
    cron: str = Field("0 9 * * MON", description="when a period ends, in `tz`")
    tz: str = Field("UTC", description="an IANA time zone, such as Europe/Berlin")

    @field_validator("channel")
    @classmethod
    def _channel_id(cls, value: str) -> str:
        if not value or value[0] not in "CG" or not value.isalnum():
            raise ValueError(f"{value!r} is not a channel ID (such as C0123ABCD)")
        return value

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        if not croniter.is_valid(value) or len(value.split()) != 5:
            raise ValueError(f"{value!r} is not a cron expression of five fields")
        return value

    @field_validator("tz")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a known time zone") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)


class Period(Frozen):
    """[start, end), both aware; `end` names the period (it is claimed by it)."""

    start: datetime
    end: datetime

    def before(self) -> Period:
        """The period of the same length just before, for the trend."""
        return Period(start=self.start - (self.end - self.start), end=self.start)


def due_period(schedule: ReportSchedule, now: datetime) -> Period:
    """The period that ended at the schedule's latest firing at or before `now`."""
    firings = croniter(schedule.cron, now.astimezone(schedule.zone) + _JUST_AFTER)
    end = firings.get_prev(datetime)
    start = firings.get_prev(datetime)
    return Period(start=start, end=end)


def last_days(now: datetime, days: int, zone: ZoneInfo) -> Period:
    """The `days` days up to `now`, counted on the wall clock of `zone`."""
    end = now.astimezone(zone)
    return Period(start=end - timedelta(days=days), end=end)


def day_slices(period: Period, zone: ZoneInfo) -> list[Period]:
    """The period cut into days from its start, on `zone`'s wall clock (a day
    across a change of summer time is 23 or 25 hours); the last may be shorter."""
    start, end = period.start.astimezone(zone), period.end.astimezone(zone)
    slices = []
    while start < end:
        next_start = min((start + timedelta(days=1)).astimezone(zone), end)
        slices.append(Period(start=start, end=next_start))
        start = next_start
    return slices


class WeeklyReport(Frozen):
    """What the report tells: the numbers of `/grace stats` for its period, each
    day's, the tier changes, and the alerts people keep handling by hand."""

    period: Period
    tz: str
    stats: StatsReport
    days: tuple[PeriodStats, ...]
    tier_changes: tuple[TierChange, ...]
    """Playbooks whose tier changed in the period."""
    toil: tuple[tuple[str, int], ...]
    """Alerts that needed a human more than once with no playbook, the most first."""
