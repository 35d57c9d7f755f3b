"""`engine.ports.Store` on aiosqlite.

One connection, and every use of it is serialised by one asyncio.Lock: the
writes so that each is one explicit `BEGIN IMMEDIATE ... COMMIT`, the reads so
that they never see another coroutine's uncommitted half of a transaction on
the shared connection. Compare-and-set lives in the SQL itself (`WHERE
state = ?`), so it also holds between processes sharing the file.
"""

from __future__ import annotations

import asyncio
import json
import statistics
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import aiosqlite
from pydantic import BaseModel

from engine.models import (
    Alert,
    Approval,
    AuditEntry,
    BenchmarkResult,
    CheckResult,
    Diagnosis,
    Incident,
    IncidentState,
    Outcome,
    Plan,
    PlaybookStats,
    Snapshot,
    StepResult,
    Target,
    Verification,
    can_transition,
    canonical_json,
)
from engine.ports import Clock
from storage import audit as audit_log
from storage.audit import AuditReport
from storage.db import connect, migrate, parse_time, rollback_quietly, time_text

_M = TypeVar("_M", bound=BaseModel)

MEDIAN_WINDOW = 100
"""How many of a playbook's latest outcomes its median duration is taken over."""

_INCIDENT_SELECT = """
SELECT i.id, i.state, i.fingerprint, i.channel, i.card_ts, i.diagnosis, i.plan, i.reason,
       i.created_at, i.updated_at,
       a.source AS a_source, a.source_key AS a_source_key, a.name AS a_name,
       a.status AS a_status, a.severity AS a_severity, a.labels AS a_labels,
       a.annotations AS a_annotations, a.text AS a_text, a.channel AS a_channel,
       a.reporter AS a_reporter, a.received_at AS a_received_at
FROM incidents AS i
JOIN alerts AS a ON a.id = (SELECT MIN(f.id) FROM alerts AS f WHERE f.incident_id = i.id)
"""


class SqliteStore:
    """The embedded store; `SqliteStore.open(path, clock)` is the way in."""

    def __init__(self, conn: aiosqlite.Connection, clock: Clock) -> None:
        self._conn = conn
        self._clock = clock
        self._lock = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------

    @classmethod
    async def open(cls, path: str | Path, clock: Clock) -> SqliteStore:
        """Connect with GRACE's pragmas and bring the schema up to date."""
        conn = await connect(path)
        try:
            await migrate(conn)
        except BaseException:
            await conn.close()
            raise
        return cls(conn, clock)

    async def close(self) -> None:
        async with self._lock:
            await self._conn.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction: all of the body's writes commit, or none do.

        IMMEDIATE takes SQLite's write lock up front, so a transaction that
        reads then writes (the audit chain head, a CAS) cannot be overtaken
        by another process between the read and the write.
        """
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                await self._conn.execute("COMMIT")
            except BaseException:
                await rollback_quietly(self._conn)
                raise

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[aiosqlite.Connection]:
        """Reads take the lock too: on a shared connection they would otherwise
        see a concurrent write transaction's rows before it commits or rolls back."""
        async with self._lock:
            yield self._conn

    # -- incidents -------------------------------------------------------

    async def ingest_alert(self, alert: Alert, delivery_key: str) -> Incident | None:
        try:
            return await self._ingest(alert, delivery_key)
        except _Duplicate:
            return None

    async def _ingest(self, alert: Alert, delivery_key: str) -> Incident | None:
        now = time_text(self._clock.now())
        async with self._transaction() as conn:
            if not await _claim(conn, delivery_key, now):
                return None
            async with conn.execute(
                "SELECT 1 FROM alerts WHERE source = ? AND source_key = ?",
                (alert.source, alert.source_key),
            ) as cursor:
                seen = await cursor.fetchone() is not None
            if seen:
                # The delivery key was inserted above; undo it with everything else.
                raise _Duplicate
            cursor = await conn.execute(
                "INSERT INTO incidents (state, fingerprint, alert_name, channel,"
                " created_at, updated_at, version) VALUES (?, ?, ?, ?, ?, ?, 1)",
                (IncidentState.OPEN.value, alert.fingerprint, alert.name, alert.channel, now, now),
            )
            incident_id = _rowid(cursor)
            await conn.execute(
                "INSERT INTO alerts (incident_id, source, source_key, name, status, severity,"
                " labels, annotations, text, channel, reporter, received_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    incident_id,
                    alert.source,
                    alert.source_key,
                    alert.name,
                    alert.status.value,
                    alert.severity,
                    canonical_json(alert.labels),
                    canonical_json(alert.annotations),
                    alert.text,
                    alert.channel,
                    alert.reporter,
                    time_text(alert.received_at),
                ),
            )
            await audit_log.append(
                conn,
                at=self._clock.now(),
                actor=alert.reporter or alert.source,
                action="alert.received",
                incident_id=incident_id,
                detail={
                    "source": alert.source,
                    "source_key": alert.source_key,
                    "name": alert.name,
                    "status": alert.status.value,
                    "fingerprint": alert.fingerprint,
                    "delivery_key": delivery_key,
                },
            )
            return await _incident(conn, incident_id)

    async def get_incident(self, incident_id: int) -> Incident | None:
        async with self._reading() as conn:
            return await _incident(conn, incident_id)

    async def transition(
        self,
        incident_id: int,
        expected: IncidentState,
        new: IncidentState,
        *,
        actor: str,
        diagnosis: Diagnosis | None = None,
        plan: Plan | None = None,
        reason: str | None = None,
    ) -> Incident | None:
        if not can_transition(expected, new):
            raise ValueError(f"illegal incident transition {expected.value} -> {new.value}")
        now = self._clock.now()
        sets = ["state = ?", "version = version + 1", "updated_at = ?"]
        params: list[Any] = [new.value, time_text(now)]
        detail: dict[str, Any] = {"from": expected.value, "to": new.value}
        if diagnosis is not None:
            sets.append("diagnosis = ?")
            params.append(canonical_json(diagnosis.model_dump(mode="json")))
        if plan is not None:
            sets += ["plan = ?", "plan_hash = ?"]
            params += [canonical_json(plan.model_dump(mode="json")), plan.hash]
            detail["plan_hash"] = plan.hash
        if reason is not None:
            sets.append("reason = ?")
            params.append(reason)
            detail["reason"] = reason
        async with self._transaction() as conn:
            cursor = await conn.execute(
                f"UPDATE incidents SET {', '.join(sets)} WHERE id = ? AND state = ?",
                (*params, incident_id, expected.value),
            )
            if cursor.rowcount != 1:
                return None
            await audit_log.append(
                conn,
                at=now,
                actor=actor,
                action=f"incident.{new.value}",
                incident_id=incident_id,
                detail=detail,
            )
            return await _incident(conn, incident_id)

    async def set_card(self, incident_id: int, channel: str, ts: str) -> Incident:
        async with self._transaction() as conn:
            cursor = await conn.execute(
                "UPDATE incidents SET channel = ?, card_ts = ?, updated_at = ? WHERE id = ?",
                (channel, ts, time_text(self._clock.now()), incident_id),
            )
            if cursor.rowcount != 1:
                raise LookupError(f"no incident {incident_id}")
            incident = await _incident(conn, incident_id)
        assert incident is not None
        return incident

    async def list_incidents(
        self, limit: int = 20, states: Iterable[IncidentState] | None = None
    ) -> list[Incident]:
        """Newest first, optionally only those in `states`."""
        where, params = "", []
        if states is not None:
            wanted = sorted({IncidentState(s).value for s in states})
            if not wanted:
                return []
            where = f"WHERE i.state IN ({', '.join('?' * len(wanted))})"
            params = wanted
        async with (
            self._reading() as conn,
            conn.execute(
                f"{_INCIDENT_SELECT} {where} ORDER BY i.id DESC LIMIT ?", (*params, limit)
            ) as cursor,
        ):
            return [_incident_from_row(row) for row in await cursor.fetchall()]

    async def incident_for_card(self, channel: str, ts: str) -> Incident | None:
        """The incident whose live card is message `ts` in `channel` (button clicks)."""
        async with (
            self._reading() as conn,
            conn.execute(
                f"{_INCIDENT_SELECT} WHERE i.channel = ? AND i.card_ts = ?"
                " ORDER BY i.id DESC LIMIT 1",
                (channel, ts),
            ) as cursor,
        ):
            row = await cursor.fetchone()
        return None if row is None else _incident_from_row(row)

    async def active_incident(self, fingerprint: str) -> Incident | None:
        """The newest incident with this fingerprint that has not reached an end state."""
        active = sorted(s.value for s in IncidentState if not s.terminal)
        async with (
            self._reading() as conn,
            conn.execute(
                f"{_INCIDENT_SELECT} WHERE i.fingerprint = ?"
                f" AND i.state IN ({', '.join('?' * len(active))}) ORDER BY i.id DESC LIMIT 1",
                (fingerprint, *active),
            ) as cursor,
        ):
            row = await cursor.fetchone()
        return None if row is None else _incident_from_row(row)

    async def claim_delivery(self, delivery_key: str) -> bool:
        """Record a Slack delivery (retry, double click); False if it was seen before."""
        async with self._transaction() as conn:
            return await _claim(conn, delivery_key, time_text(self._clock.now()))

    # -- approvals -------------------------------------------------------

    async def add_approval(self, approval: Approval) -> bool:
        """Insert the decision with its audit row; False (nothing written) on a repeat."""
        async with self._transaction() as conn:
            cursor = await conn.execute(
                "INSERT INTO approvals (incident_id, user_id, plan_hash, decision, reason, at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (incident_id, user_id) DO NOTHING",
                (
                    approval.incident_id,
                    approval.user,
                    approval.plan_hash,
                    approval.decision.value,
                    approval.reason,
                    time_text(approval.at),
                ),
            )
            if cursor.rowcount != 1:
                return False
            detail: dict[str, Any] = {"plan_hash": approval.plan_hash}
            if approval.reason is not None:
                detail["reason"] = approval.reason
            await audit_log.append(
                conn,
                at=approval.at,
                actor=approval.user,
                action=f"approval.{approval.decision.value}",
                incident_id=approval.incident_id,
                detail=detail,
            )
            return True

    async def approvals(self, incident_id: int) -> list[Approval]:
        async with (
            self._reading() as conn,
            conn.execute(
                "SELECT incident_id, user_id, plan_hash, decision, reason, at FROM approvals"
                " WHERE incident_id = ? ORDER BY id",
                (incident_id,),
            ) as cursor,
        ):
            rows = await cursor.fetchall()
        return [
            Approval(
                incident_id=row["incident_id"],
                user=row["user_id"],
                plan_hash=row["plan_hash"],
                decision=row["decision"],
                reason=row["reason"],
                at=parse_time(row["at"]),
            )
            for row in rows
        ]

    # -- snapshots, actions, verifications ---------------------------------

    async def add_snapshot(self, snapshot: Snapshot) -> None:
        async with self._transaction() as conn:
            await conn.execute(
                "INSERT INTO snapshots (incident_id, target_executor, target_name, location,"
                " size_bytes, taken_at) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    snapshot.incident_id,
                    snapshot.target.executor,
                    snapshot.target.name,
                    snapshot.location,
                    snapshot.size_bytes,
                    time_text(snapshot.taken_at),
                ),
            )

    async def snapshots(self, incident_id: int) -> list[Snapshot]:
        async with (
            self._reading() as conn,
            conn.execute(
                "SELECT * FROM snapshots WHERE incident_id = ? ORDER BY id", (incident_id,)
            ) as cursor,
        ):
            rows = await cursor.fetchall()
        return [
            Snapshot(
                incident_id=row["incident_id"],
                target=Target(executor=row["target_executor"], name=row["target_name"]),
                location=row["location"],
                size_bytes=row["size_bytes"],
                taken_at=parse_time(row["taken_at"]),
            )
            for row in rows
        ]

    async def add_action(self, incident_id: int, result: StepResult) -> None:
        async with self._transaction() as conn:
            await conn.execute(
                "INSERT INTO actions (incident_id, action, ok, detail, seconds, at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    incident_id,
                    result.action,
                    int(result.ok),
                    result.detail,
                    result.seconds,
                    time_text(self._clock.now()),
                ),
            )

    async def actions(self, incident_id: int) -> list[StepResult]:
        """The incident's step results in the order they ran."""
        async with (
            self._reading() as conn,
            conn.execute(
                "SELECT action, ok, detail, seconds FROM actions WHERE incident_id = ? ORDER BY id",
                (incident_id,),
            ) as cursor,
        ):
            rows = await cursor.fetchall()
        return [
            StepResult(
                action=row["action"],
                ok=bool(row["ok"]),
                detail=row["detail"],
                seconds=row["seconds"],
            )
            for row in rows
        ]

    async def add_verification(self, incident_id: int, verification: Verification) -> None:
        async with self._transaction() as conn:
            await conn.execute(
                "INSERT INTO verifications (incident_id, checks, benchmarks, ok, at)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    incident_id,
                    canonical_json([c.model_dump(mode="json") for c in verification.checks]),
                    canonical_json([b.model_dump(mode="json") for b in verification.benchmarks]),
                    int(verification.ok),
                    time_text(self._clock.now()),
                ),
            )

    async def verifications(self, incident_id: int) -> list[Verification]:
        async with (
            self._reading() as conn,
            conn.execute(
                "SELECT checks, benchmarks FROM verifications WHERE incident_id = ? ORDER BY id",
                (incident_id,),
            ) as cursor,
        ):
            rows = await cursor.fetchall()
        return [
            Verification(
                checks=tuple(CheckResult.model_validate(c) for c in json.loads(row["checks"])),
                benchmarks=tuple(
                    BenchmarkResult.model_validate(b) for b in json.loads(row["benchmarks"])
                ),
            )
            for row in rows
        ]

    # -- learning --------------------------------------------------------

    async def record_outcome(self, outcome: Outcome) -> PlaybookStats:
        async with self._transaction() as conn:
            await conn.execute(
                "INSERT INTO outcomes (incident_id, playbook_id, success, seconds, final_state, at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    outcome.incident_id,
                    outcome.playbook_id,
                    int(outcome.success),
                    outcome.seconds,
                    outcome.final_state.value,
                    time_text(outcome.at),
                ),
            )
            await conn.execute(
                "INSERT INTO playbook_stats (playbook_id, attempts, successes, total_seconds,"
                " updated_at) VALUES (?, 1, ?, ?, ?)"
                " ON CONFLICT (playbook_id) DO UPDATE SET"
                " attempts = playbook_stats.attempts + 1,"
                " successes = playbook_stats.successes + excluded.successes,"
                " total_seconds = playbook_stats.total_seconds + excluded.total_seconds,"
                " updated_at = excluded.updated_at",
                (
                    outcome.playbook_id,
                    int(outcome.success),
                    outcome.seconds,
                    time_text(self._clock.now()),
                ),
            )
            return await _playbook_stats(conn, outcome.playbook_id)

    async def playbook_stats(self, playbook_id: str) -> PlaybookStats:
        async with self._reading() as conn:
            return await _playbook_stats(conn, playbook_id)

    # -- audit -----------------------------------------------------------

    async def audit(
        self,
        actor: str,
        action: str,
        *,
        incident_id: int | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        async with self._transaction() as conn:
            await audit_log.append(
                conn,
                at=self._clock.now(),
                actor=actor,
                action=action,
                incident_id=incident_id,
                detail=detail,
            )

    async def audit_entries(self, incident_id: int | None = None) -> list[AuditEntry]:
        """The whole log in order, or only one incident's rows."""
        query = "SELECT * FROM audit_log"
        params: tuple[Any, ...] = ()
        if incident_id is not None:
            query += " WHERE incident_id = ?"
            params = (incident_id,)
        async with self._reading() as conn, conn.execute(f"{query} ORDER BY seq", params) as cur:
            return [audit_log.entry_from_row(row) for row in await cur.fetchall()]

    async def verify_audit(self) -> AuditReport:
        async with self._reading() as conn:
            return await audit_log.verify_chain(conn)


class _Duplicate(Exception):
    """Raised inside ingest's transaction to roll back its delivery-key insert."""


def _rowid(cursor: aiosqlite.Cursor) -> int:
    if cursor.lastrowid is None:
        raise RuntimeError("insert returned no row id")
    return int(cursor.lastrowid)


async def _claim(conn: aiosqlite.Connection, delivery_key: str, at: str) -> bool:
    cursor = await conn.execute(
        "INSERT INTO deliveries (delivery_key, received_at) VALUES (?, ?)"
        " ON CONFLICT (delivery_key) DO NOTHING",
        (delivery_key, at),
    )
    return cursor.rowcount == 1


async def _incident(conn: aiosqlite.Connection, incident_id: int) -> Incident | None:
    async with conn.execute(f"{_INCIDENT_SELECT} WHERE i.id = ?", (incident_id,)) as cursor:
        row = await cursor.fetchone()
    return None if row is None else _incident_from_row(row)


def _incident_from_row(row: Any) -> Incident:
    alert = Alert(
        source=row["a_source"],
        source_key=row["a_source_key"],
        name=row["a_name"],
        status=row["a_status"],
        severity=row["a_severity"],
        labels=json.loads(row["a_labels"]),
        annotations=json.loads(row["a_annotations"]),
        text=row["a_text"],
        channel=row["a_channel"],
        reporter=row["a_reporter"],
        received_at=parse_time(row["a_received_at"]),
    )
    return Incident(
        id=row["id"],
        state=row["state"],
        fingerprint=row["fingerprint"],
        alert=alert,
        diagnosis=_json_model(Diagnosis, row["diagnosis"]),
        plan=_json_model(Plan, row["plan"]),
        reason=row["reason"],
        channel=row["channel"],
        card_ts=row["card_ts"],
        created_at=parse_time(row["created_at"]),
        updated_at=parse_time(row["updated_at"]),
    )


def _json_model(model: type[_M], text: str | None) -> _M | None:
    return None if text is None else model.model_validate_json(text)


async def _playbook_stats(conn: aiosqlite.Connection, playbook_id: str) -> PlaybookStats:
    async with conn.execute(
        "SELECT attempts, successes FROM playbook_stats WHERE playbook_id = ?", (playbook_id,)
    ) as cursor:
        totals = await cursor.fetchone()
    if totals is None:
        return PlaybookStats(playbook_id=playbook_id, attempts=0, successes=0, median_seconds=None)
    async with conn.execute(
        "SELECT seconds FROM outcomes WHERE playbook_id = ? ORDER BY at DESC, id DESC LIMIT ?",
        (playbook_id, MEDIAN_WINDOW),
    ) as cursor:
        recent = [float(row[0]) for row in await cursor.fetchall()]
    return PlaybookStats(
        playbook_id=playbook_id,
        attempts=int(totals["attempts"]),
        successes=int(totals["successes"]),
        median_seconds=statistics.median(recent) if recent else None,
    )
