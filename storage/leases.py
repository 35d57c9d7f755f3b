"""Leases and heartbeats: how replicas on one database share out work and tell
that one of them died (migration 019).

A lease is one row, claimed and renewed by a compare-and-set in the upsert
itself (`WHERE holder = ? OR expires_at <= ?`): writes are serialized across
replicas (SQLite's one writer, PostgreSQL's write lock), so of two claims the
second sees the first's row. A heartbeat is one row a replica. Times are ISO
text (`storage.db.time_text`), compared as text. Portable SQL: the same
statements run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from engine.models import RUNNING_STATES
from storage.db import time_text
from storage.rows import INCIDENT_SELECT

CLAIM = (
    "INSERT INTO leases (name, holder, acquired_at, expires_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (name) DO UPDATE SET"
    " acquired_at = CASE WHEN leases.holder = excluded.holder"
    " THEN leases.acquired_at ELSE excluded.acquired_at END,"
    " holder = excluded.holder, expires_at = excluded.expires_at"
    " WHERE leases.holder = excluded.holder OR leases.expires_at <= excluded.acquired_at"
    " RETURNING holder"
)


def hold(conn: sqlite3.Connection, name: str, holder: str, now: datetime, until: datetime) -> bool:
    """Take or renew the lease; False while another holder's is in force."""
    row = conn.execute(CLAIM, (name, holder, time_text(now), time_text(until))).fetchone()
    return row is not None


def release(conn: sqlite3.Connection, name: str, holder: str) -> None:
    conn.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))


def beat(conn: sqlite3.Connection, replica: str, started_at: datetime, now: datetime) -> None:
    conn.execute(
        "INSERT INTO replicas (name, started_at, heartbeat_at) VALUES (?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET"
        " started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at",
        (replica, time_text(started_at), time_text(now)),
    )


def orphaned(replica: str, *, own: bool, cutoff: datetime) -> tuple[str, tuple[str, ...]]:
    """The query for the running incidents whose runner is gone, and its parameters:
    no runner recorded; another replica that never beat or whose last beat is older
    than `cutoff`; and with `own`, `replica` itself (its previous process)."""
    running = tuple(s.value for s in RUNNING_STATES)
    gone = "i.run_by IS NULL OR (i.run_by <> ? AND (r.heartbeat_at IS NULL OR r.heartbeat_at < ?))"
    params: tuple[str, ...] = (*running, replica, time_text(cutoff))
    if own:
        gone += " OR i.run_by = ?"
        params += (replica,)
    sql = (
        f"{INCIDENT_SELECT} LEFT JOIN replicas AS r ON r.name = i.run_by"
        f" WHERE i.state IN ({', '.join('?' * len(running))}) AND ({gone}) ORDER BY i.id"
    )
    return sql, params
