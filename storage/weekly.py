"""The weekly report, storage side: what it reads, and the claim that posts it once.

The claim row and the report's two outbox rows (the message, then its chart in
the message's thread, one stream so the chart waits for the message) commit in
one transaction. A period is claimed by its end: a second claim of it, from a
restart or another process, finds the row and queues nothing.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from typing import Any

import aiosqlite

from engine.weekly import Period, WeeklyReport
from storage import outbox as outbox_rows
from storage import stats as stats_rows
from storage import tiers as tier_rows
from storage.db import time_text
from storage.reports import fetch_all

TOIL_SHOWN = 10

REPORTED = "SELECT 1 FROM weekly_reports WHERE period_end = ?"

# Ends with no plan at all: nothing in the catalog recognised the alert.
_TOIL = """
SELECT i.alert_name, COUNT(*) AS n FROM outcomes AS o JOIN incidents AS i ON i.id = o.incident_id
WHERE o.at >= ? AND o.at < ? AND o.final_state = 'needs_human' AND o.playbook_id = ''
GROUP BY i.alert_name HAVING COUNT(*) > 1 ORDER BY n DESC, i.alert_name LIMIT ?
"""

_TIER_CHANGES = f"{tier_rows.ALL} WHERE changed_at >= ? AND changed_at < ? ORDER BY changed_at"


async def read_report(
    conn: aiosqlite.Connection, period: Period, tz: str, days: list[Period]
) -> WeeklyReport:
    """Everything the report tells, for `period` and each of its `days`."""
    span = (time_text(period.start), time_text(period.end))
    before = period.before()
    stats = await stats_rows.stats_report(
        conn, (period.start, period.end), (before.start, before.end)
    )
    each_day = [await stats_rows.period_stats(conn, day.start, day.end) for day in days]
    toil = await fetch_all(conn, _TOIL, (*span, TOIL_SHOWN))
    changes = await fetch_all(conn, _TIER_CHANGES, span)
    return WeeklyReport(
        period=period,
        tz=tz,
        stats=stats,
        days=tuple(each_day),
        tier_changes=tuple(tier_rows.from_row(row) for row in changes),
        toil=tuple((str(row[0]), int(row[1])) for row in toil),
    )


def claim(
    conn: sqlite3.Connection,
    period: Period,
    channel: str,
    message: Mapping[str, Any],
    chart: Mapping[str, Any],
    now_text: str,
) -> bool:
    """Queue the period's report unless it was claimed before; True when queued now."""
    end = time_text(period.end)
    if conn.execute(REPORTED, (end,)).fetchone() is not None:
        return False
    stream = f"report:{end}"

    def queue(kind: str, payload: Mapping[str, Any]) -> int:
        queued = outbox_rows.enqueue(
            conn,
            channel=channel,
            kind=kind,
            payload_text=json.dumps(payload),
            incident_id=None,
            user_id=None,
            coalesce_key=None,
            now_text=now_text,
            stream=stream,
        )
        assert queued is not None, "nothing folds a row without a coalesce key"
        return queued

    message_id = queue("notice", message)
    queue("upload", {**chart, "after": message_id})
    conn.execute(
        "INSERT INTO weekly_reports (period_end, period_start, channel, message_id, claimed_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (end, time_text(period.start), channel, message_id, now_text),
    )
    return True
