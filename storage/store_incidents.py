"""`SqliteStore`'s incidents: intake, compare-and-set moves, the lists the
engine and its timers ask for, and the approvals decided on them."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from engine.models import (
    RUNNING_STATES,
    UNHEALED_ENDS,
    Alert,
    Approval,
    Diagnosis,
    Incident,
    IncidentState,
    Intake,
    Plan,
    can_transition,
    canonical_json,
    holds_target,
)
from storage import audit as audit_log
from storage import holds as hold_rows
from storage import hourly, intake
from storage import outcomes as outcome_rows
from storage.db import parse_time, time_text
from storage.intake_state import Delivery
from storage.rows import ACTIVE, INCIDENT_SELECT, incident_from_row, read_incident
from storage.store_core import StoreCore


class IncidentsMixin(StoreCore):
    """Incidents from their alerts to their end, and the approvals on them."""

    async def ingest_alerts(self, alerts: Sequence[Alert], delivery_key: str) -> list[Intake]:
        """Store a delivery's alerts in one transaction, one Intake per alert, in order.

        Each alert joins the active (non-terminal) incident of its group, or
        firing, opens a new one; a resolved alert with no active incident is
        stored with none. A delivery key seen before returns [] and writes
        nothing; an alert whose (source, source_key) was seen before, in an
        earlier delivery or earlier in this one, gets Intake(incident=None)
        and is not stored again.

        Intake.incident is the incident as the whole delivery left it: the
        Intakes of one incident share one Incident object, counted after all
        of the delivery's alerts. `opened` and `all_clear` are per alert.
        The delivery gets one `alerts.received` audit row that attests every
        alert it stored (see `storage.intake`).
        """
        delivery = Delivery(tuple(alerts), delivery_key, self._clock.now())
        # Deliveries queued together share one intake pass (see storage.intake).
        intakes = await self.writer.run_merged(intake.ingest, delivery)
        for _ in range(sum(i.opened for i in intakes)):
            self._on_state(IncidentState.OPEN)
        return intakes

    async def get_incident(self, incident_id: int) -> Incident | None:
        row = await self._fetchone(f"{INCIDENT_SELECT} WHERE i.id = ?", (incident_id,))
        return None if row is None else incident_from_row(row)

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
        deadline: datetime | None = None,
        remind_at: datetime | None = None,
    ) -> Incident | None:
        """Compare-and-set: move the incident only if it is still `expected`.

        The state write, its audit row and its period counts (storage/hourly.py)
        are one transaction. Returns the new incident, or None when another
        writer moved it first. A move into a running state records this store's
        replica as the incident's runner in the same write.
        """
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
        if deadline is not None:
            sets.append("approval_deadline = ?")
            params.append(time_text(deadline))
            detail["deadline"] = time_text(deadline)
        if remind_at is not None:
            sets.append("remind_at = ?")
            params.append(time_text(remind_at))
        if new in RUNNING_STATES:
            # Whoever moves a plan on runs it: a replica that dies leaves it to be taken over.
            sets.append("run_by = ?")
            params.append(self.replica)
        update = f"UPDATE incidents SET {', '.join(sets)} WHERE id = ? AND state = ?"

        def op(conn: sqlite3.Connection) -> Incident | None:
            cursor = conn.execute(update, (*params, incident_id, expected.value))
            if cursor.rowcount != 1:
                return None
            audit_log.append(
                conn,
                at=now,
                actor=actor,
                action=f"incident.{new.value}",
                incident_id=incident_id,
                detail=detail,
            )
            moved = read_incident(conn, incident_id)
            if moved is not None:
                hourly.moved(conn, moved, expected)
            if moved is not None and moved.plan is not None and holds_target(expected, new):
                hold_rows.hold(conn, moved.plan.target, incident_id, reason or new.value, now)
            if moved is not None and new in UNHEALED_ENDS:
                outcome_rows.record_end(conn, moved, now)
            return moved

        moved = await self._write(op)
        if moved is not None:
            self._on_state(new)
        return moved

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
        # A negative limit is every row, as SQLite reads it (PostgreSQL's is LIMIT ALL).
        bound = "LIMIT ?" if limit >= 0 else ""
        rows = await self._fetchall(
            f"{INCIDENT_SELECT} {where} ORDER BY i.id DESC {bound}",
            (*params, limit) if limit >= 0 else params,
        )
        return [incident_from_row(row) for row in rows]

    async def incidents_in(self, states: Iterable[IncidentState]) -> list[Incident]:
        """Every incident now in one of `states` (few: only live states are asked for)."""
        return await self.list_incidents(limit=-1, states=states)

    async def due_to_expire(self, now: datetime) -> list[Incident]:
        rows = await self._fetchall(
            f"{INCIDENT_SELECT} WHERE i.state = ? AND i.approval_deadline <= ? ORDER BY i.id",
            (IncidentState.AWAITING_APPROVAL.value, time_text(now)),
        )
        return [incident_from_row(row) for row in rows]

    async def due_for_reminder(self, now: datetime) -> list[Incident]:
        rows = await self._fetchall(
            f"{INCIDENT_SELECT} WHERE i.state = ? AND i.remind_at <= ?"
            " AND i.reminded_at IS NULL ORDER BY i.id",
            (IncidentState.AWAITING_APPROVAL.value, time_text(now)),
        )
        return [incident_from_row(row) for row in rows]

    async def mark_reminded(self, incident_id: int) -> bool:
        """Claim the one reminder: False when it was already sent (another replica, say)."""
        now = time_text(self._clock.now())

        def op(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE incidents SET reminded_at = ? WHERE id = ? AND reminded_at IS NULL",
                (now, incident_id),
            )
            return cursor.rowcount == 1

        return await self._write(op)

    async def incident_for_card(self, channel: str, ts: str) -> Incident | None:
        """The incident whose live card is message `ts` in `channel` (button clicks)."""
        row = await self._fetchone(
            f"{INCIDENT_SELECT} WHERE i.channel = ? AND i.card_ts = ? ORDER BY i.id DESC LIMIT 1",
            (channel, ts),
        )
        return None if row is None else incident_from_row(row)

    async def active_incident(self, fingerprint: str) -> Incident | None:
        """The active (non-terminal) incident of a group; the database allows one at most."""
        row = await self._fetchone(
            f"{INCIDENT_SELECT} WHERE i.fingerprint = ? AND {ACTIVE}", (fingerprint,)
        )
        return None if row is None else incident_from_row(row)

    # -- approvals -------------------------------------------------------

    async def add_approval(self, approval: Approval) -> bool:
        """Insert the decision with its audit row; False (nothing written) on a repeat."""
        detail: dict[str, Any] = {"plan_hash": approval.plan_hash}
        if approval.reason is not None:
            detail["reason"] = approval.reason

        def op(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
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
            hourly.approved(conn, approval, time_text(approval.at))
            audit_log.append(
                conn,
                at=approval.at,
                actor=approval.user,
                action=f"approval.{approval.decision.value}",
                incident_id=approval.incident_id,
                detail=detail,
            )
            return True

        return await self._write(op)

    async def approvals(self, incident_id: int) -> list[Approval]:
        rows = await self._fetchall(
            "SELECT incident_id, user_id, plan_hash, decision, reason, at FROM approvals"
            " WHERE incident_id = ? ORDER BY id",
            (incident_id,),
        )
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
