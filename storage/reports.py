"""What people ask GRACE about (`/grace status`, `/grace incidents`), storage side.

Read-only: the SQL and the row mapping behind SqliteStore's "reports for
people". Each report is read in one read transaction (`consistent`), so the
counts and the rows listed beside them come from the same moment.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aiosqlite

from engine.models import (
    Approval,
    BenchmarkResult,
    CheckResult,
    Incident,
    IncidentState,
    Outcome,
    Snapshot,
    StepResult,
    Target,
    Verification,
)
from engine.records import (
    Backlog,
    IncidentStory,
    Page,
    Pending,
    StateChange,
    StatusRows,
    StepRun,
    VerificationRun,
)
from storage.db import parse_time
from storage.rows import INCIDENT_SELECT, OPEN, incident_from_row

T = TypeVar("T")


_AWAITING = f"i.state = '{IncidentState.AWAITING_APPROVAL.value}'"

OPEN_COUNTS = f"SELECT i.state, COUNT(*) AS n FROM incidents AS i WHERE {OPEN} GROUP BY i.state"

PENDING = (
    f"{INCIDENT_SELECT} WHERE {_AWAITING} ORDER BY i.approval_deadline NULLS LAST, i.id LIMIT ?"
)
PENDING_COUNT = f"SELECT COUNT(*) FROM incidents AS i WHERE {_AWAITING}"
# Only approvals of the plan now on the card count towards it.
PENDING_APPROVERS = f"""
SELECT p.incident_id, p.user_id FROM approvals AS p
JOIN incidents AS i ON i.id = p.incident_id AND p.plan_hash = i.plan_hash
WHERE {_AWAITING} AND p.decision = 'approve'
ORDER BY p.id
"""

BACKLOG = """
SELECT lane, MIN(channel) AS channel, COUNT(*) AS waiting, MIN(created_at) AS oldest
FROM outbox WHERE state IN ('pending', 'sending')
GROUP BY lane ORDER BY waiting DESC, lane
"""

_STATE_ROWS = (
    "SELECT at, actor, action, detail FROM audit_log"
    " WHERE incident_id = ? AND action LIKE 'incident.%' ORDER BY seq"
)
_MEMBERS = "SELECT COUNT(*) FROM incident_alerts WHERE incident_id = ?"
_APPROVALS = (
    "SELECT incident_id, user_id, plan_hash, decision, reason, at FROM approvals"
    " WHERE incident_id = ? ORDER BY id"
)
_SNAPSHOTS = "SELECT * FROM snapshots WHERE incident_id = ? ORDER BY id"
_ACTIONS = "SELECT action, ok, detail, seconds, at FROM actions WHERE incident_id = ? ORDER BY id"
_VERIFICATIONS = (
    "SELECT checks, benchmarks, at FROM verifications WHERE incident_id = ? ORDER BY id"
)
_OUTCOME = "SELECT * FROM outcomes WHERE incident_id = ? AND heal = 1 ORDER BY id DESC LIMIT 1"


async def consistent(
    conn: aiosqlite.Connection, read: Callable[[aiosqlite.Connection], Awaitable[T]]
) -> T:
    """`read` in one read transaction: every query in it sees the same commits."""
    await conn.execute("BEGIN")
    try:
        return await read(conn)
    finally:
        await conn.execute("COMMIT")


async def fetch_all(conn: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    """Every row of one query on an aiosqlite connection, its cursor closed."""
    async with conn.execute(sql, params) as cursor:
        return list(await cursor.fetchall())


async def _count(conn: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> int:
    [row] = await fetch_all(conn, sql, params)
    return int(row[0])


async def status(conn: aiosqlite.Connection, limit: int) -> StatusRows:
    """Open incidents by state, the first `limit` pending approvals, the outbox backlog."""
    counts = {
        IncidentState(row["state"]): int(row["n"]) for row in await fetch_all(conn, OPEN_COUNTS)
    }
    return StatusRows(counts, await _pending(conn, limit), tuple(await _backlog(conn)))


async def incident_page(conn: aiosqlite.Connection, open_only: bool, limit: int) -> Page[Incident]:
    """The newest incidents first: those not ended, or all of them."""
    where = f"WHERE {OPEN}" if open_only else ""
    rows = await fetch_all(conn, f"{INCIDENT_SELECT} {where} ORDER BY i.id DESC LIMIT ?", (limit,))
    total = await _count(conn, f"SELECT COUNT(*) FROM incidents AS i {where}")
    return Page(tuple(incident_from_row(row) for row in rows), total)


async def _pending(conn: aiosqlite.Connection, limit: int) -> Page[Pending]:
    """Incidents awaiting approval, the soonest to expire first."""
    incidents = [incident_from_row(row) for row in await fetch_all(conn, PENDING, (limit,))]
    approvers: dict[int, list[str]] = {}
    for row in await fetch_all(conn, PENDING_APPROVERS):
        approvers.setdefault(row["incident_id"], []).append(row["user_id"])
    items = tuple(Pending(i, tuple(approvers.get(i.id, ()))) for i in incidents)
    return Page(items, await _count(conn, PENDING_COUNT))


async def _backlog(conn: aiosqlite.Connection) -> list[Backlog]:
    """Undelivered writes per lane, the longest queue first."""
    return [
        Backlog(row["lane"], row["channel"], int(row["waiting"]), parse_time(row["oldest"]))
        for row in await fetch_all(conn, BACKLOG)
    ]


async def story(conn: aiosqlite.Connection, incident_id: int) -> IncidentStory | None:
    rows = await fetch_all(conn, f"{INCIDENT_SELECT} WHERE i.id = ?", (incident_id,))
    if not rows:
        return None
    key = (incident_id,)
    outcome = await fetch_all(conn, _OUTCOME, key)
    return IncidentStory(
        incident=incident_from_row(rows[0]),
        members=await _count(conn, _MEMBERS, key),
        states=tuple(_state_change(r) for r in await fetch_all(conn, _STATE_ROWS, key)),
        approvals=tuple(_approval(r) for r in await fetch_all(conn, _APPROVALS, key)),
        snapshots=tuple(_snapshot(r) for r in await fetch_all(conn, _SNAPSHOTS, key)),
        steps=tuple(_step(r) for r in await fetch_all(conn, _ACTIONS, key)),
        verifications=tuple(_verification(r) for r in await fetch_all(conn, _VERIFICATIONS, key)),
        outcome=_outcome(outcome[0]) if outcome else None,
    )


def _state_change(row: Any) -> StateChange:
    detail = json.loads(row["detail"])
    deadline = detail.get("deadline")
    return StateChange(
        state=IncidentState(row["action"].removeprefix("incident.")),
        at=parse_time(row["at"]),
        actor=row["actor"],
        reason=detail.get("reason"),
        deadline=parse_time(deadline) if deadline else None,
    )


def _approval(row: Any) -> Approval:
    return Approval(
        incident_id=row["incident_id"],
        user=row["user_id"],
        plan_hash=row["plan_hash"],
        decision=row["decision"],
        reason=row["reason"],
        at=parse_time(row["at"]),
    )


def _snapshot(row: Any) -> Snapshot:
    return Snapshot(
        incident_id=row["incident_id"],
        target=Target(executor=row["target_executor"], name=row["target_name"]),
        location=row["location"],
        size_bytes=row["size_bytes"],
        taken_at=parse_time(row["taken_at"]),
        state=json.loads(row["state"]),
    )


def _step(row: Any) -> StepRun:
    result = StepResult(
        action=row["action"], ok=bool(row["ok"]), detail=row["detail"], seconds=row["seconds"]
    )
    return StepRun(result, parse_time(row["at"]))


def _verification(row: Any) -> VerificationRun:
    verification = Verification(
        checks=tuple(CheckResult.model_validate(c) for c in json.loads(row["checks"])),
        benchmarks=tuple(BenchmarkResult.model_validate(b) for b in json.loads(row["benchmarks"])),
    )
    return VerificationRun(verification, parse_time(row["at"]))


def _outcome(row: Any) -> Outcome:
    return Outcome(
        incident_id=row["incident_id"],
        playbook_id=row["playbook_id"],
        success=bool(row["success"]),
        seconds=row["seconds"],
        final_state=row["final_state"],
        at=parse_time(row["at"]),
    )
