"""The period statistics of engine/stats.py, read in one transaction.

Incidents count in the period they were opened in; heals in the period they
ended in. Every query is bounded by an indexed time range (migration 013).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import datetime
from typing import Any

import aiosqlite

from engine.models import IncidentState as S
from engine.models import PlaybookStats
from engine.stats import PeriodStats, StatsReport, percentile
from storage.db import time_text
from storage.reports import fetch_all

TOP_ALERTS = 5

_NEEDED_HUMAN = (S.NEEDS_HUMAN.value, S.SAFE_HOLD.value, S.INTERRUPTED.value)

_BY_STATE = """
SELECT state, COUNT(*) FROM incidents WHERE created_at >= ? AND created_at < ? GROUP BY state
"""

_APPROVED = """
SELECT i.id AS id, i.state AS state,
       (julianday(MIN(a.at)) - julianday(i.created_at)) * 86400.0 AS waited
FROM incidents AS i JOIN approvals AS a ON a.incident_id = i.id AND a.decision = 'approve'
WHERE i.created_at >= ? AND i.created_at < ?
GROUP BY i.id
"""

_RESOLVED_TOOK = """
SELECT (julianday(updated_at) - julianday(created_at)) * 86400.0
FROM incidents WHERE created_at >= ? AND created_at < ? AND state = 'resolved'
"""

_TOP_ALERTS = """
SELECT alert_name, COUNT(*) AS n FROM incidents WHERE created_at >= ? AND created_at < ?
GROUP BY alert_name ORDER BY n DESC, alert_name LIMIT ?
"""

_HEALS = "SELECT playbook_id, success, seconds FROM outcomes WHERE at >= ? AND at < ? AND heal = 1"


async def period_stats(conn: aiosqlite.Connection, since: datetime, until: datetime) -> PeriodStats:
    span = (time_text(since), time_text(until))
    by_state = {row[0]: int(row[1]) for row in await fetch_all(conn, _BY_STATE, span)}
    approved = await fetch_all(conn, _APPROVED, span)
    approved_ids = {int(row["id"]) for row in approved}
    resolved = int(by_state.get(S.RESOLVED.value, 0))
    resolved_with_approval = sum(1 for row in approved if row["state"] == S.RESOLVED.value)
    took = [float(row[0]) for row in await fetch_all(conn, _RESOLVED_TOOK, span)]
    waits = [max(0.0, float(row["waited"])) for row in approved]
    top = await fetch_all(conn, _TOP_ALERTS, (*span, TOP_ALERTS))
    heals = await fetch_all(conn, _HEALS, span)
    return PeriodStats(
        since=since,
        until=until,
        incidents=sum(by_state.values()),
        resolved=resolved,
        healed_alone=resolved - resolved_with_approval,
        approved=len(approved_ids),
        rejected=by_state.get(S.REJECTED.value, 0),
        expired=by_state.get(S.EXPIRED.value, 0),
        needed_human=sum(by_state.get(state, 0) for state in _NEEDED_HUMAN),
        heals=len(heals),
        heal_successes=sum(int(row["success"]) for row in heals),
        resolve_p50_s=percentile(took, 0.5),
        resolve_p90_s=percentile(took, 0.9),
        approve_p50_s=percentile(waits, 0.5),
        approve_p90_s=percentile(waits, 0.9),
        top_alerts=tuple((str(row[0]), int(row[1])) for row in top),
        playbooks=_playbooks(heals),
    )


async def stats_report(
    conn: aiosqlite.Connection,
    current: tuple[datetime, datetime],
    previous: tuple[datetime, datetime],
) -> StatsReport:
    return StatsReport(
        current=await period_stats(conn, *current), previous=await period_stats(conn, *previous)
    )


def _playbooks(heals: list[Any]) -> tuple[PlaybookStats, ...]:
    """Each playbook's heals, the most run first."""
    seconds: dict[str, list[float]] = defaultdict(list)
    successes: dict[str, int] = defaultdict(int)
    for row in heals:
        seconds[row["playbook_id"]].append(float(row["seconds"]))
        successes[row["playbook_id"]] += int(row["success"])
    records = [
        PlaybookStats(
            playbook_id=playbook,
            attempts=len(taken),
            successes=successes[playbook],
            median_seconds=statistics.median(taken),
        )
        for playbook, taken in seconds.items()
    ]
    return tuple(sorted(records, key=lambda r: (-r.attempts, r.playbook_id)))
