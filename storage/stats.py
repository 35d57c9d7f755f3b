"""The period statistics of engine/stats.py, read from pre-aggregated counts.

Incidents count in the period they were opened in; heals in the period they
ended in. Both are counted by UTC hour (storage/hourly.py), so both bounds are
floored to the hour: [since, until) reads the hours from since's up to, not
including, until's. One query reads a period, whatever its length and however
much history is stored.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

import aiosqlite

from engine.models import IncidentState as S
from engine.models import PlaybookStats
from engine.stats import PeriodStats, StatsReport
from storage import hourly
from storage.reports import fetch_all

TOP_ALERTS = 5

_NEEDED_HUMAN = (S.NEEDS_HUMAN.value, S.SAFE_HOLD.value, S.INTERRUPTED.value)

_HISTOGRAMS = ("resolve_s", "approve_s")

Histogram = list[tuple[float, int]]
"""(value, how many) pairs."""


async def period_stats(conn: aiosqlite.Connection, since: datetime, until: datetime) -> PeriodStats:
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    histograms: dict[str, Histogram] = defaultdict(list)
    heals: dict[str, Histogram] = defaultdict(list)
    successes: dict[str, int] = defaultdict(int)
    for metric, key, value, n, ok in await fetch_all(
        conn, hourly.READ, hourly.ranges(since, until)
    ):
        if metric == "heal":
            heals[key].append((value, n))
            successes[key] += ok
        elif metric in _HISTOGRAMS:
            histograms[metric].append((value, n))
        else:
            counts[metric][key] = n
    by_state = counts["state"]
    resolved = by_state.get(S.RESOLVED.value, 0)
    top = sorted(counts["alert"].items(), key=lambda item: (-item[1], item[0]))[:TOP_ALERTS]
    playbooks = [
        PlaybookStats(
            playbook_id=playbook,
            attempts=_total(taken),
            successes=successes[playbook],
            median_seconds=_median(taken),
        )
        for playbook, taken in heals.items()
    ]
    return PeriodStats(
        since=since,
        until=until,
        incidents=sum(by_state.values()),
        resolved=resolved,
        healed_alone=resolved - counts["approved_resolved"].get("", 0),
        approved=counts["approved"].get("", 0),
        rejected=by_state.get(S.REJECTED.value, 0),
        expired=by_state.get(S.EXPIRED.value, 0),
        needed_human=sum(by_state.get(state, 0) for state in _NEEDED_HUMAN),
        heals=sum(p.attempts for p in playbooks),
        heal_successes=sum(p.successes for p in playbooks),
        resolve_p50_s=_percentile(histograms["resolve_s"], 0.5),
        resolve_p90_s=_percentile(histograms["resolve_s"], 0.9),
        approve_p50_s=_percentile(histograms["approve_s"], 0.5),
        approve_p90_s=_percentile(histograms["approve_s"], 0.9),
        top_alerts=tuple(top),
        playbooks=tuple(sorted(playbooks, key=lambda p: (-p.attempts, p.playbook_id))),
    )


async def stats_report(
    conn: aiosqlite.Connection,
    current: tuple[datetime, datetime],
    previous: tuple[datetime, datetime],
) -> StatsReport:
    return StatsReport(
        current=await period_stats(conn, *current), previous=await period_stats(conn, *previous)
    )


def _total(histogram: Histogram) -> int:
    return sum(n for _, n in histogram)


def _percentile(histogram: Histogram, fraction: float) -> float | None:
    """engine.stats.percentile (nearest rank) of the values the histogram counts."""
    total = _total(histogram)
    return _nth(histogram, max(1, math.ceil(fraction * total))) if total else None


def _median(histogram: Histogram) -> float:
    """statistics.median of the values the histogram counts (never empty here)."""
    total = _total(histogram)
    middle = _nth(histogram, (total + 1) // 2)
    return middle if total % 2 else (middle + _nth(histogram, total // 2 + 1)) / 2


def _nth(histogram: Sequence[tuple[float, int]], rank: int) -> float:
    """The rank-th smallest value counted (from 1)."""
    seen = 0
    for value, n in sorted(histogram):
        seen += n
        if seen >= rank:
            return value
    raise ValueError(f"rank {rank} of {seen} values")
