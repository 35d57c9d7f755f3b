"""Circuit breakers shared by every GRACE on one database, as rows (`breakers`).

One row a circuit while its breaker is open; closing it deletes the row. Times
are wall-clock instants as `time_text`, so text equality is time equality and
the trial claim compares `retry_at` as text.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from storage.db import time_text

OPEN_SELECT = "SELECT circuit, retry_at FROM breakers"


def opened(
    conn: sqlite3.Connection, circuit: str, retry_at: datetime, cause: str, now: datetime
) -> None:
    """Open the circuit until `retry_at`; opened again, it takes the new time and cause."""
    conn.execute(
        "INSERT INTO breakers (circuit, opened_at, retry_at, cause) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (circuit) DO UPDATE SET opened_at = excluded.opened_at,"
        " retry_at = excluded.retry_at, cause = excluded.cause",
        (circuit, time_text(now), time_text(retry_at), cause),
    )


def closed(conn: sqlite3.Connection, circuit: str) -> None:
    conn.execute("DELETE FROM breakers WHERE circuit = ?", (circuit,))


def claim_trial(conn: sqlite3.Connection, circuit: str, seen: datetime, until: datetime) -> bool:
    """Compare-and-set on `retry_at`: True when this caller moved it from `seen` to `until`."""
    cursor = conn.execute(
        "UPDATE breakers SET retry_at = ? WHERE circuit = ? AND retry_at = ?",
        (time_text(until), circuit, time_text(seen)),
    )
    return cursor.rowcount == 1
