"""App Home, storage side: who has opened it, and what it shows, read as of one moment.

Read-only but for `home_viewers` (migration 011). What a Home shows is one
read transaction (`storage.reports.consistent`), so the approvals waiting,
the open incidents, the pause and this week's numbers agree with each other.
The week's counts go through indexes bounded by the week (migration 011), so
they cost what the week holds, not what the database holds.
"""

from __future__ import annotations

import sqlite3
import statistics
from datetime import timedelta
from typing import Any

import aiosqlite

from engine.models import Incident, IncidentState, Pause
from engine.records import HomeRows, Page, Pending, Viewer, WeekNumbers
from storage import controls
from storage.db import parse_time
from storage.reports import PENDING, PENDING_APPROVERS, PENDING_COUNT
from storage.rows import INCIDENT_SELECT, OPEN, incident_from_row

S = IncidentState

WEEK_STATES = (S.RESOLVED, S.ROLLED_BACK, S.SAFE_HOLD, S.NEEDS_HUMAN, S.AUTO_RESOLVED)
"""The states whose entries this week the Home counts, each from its audit row."""
_APPROVED = "approval.approve"
_RESOLVED = f"incident.{S.RESOLVED.value}"
_WEEK_ACTIONS = (*(f"incident.{s.value}" for s in WEEK_STATES), _APPROVED)


VIEWERS = "SELECT user_id, channel, opened_at, notice, notice_at FROM home_viewers"

_OPENED = (
    "INSERT INTO home_viewers (user_id, channel, opened_at) VALUES (?, ?, ?)"
    " ON CONFLICT (user_id) DO UPDATE SET channel = excluded.channel,"
    " opened_at = excluded.opened_at"
)
_NOTICE = "UPDATE home_viewers SET notice = ?, notice_at = ? WHERE user_id = ?"
_PAUSE = f"SELECT value FROM controls WHERE name = '{controls.PAUSE}'"
# The states that hold their group, listed: SQLite then reads them through the state
# index, however many ended incidents there are (a NOT IN would scan them all).
_OPEN = f"{INCIDENT_SELECT} WHERE {OPEN} ORDER BY i.id DESC LIMIT ?"
_OPEN_COUNT = f"SELECT COUNT(*) FROM incidents AS i WHERE {OPEN}"
_OPENED_IN = "SELECT COUNT(*) FROM incidents WHERE created_at >= ? AND created_at < ?"
_ENTERED_IN = (
    f"SELECT action, COUNT(*) AS n FROM audit_log"
    f" WHERE action IN ({', '.join('?' * len(_WEEK_ACTIONS))}) AND at >= ? AND at < ?"
    " GROUP BY action"
)
_RESOLVED_IN = (
    "SELECT a.at AS resolved_at, i.created_at FROM audit_log AS a"
    " JOIN incidents AS i ON i.id = a.incident_id"
    " WHERE a.action = ? AND a.at >= ? AND a.at < ?"
)


def opened(conn: sqlite3.Connection, user: str, channel: str, now_text: str) -> None:
    """Record an opening; the last answer stays on the row, the Home shows it no more."""
    conn.execute(_OPENED, (user, channel, now_text))


def notice(conn: sqlite3.Connection, user: str, text: str, now_text: str) -> bool:
    """GRACE's answer to `user` on their Home; False when they never opened it."""
    return conn.execute(_NOTICE, (text, now_text, user)).rowcount == 1


def viewer_from_row(row: Any) -> Viewer:
    return Viewer(
        user=row["user_id"],
        channel=row["channel"],
        opened_at=parse_time(row["opened_at"]),
        notice=row["notice"],
        notice_at=parse_time(row["notice_at"]) if row["notice_at"] else None,
    )


async def rows(
    conn: aiosqlite.Connection,
    week: tuple[str, str],
    pending_limit: int,
    open_limit: int,
) -> HomeRows:
    """What every Home shows; `week` is (start, end) as stored time text. Call it
    inside `consistent` so every part is read as of the same commit."""
    pause = await _all(conn, _PAUSE)
    return HomeRows(
        pause=Pause.model_validate_json(pause[0][0]) if pause else None,
        pending=await _pending(conn, pending_limit),
        open=await _open(conn, open_limit),
        week=await _week(conn, week),
    )


async def _all(conn: aiosqlite.Connection, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    async with conn.execute(sql, params) as cursor:
        return list(await cursor.fetchall())


async def _pending(conn: aiosqlite.Connection, limit: int) -> Page[Pending]:
    incidents = [incident_from_row(row) for row in await _all(conn, PENDING, (limit,))]
    approved: dict[int, list[str]] = {}
    for row in await _all(conn, PENDING_APPROVERS):
        approved.setdefault(row["incident_id"], []).append(row["user_id"])
    [total] = await _all(conn, PENDING_COUNT)
    items = tuple(Pending(i, tuple(approved.get(i.id, ()))) for i in incidents)
    return Page(items, int(total[0]))


async def _open(conn: aiosqlite.Connection, limit: int) -> Page[Incident]:
    incidents = tuple(incident_from_row(row) for row in await _all(conn, _OPEN, (limit,)))
    [total] = await _all(conn, _OPEN_COUNT)
    return Page(incidents, int(total[0]))


async def _week(conn: aiosqlite.Connection, week: tuple[str, str]) -> WeekNumbers:
    [opened_n] = await _all(conn, _OPENED_IN, week)
    counts = {
        row["action"]: int(row["n"])
        for row in await _all(conn, _ENTERED_IN, (*_WEEK_ACTIONS, *week))
    }
    spans = [
        (parse_time(row["resolved_at"]) - parse_time(row["created_at"])).total_seconds()
        for row in await _all(conn, _RESOLVED_IN, (_RESOLVED, *week))
    ]
    return WeekNumbers(
        start=parse_time(week[0]),
        opened=int(opened_n[0]),
        entered={s: counts.get(f"incident.{s.value}", 0) for s in WEEK_STATES},
        approvals=counts.get(_APPROVED, 0),
        median_to_resolve=timedelta(seconds=statistics.median(spans)) if spans else None,
    )
