"""The kill switch as rows: written through the group writer, audited with it."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from engine.models import Pause
from storage import audit as audit_log
from storage.db import time_text

PAUSE = "pause"


def write_pause(conn: sqlite3.Connection, pause: Pause | None, actor: str, now: datetime) -> None:
    """Set or lift the pause and append its audit row, in the caller's transaction."""
    if pause is None:
        conn.execute("DELETE FROM controls WHERE name = ?", (PAUSE,))
        audit_log.append(conn, at=now, actor=actor, action="grace.resumed")
        return
    conn.execute(
        "INSERT INTO controls (name, value, set_by, set_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
        " set_by = excluded.set_by, set_at = excluded.set_at",
        (PAUSE, pause.model_dump_json(), actor, time_text(now)),
    )
    audit_log.append(
        conn, at=now, actor=actor, action="grace.paused", detail={"reason": pause.reason}
    )
