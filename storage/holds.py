"""Targets in safe hold, as rows: set inside the transition that causes them,
lifted only by a person, both audited with the write."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from engine.models import Target, TargetHold
from storage import audit as audit_log
from storage.db import parse_time, time_text

_ACTIVE = "cleared_at IS NULL"


def hold(
    conn: sqlite3.Connection, target: Target, incident_id: int, reason: str, now: datetime
) -> None:
    """Hold `target` in the caller's transaction (the incident's own transition)."""
    conn.execute(
        "INSERT INTO target_holds (target_executor, target_name, incident_id, reason, held_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (target.executor, target.name, incident_id, reason, time_text(now)),
    )
    audit_log.append(
        conn,
        at=now,
        actor="grace",
        action="target.held",
        incident_id=incident_id,
        detail={"executor": target.executor, "target": target.name, "reason": reason},
    )


def clear(conn: sqlite3.Connection, name: str, actor: str, now: datetime) -> list[TargetHold]:
    rows = conn.execute(
        f"SELECT * FROM target_holds WHERE target_name = ? AND {_ACTIVE} ORDER BY id", (name,)
    ).fetchall()
    if not rows:
        return []
    conn.execute(
        "UPDATE target_holds SET cleared_by = ?, cleared_at = ?"
        f" WHERE target_name = ? AND {_ACTIVE}",
        (actor, time_text(now), name),
    )
    lifted = [from_row(row) for row in rows]
    for held in lifted:
        audit_log.append(
            conn,
            at=now,
            actor=actor,
            action="target.cleared",
            incident_id=held.incident_id,
            detail={"executor": held.target.executor, "target": held.target.name},
        )
    return lifted


ACTIVE_SELECT = f"SELECT * FROM target_holds WHERE {_ACTIVE}"


def from_row(row: Any) -> TargetHold:
    """From a row of `target_holds` (sqlite3.Row or aiosqlite.Row, by column name)."""
    return TargetHold(
        target=Target(executor=row["target_executor"], name=row["target_name"]),
        incident_id=row["incident_id"],
        reason=row["reason"],
        held_at=parse_time(row["held_at"]),
    )
