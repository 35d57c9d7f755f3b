"""Outcome rows: one per incident end, a heal that ran or an end where none did.

A heal's row, its playbook's pre-aggregated totals and its period counts
(storage/hourly.py) commit together, so a playbook's record and the period
statistics are read without scanning history. Ends where nothing ran to
completion (rejected, expired, needs a human, interrupted) are written by the
same transaction that moves the incident there, so no end is ever missing.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from engine.models import Incident, Outcome, PlaybookStats, canonical_json
from storage import hourly
from storage.db import parse_time, time_text
from storage.rows import read_playbook_stats

_INSERT = (
    "INSERT INTO outcomes (incident_id, playbook_id, success, seconds, final_state, at,"
    " pattern_id, target_kind, target, stages, approvers, approval_wait_s, heal)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

_ADD_TO_PLAYBOOK = (
    "INSERT INTO playbook_stats (playbook_id, attempts, successes, total_seconds, updated_at)"
    " VALUES (?, 1, ?, ?, ?) ON CONFLICT (playbook_id) DO UPDATE SET"
    " attempts = playbook_stats.attempts + 1,"
    " successes = playbook_stats.successes + excluded.successes,"
    " total_seconds = playbook_stats.total_seconds + excluded.total_seconds,"
    " updated_at = excluded.updated_at"
)

_APPROVED_BY = (
    "SELECT user_id, at FROM approvals WHERE incident_id = ? AND decision = 'approve' ORDER BY at"
)


def insert(conn: sqlite3.Connection, outcome: Outcome) -> None:
    conn.execute(
        _INSERT,
        (
            outcome.incident_id,
            outcome.playbook_id,
            int(outcome.success),
            outcome.seconds,
            outcome.final_state.value,
            time_text(outcome.at),
            outcome.pattern_id,
            outcome.target_kind,
            outcome.target,
            canonical_json(outcome.stages),
            canonical_json(list(outcome.approvers)),
            outcome.approval_wait_s,
            int(outcome.heal),
        ),
    )


def record_heal(conn: sqlite3.Connection, outcome: Outcome, now: datetime) -> PlaybookStats:
    """The heal's row and its playbook's new totals, in the caller's transaction."""
    insert(conn, outcome)
    hourly.healed(conn, outcome)
    conn.execute(
        _ADD_TO_PLAYBOOK,
        (outcome.playbook_id, int(outcome.success), outcome.seconds, time_text(now)),
    )
    return read_playbook_stats(conn, outcome.playbook_id)


def record_end(conn: sqlite3.Connection, incident: Incident, now: datetime) -> None:
    """The row of an end where no heal ran to completion, from the incident as it ended."""
    approved = conn.execute(_APPROVED_BY, (incident.id,)).fetchall()
    plan, diagnosis = incident.plan, incident.diagnosis
    insert(
        conn,
        Outcome(
            incident_id=incident.id,
            playbook_id=plan.playbook_id if plan else "",
            success=False,
            seconds=max(0.0, (now - incident.created_at).total_seconds()),
            final_state=incident.state,
            at=now,
            pattern_id=diagnosis.pattern_id if diagnosis else None,
            target_kind=plan.target.executor if plan else "",
            target=plan.target.name if plan else "",
            approvers=tuple(row["user_id"] for row in approved),
            approval_wait_s=(
                max(0.0, (parse_time(approved[0]["at"]) - incident.created_at).total_seconds())
                if approved
                else None
            ),
            heal=False,
        ),
    )
