"""GRACE's database read from outside, read-only, as an operator would: what a
`grace run` that was killed (or is still running) kept. Used by the crash and
duplicates suites (tests/crash_harness.py)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from storage.audit import AuditReport, verify_chain
from storage.pg_conn import PgConnection

UNFINISHED = ("open", "diagnosed", "approved", "executing", "verifying")
SETTLED = f"""
SELECT
  (SELECT count(*) FROM inbox WHERE handled_at IS NULL)
  + (SELECT count(*) FROM incidents WHERE state IN ({", ".join(f"'{s}'" for s in UNFINISHED)}))
  + (SELECT count(*) FROM outbox WHERE state IN ('pending', 'sending'))
  + (SELECT count(*) FROM incidents WHERE card_ts IS NULL)
"""
"""Zero when GRACE has nothing left to do: every delivery handled, no incident on
its way, every card posted, nothing waiting to be said."""


@dataclass(frozen=True)
class GraceDb:
    """GRACE's database, read from outside and read-only: what GRACE kept."""

    path: Path

    def rows(self, sql: str, *args: object) -> list[sqlite3.Row]:
        conn = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True, timeout=10)
        conn.row_factory = sqlite3.Row
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    def value(self, sql: str, *args: object) -> Any:
        return self.rows(sql, *args)[0][0]

    def settled(self) -> bool:
        return self.value(SETTLED) == 0

    async def audit(self) -> AuditReport:
        async with aiosqlite.connect(f"{self.path.as_uri()}?mode=ro", uri=True) as conn:
            return await verify_chain(conn)

    def marked(self, marker: str) -> list[int]:
        """The incidents of the stored alerts whose summary is `marker`."""
        by = "SELECT incident_id FROM alerts WHERE json_extract(annotations, '$.summary') = ?"
        return [incident for (incident,) in self.rows(by, marker)]

    def has_alert(self, source: str, source_key: str) -> bool:
        by = "SELECT count(*) FROM alerts WHERE source = ? AND source_key = ?"
        return self.value(by, source, source_key) > 0

    def handled(self, delivery_key: str) -> bool:
        by = "SELECT count(*) FROM inbox WHERE delivery_key = ? AND handled_at IS NOT NULL"
        return self.value(by, delivery_key) > 0

    def runs(self) -> dict[int, int]:
        """Incident -> how many times its plan started executing."""
        started = "SELECT incident_id, count(*) FROM audit_log WHERE action = 'incident.executing'"
        return dict(self.rows(f"{started} GROUP BY incident_id"))

    def steps_twice(self) -> list[int]:
        """Incidents with more step results than their one-step plans have."""
        return [i for (i,) in self.rows(STEPS_TWICE)]

    def run_after_interruption(self) -> list[int]:
        return [i for (i,) in self.rows(RUN_AFTER_INTERRUPTION)]

    def approved_but_waiting(self) -> list[int]:
        """Incidents still awaiting approval although their approvals suffice."""
        return [i for (i,) in self.rows(APPROVED_BUT_WAITING)]

    def interrupted(self) -> list[tuple[int, str]]:
        """(incident, its card's ts) for every incident ever interrupted."""
        return [(i, ts) for i, ts in self.rows(INTERRUPTED)]


STEPS_TWICE = "SELECT incident_id FROM actions GROUP BY incident_id HAVING count(*) > 1"
RUN_AFTER_INTERRUPTION = """
SELECT e.incident_id FROM audit_log AS i JOIN audit_log AS e
  ON e.incident_id = i.incident_id AND e.seq > i.seq
WHERE i.action = 'incident.interrupted' AND e.action = 'incident.executing'
"""
APPROVED_BUT_WAITING = """
SELECT i.id FROM incidents AS i JOIN approvals AS a
  ON a.incident_id = i.id AND a.plan_hash = i.plan_hash AND a.decision = 'approve'
WHERE i.state = 'awaiting_approval'
GROUP BY i.id HAVING count(*) >= json_extract(i.plan, '$.required_approvals')
"""
INTERRUPTED = """
SELECT DISTINCT i.id, i.card_ts FROM audit_log AS a JOIN incidents AS i ON i.id = a.incident_id
WHERE a.action = 'incident.interrupted'
"""


@dataclass(frozen=True)
class PgGraceDb:
    """GRACE's PostgreSQL database read from outside, a short connection a read."""

    dsn: str

    def rows(self, sql: str, *args: object) -> list[Any]:
        conn = PgConnection.connect(self.dsn)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    def value(self, sql: str, *args: object) -> Any:
        return self.rows(sql, *args)[0][0]


def integrity(path: Path) -> str:
    """PRAGMA integrity_check of any SQLite file ('ok' when it is sound)."""
    conn = sqlite3.connect(path, timeout=10)
    try:
        return "; ".join(str(row[0]) for row in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()
