"""Rows to engine models and back, shared by the writer thread and the readers.

Writes run on a stdlib `sqlite3` connection in the group writer's thread and
reads on the aiosqlite connection; both hand out `sqlite3.Row`s, so one
mapping serves both and a model read back inside a write equals the one a
later read returns.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from engine.models import (
    Alert,
    Diagnosis,
    Incident,
    IncidentState,
    Plan,
    PlaybookStats,
)
from storage.db import parse_time

_M = TypeVar("_M", bound=BaseModel)

MEDIAN_WINDOW = 100
"""How many of a playbook's latest outcomes its median duration is taken over."""

RELEASING_STATES: tuple[str, ...] = tuple(
    sorted(s.value for s in IncidentState if not s.holds_group)
)
"""States that let a new incident of the group open. Migration 002 spells the
same list in the partial unique index `incidents_active_group`; a test keeps
the two equal."""

ACTIVE = f"i.state NOT IN ({', '.join(repr(s) for s in RELEASING_STATES)})"
"""The active-incident condition, written as the partial index's WHERE is, so
SQLite can tell the index covers it."""

OPEN = "i.state IN ({})".format(", ".join(f"'{s.value}'" for s in IncidentState if s.holds_group))
"""The same incidents as ACTIVE, named by the states they are in: a list the state
index can answer, where NOT IN would read every incident."""

INCIDENT_SELECT = """
SELECT i.id, i.state, i.fingerprint, i.channel, i.card_ts, i.diagnosis, i.plan, i.reason,
       i.alert_count, i.firing_count, i.first_seen, i.last_seen, i.created_at, i.updated_at,
       i.approval_deadline, i.remind_at, i.reminded_at,
       a.source AS a_source, a.source_key AS a_source_key, a.name AS a_name,
       a.status AS a_status, a.severity AS a_severity, a.labels AS a_labels,
       a.annotations AS a_annotations, a.text AS a_text, a.starts_at AS a_starts_at,
       a.ends_at AS a_ends_at, a.link AS a_link, a.fingerprint AS a_fingerprint,
       a.group_key AS a_group_key, a.channel AS a_channel, a.reporter AS a_reporter,
       a.thread_ts AS a_thread_ts, a.received_at AS a_received_at
FROM incidents AS i
JOIN alerts AS a ON a.id = (SELECT MIN(f.id) FROM alerts AS f WHERE f.incident_id = i.id)
"""

INSERT_ALERT = (
    "INSERT INTO alerts (id, incident_id, source, source_key, name, status, severity, labels,"
    " annotations, text, starts_at, ends_at, link, fingerprint, group_key, channel, reporter,"
    " thread_ts, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
"""Intake gives each alert its id itself (see storage.intake), so a delivery's
alerts are a known, contiguous id range; a repeated (source, source_key) is
filtered out before this runs and would fail the delivery here, not be skipped."""

STATS_TOTALS = "SELECT attempts, successes FROM playbook_stats WHERE playbook_id = ?"
STATS_RECENT = (
    "SELECT seconds FROM outcomes WHERE playbook_id = ? AND heal = 1"
    " ORDER BY at DESC, id DESC LIMIT ?"
)


def incident_from_row(row: Any, **changes: Any) -> Incident:
    """The incident a row describes; `changes` override fields (already parsed
    values, as Incident takes them), so a writer that changed some columns
    builds the model once, as it left it, instead of building and copying."""
    alert = Alert(
        source=row["a_source"],
        source_key=row["a_source_key"],
        name=row["a_name"],
        status=row["a_status"],
        severity=row["a_severity"],
        labels=json.loads(row["a_labels"]),
        annotations=json.loads(row["a_annotations"]),
        text=row["a_text"],
        starts_at=_parse_or_none(row["a_starts_at"]),
        ends_at=_parse_or_none(row["a_ends_at"]),
        link=row["a_link"],
        fingerprint=row["a_fingerprint"],
        group=row["a_group_key"],
        channel=row["a_channel"],
        reporter=row["a_reporter"],
        thread_ts=row["a_thread_ts"],
        received_at=parse_time(row["a_received_at"]),
    )
    fields: dict[str, Any] = {
        "id": row["id"],
        "state": row["state"],
        "fingerprint": row["fingerprint"],
        "alert": alert,
        "alert_count": row["alert_count"],
        "firing_count": row["firing_count"],
        "first_seen": _parse_or_none(row["first_seen"]),
        "last_seen": _parse_or_none(row["last_seen"]),
        "diagnosis": json_model(Diagnosis, row["diagnosis"]),
        "plan": json_model(Plan, row["plan"]),
        "reason": row["reason"],
        "channel": row["channel"],
        "card_ts": row["card_ts"],
        "created_at": parse_time(row["created_at"]),
        "updated_at": parse_time(row["updated_at"]),
        "deadline": _parse_or_none(row["approval_deadline"]),
        "remind_at": _parse_or_none(row["remind_at"]),
        "reminded": row["reminded_at"] is not None,
    }
    fields.update(changes)
    return Incident(**fields)


def read_incident(conn: sqlite3.Connection, incident_id: int) -> Incident | None:
    """One incident, inside the writer's transaction (sees its own uncommitted rows)."""
    row = conn.execute(f"{INCIDENT_SELECT} WHERE i.id = ?", (incident_id,)).fetchone()
    return None if row is None else incident_from_row(row)


def read_playbook_stats(conn: sqlite3.Connection, playbook_id: str) -> PlaybookStats:
    totals = conn.execute(STATS_TOTALS, (playbook_id,)).fetchone()
    if totals is None:
        return stats_from(playbook_id, None, [])
    recent = conn.execute(STATS_RECENT, (playbook_id, MEDIAN_WINDOW)).fetchall()
    return stats_from(playbook_id, totals, recent)


def stats_from(playbook_id: str, totals: Any, recent: list[Any]) -> PlaybookStats:
    if totals is None:
        return PlaybookStats(playbook_id=playbook_id, attempts=0, successes=0, median_seconds=None)
    seconds = [float(row[0]) for row in recent]
    return PlaybookStats(
        playbook_id=playbook_id,
        attempts=int(totals["attempts"]),
        successes=int(totals["successes"]),
        median_seconds=statistics.median(seconds) if seconds else None,
    )


def json_model(model: type[_M], text: str | None) -> _M | None:
    return None if text is None else model.model_validate_json(text)


def inserted_id(cursor: Any) -> int | None:
    """The id an `INSERT ... RETURNING id` gave, or None when it inserted nothing
    (ON CONFLICT DO NOTHING); `lastrowid` is SQLite's alone."""
    row = cursor.fetchone()
    return None if row is None else int(row[0])


def new_id(cursor: Any) -> int:
    """The id an `INSERT ... RETURNING id` that always inserts gave."""
    found = inserted_id(cursor)
    if found is None:
        raise RuntimeError("insert returned no row id")
    return found


def _parse_or_none(text: str | None) -> datetime | None:
    return None if text is None else parse_time(text)
