"""What GRACE did over a period, and how that compares with the period before it.

Read by `/grace stats`, `grace stats` and (later) the weekly report. Every rate
and percentile is None when there is nothing to take it over, never a
division by zero: an empty week says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from engine.models import Frozen, PlaybookStats

PERIODS = {"7d": 7, "30d": 30, "90d": 90}
"""The periods `/grace stats` offers, in days: whole UTC hours, up to the end of
the hour in progress (see `periods`)."""


class PeriodStats(Frozen):
    """Incidents opened in [since, until), and heals that ended in it.

    Counted by UTC hour: a bound inside an hour stands for the start of that
    hour, so bounds on the hour are exact (`periods` puts them there)."""

    since: datetime
    until: datetime
    incidents: int
    resolved: int
    healed_alone: int
    """Resolved with nobody's approval (tier 1)."""
    approved: int
    rejected: int
    expired: int
    needed_human: int
    """Left to people: no plan, a failed rollback (safe hold) or an interrupted heal."""
    heals: int
    heal_successes: int
    resolve_p50_s: float | None
    resolve_p90_s: float | None
    approve_p50_s: float | None
    approve_p90_s: float | None
    top_alerts: tuple[tuple[str, int], ...]
    playbooks: tuple[PlaybookStats, ...]
    """Each playbook's heals that ended in the period, the most run first."""

    @property
    def success_rate(self) -> float | None:
        return self.heal_successes / self.heals if self.heals else None


class StatsReport(Frozen):
    current: PeriodStats
    previous: PeriodStats
    """The period of the same length just before, for the trend."""


def periods(
    until: datetime, days: int
) -> tuple[tuple[datetime, datetime], tuple[datetime, datetime]]:
    """The last `days` days up to the end of the UTC hour `until` is in, and the same
    length before them: statistics are counted by hour (see PeriodStats), so the
    hour in progress counts whole and both periods start and end on the hour."""
    if days < 1:
        raise ValueError("a period is at least one day")
    utc = until.astimezone(UTC)
    hour = utc.replace(minute=0, second=0, microsecond=0)
    end = (hour if hour == utc else hour + timedelta(hours=1)).astimezone(until.tzinfo)
    length = timedelta(days=days)
    return (end - length, end), (end - 2 * length, end - length)


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]
