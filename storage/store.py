"""`engine.ports.Store` on SQLite: group-committed writes, aiosqlite reads.

Every write is a plain synchronous function run by the GroupWriter in its
own thread, batched with whatever other writes are queued into one
`BEGIN IMMEDIATE ... COMMIT`; the caller resumes when that batch is durable.
Reads go through one aiosqlite connection: in WAL mode a read sees every
batch committed before it started. Compare-and-set lives in the SQL itself
(`WHERE state = ?`), so it also holds between processes sharing the file.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import aiosqlite

from engine.autonomy import TierChange, TierProposal
from engine.models import (
    UNHEALED_ENDS,
    Alert,
    Approval,
    AuditEntry,
    BenchmarkResult,
    CheckResult,
    Diagnosis,
    Incident,
    IncidentState,
    Intake,
    Outcome,
    Pause,
    Plan,
    PlaybookStats,
    Snapshot,
    StepResult,
    Target,
    TargetHold,
    Verification,
    can_transition,
    canonical_json,
    holds_target,
)
from engine.ports import Clock
from engine.stats import StatsReport, periods
from engine.weekly import Period, WeeklyReport
from storage import audit as audit_log
from storage import controls, hourly, intake
from storage import holds as hold_rows
from storage import home as home_rows
from storage import inbox as inbox_rows
from storage import outbox as outbox_rows
from storage import outcomes as outcome_rows
from storage import proposals as proposal_rows
from storage import reports as report_rows
from storage import rollups as rollup_rows
from storage import stats as stats_rows
from storage import tiers as tier_rows
from storage import weekly as weekly_rows
from storage.audit import AuditReport
from storage.db import connect, migrate, parse_time, time_text
from storage.loop_commits import LoopCommits
from storage.outbox import Card, OutboxItem
from storage.rollups import StormRule
from storage.rows import (
    ACTIVE,
    INCIDENT_SELECT,
    MEDIAN_WINDOW,
    STATS_RECENT,
    STATS_TOTALS,
    incident_from_row,
    read_incident,
    stats_from,
)
from storage.writer import DEFAULT_MAX_BATCH, GroupWriter

__all__ = ["MEDIAN_WINDOW", "OutboxItem", "SqliteStore"]

T = TypeVar("T")


class SqliteStore:
    """The embedded store; `SqliteStore.open(path, clock)` is the way in."""

    def __init__(
        self,
        reader: aiosqlite.Connection,
        writer: GroupWriter,
        clock: Clock,
        on_state: Callable[[IncidentState], None] | None = None,
    ) -> None:
        self._conn = reader
        self.writer = writer
        self.loop_commits = LoopCommits.open(writer.path, writer)
        self._clock = clock
        # Told each state an incident enters, once it is durable (metrics count these).
        self._on_state = on_state or (lambda state: None)
        self._lock = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------

    @classmethod
    async def open(
        cls,
        path: str | Path,
        clock: Clock,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        on_state: Callable[[IncidentState], None] | None = None,
    ) -> SqliteStore:
        """Connect, bring the schema up to date, then start the writer.

        Migrations run first, on the read connection, so the writer never
        sees a half-migrated schema.
        """
        reader = await connect(path)
        try:
            await migrate(reader)
            writer = await GroupWriter.start(path, max_batch=max_batch)
        except BaseException:
            await reader.close()
            raise
        return cls(reader, writer, clock, on_state)

    async def close(self) -> None:
        """Finish the queued writes, then close both connections."""
        self.loop_commits.close()
        await self.writer.close()
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

    async def _write(self, op: Callable[[sqlite3.Connection], T]) -> T:
        return await self.writer.run(op)

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[aiosqlite.Connection]:
        """One read at a time on the read connection.

        A cursor left open by one coroutine would hold its read snapshot
        open, and another coroutine's query on the same connection would
        then miss batches committed since: it could fail to see its own write.
        """
        async with self._lock:
            yield self._conn

    async def _fetchone(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        async with self._reading() as conn, conn.execute(sql, params) as cursor:
            return await cursor.fetchone()

    async def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        async with self._reading() as conn, conn.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    # -- incidents -------------------------------------------------------

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
        delivery = intake.Delivery(tuple(alerts), delivery_key, self._clock.now())
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
        writer moved it first.
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
        rows = await self._fetchall(
            f"{INCIDENT_SELECT} {where} ORDER BY i.id DESC LIMIT ?", (*params, limit)
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

    # -- targets in safe hold --------------------------------------------

    async def target_hold(self, target: Target) -> TargetHold | None:
        row = await self._fetchone(
            f"{hold_rows.ACTIVE_SELECT} AND target_executor = ? AND target_name = ? ORDER BY id",
            (target.executor, target.name),
        )
        return None if row is None else hold_rows.from_row(row)

    async def holds(self) -> list[TargetHold]:
        return [
            hold_rows.from_row(row)
            for row in await self._fetchall(f"{hold_rows.ACTIVE_SELECT} ORDER BY id")
        ]

    async def clear_holds(self, name: str, *, actor: str) -> list[TargetHold]:
        now = self._clock.now()
        return await self._write(lambda conn: hold_rows.clear(conn, name, actor, now))

    # -- the kill switch -------------------------------------------------

    async def paused(self) -> Pause | None:
        async with self._reading() as conn:
            cursor = await conn.execute(
                "SELECT value FROM controls WHERE name = ?", (controls.PAUSE,)
            )
            row = await cursor.fetchone()
        return None if row is None else Pause.model_validate_json(row[0])

    async def set_pause(self, pause: Pause | None, *, actor: str) -> None:
        now = self._clock.now()
        await self._write(lambda conn: controls.write_pause(conn, pause, actor, now))

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

    # -- snapshots, actions, verifications ---------------------------------

    async def add_snapshot(self, snapshot: Snapshot) -> None:
        params = (
            snapshot.incident_id,
            snapshot.target.executor,
            snapshot.target.name,
            snapshot.location,
            snapshot.size_bytes,
            time_text(snapshot.taken_at),
            canonical_json(snapshot.state),
        )
        await self._execute(
            "INSERT INTO snapshots (incident_id, target_executor, target_name, location,"
            " size_bytes, taken_at, state) VALUES (?, ?, ?, ?, ?, ?, ?)",
            params,
            audit=(
                "snapshot.taken",
                snapshot.incident_id,
                {"location": snapshot.location, "size_bytes": snapshot.size_bytes},
            ),
        )

    async def snapshots(self, incident_id: int) -> list[Snapshot]:
        rows = await self._fetchall(
            "SELECT * FROM snapshots WHERE incident_id = ? ORDER BY id", (incident_id,)
        )
        return [
            Snapshot(
                incident_id=row["incident_id"],
                target=Target(executor=row["target_executor"], name=row["target_name"]),
                location=row["location"],
                size_bytes=row["size_bytes"],
                taken_at=parse_time(row["taken_at"]),
                state=json.loads(row["state"]),
            )
            for row in rows
        ]

    async def add_action(self, incident_id: int, result: StepResult) -> None:
        await self._execute(
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
            audit=(
                "step.finished",
                incident_id,
                {
                    "action": result.action,
                    "ok": result.ok,
                    "seconds": round(result.seconds, 3),
                    "detail": result.detail[:500],
                },
            ),
        )

    async def actions(self, incident_id: int) -> list[StepResult]:
        """The incident's step results in the order they ran."""
        rows = await self._fetchall(
            "SELECT action, ok, detail, seconds FROM actions WHERE incident_id = ? ORDER BY id",
            (incident_id,),
        )
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
        await self._execute(
            "INSERT INTO verifications (incident_id, checks, benchmarks, ok, at)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                incident_id,
                canonical_json([c.model_dump(mode="json") for c in verification.checks]),
                canonical_json([b.model_dump(mode="json") for b in verification.benchmarks]),
                int(verification.ok),
                time_text(self._clock.now()),
            ),
            audit=(
                "verification",
                incident_id,
                {
                    "ok": verification.ok,
                    "failed": [c.check for c in verification.checks if not c.ok]
                    + [b.benchmark for b in verification.benchmarks if not b.ok],
                },
            ),
        )

    async def verifications(self, incident_id: int) -> list[Verification]:
        rows = await self._fetchall(
            "SELECT checks, benchmarks FROM verifications WHERE incident_id = ? ORDER BY id",
            (incident_id,),
        )
        return [
            Verification(
                checks=tuple(CheckResult.model_validate(c) for c in json.loads(row["checks"])),
                benchmarks=tuple(
                    BenchmarkResult.model_validate(b) for b in json.loads(row["benchmarks"])
                ),
            )
            for row in rows
        ]

    async def _execute(
        self, sql: str, params: Sequence[Any], *, audit: tuple[str, int, dict[str, Any]]
    ) -> None:
        """One statement and the audit row that records it, group-committed together."""
        action, incident_id, detail = audit
        now = self._clock.now()

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(sql, params)
            audit_log.append(
                conn, at=now, actor="grace", action=action, incident_id=incident_id, detail=detail
            )

        await self._write(op)

    # -- learning --------------------------------------------------------

    async def record_outcome(self, outcome: Outcome) -> PlaybookStats:
        """Append the heal and update the playbook's pre-aggregated stats, atomically."""
        now = self._clock.now()
        return await self._write(lambda conn: outcome_rows.record_heal(conn, outcome, now))

    async def playbook_tiers(self) -> dict[str, TierChange]:
        """Playbooks whose tier was changed from the catalog's, by id."""
        return {
            row["playbook_id"]: tier_rows.from_row(row)
            for row in await self._fetchall(tier_rows.ALL)
        }

    async def change_tier(self, change: TierChange) -> None:
        """A playbook's new tier, with its audit row, in one transaction (an open
        proposal for it is dismissed there too: it was about the old tier)."""
        await self._write(lambda conn: proposal_rows.change_tier(conn, change))

    async def propose_tier(self, proposal: TierProposal, *, quiet_runs: int) -> TierProposal | None:
        return await self._write(lambda conn: proposal_rows.propose(conn, proposal, quiet_runs))

    async def open_proposals(self) -> list[TierProposal]:
        return [proposal_rows.from_row(row) for row in await self._fetchall(proposal_rows.OPEN)]

    async def tier_proposal(self, proposal_id: int) -> TierProposal | None:
        row = await self._fetchone(proposal_rows.BY_ID, (proposal_id,))
        return None if row is None else proposal_rows.from_row(row)

    async def decide_proposal(self, decided: TierProposal, change: TierChange | None) -> bool:
        return await self._write(lambda conn: proposal_rows.decide(conn, decided, change))

    async def playbook_stats(self, playbook_id: str) -> PlaybookStats:
        # Both queries in one read transaction, so totals and median agree.
        async with self._reading() as conn:
            await conn.execute("BEGIN")
            try:
                async with conn.execute(STATS_TOTALS, (playbook_id,)) as cursor:
                    totals = await cursor.fetchone()
                recent: list[Any] = []
                if totals is not None:
                    async with conn.execute(STATS_RECENT, (playbook_id, MEDIAN_WINDOW)) as cursor:
                        recent = list(await cursor.fetchall())
            finally:
                await conn.execute("COMMIT")
        return stats_from(playbook_id, totals, recent)

    # -- audit -----------------------------------------------------------

    async def audit(
        self,
        actor: str,
        action: str,
        *,
        incident_id: int | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        at = self._clock.now()
        frozen = dict(detail or {})

        def op(conn: sqlite3.Connection) -> None:
            audit_log.append(
                conn, at=at, actor=actor, action=action, incident_id=incident_id, detail=frozen
            )

        await self._write(op)

    async def audit_entries(
        self, incident_id: int | None = None, *, since: datetime | None = None
    ) -> list[AuditEntry]:
        """The whole log in order, or only one incident's rows.

        A delivery's `alerts.received` row is one incident's row only when
        the delivery touched that incident alone; one that touched several
        names them in its detail (`incidents`) and has no incident_id.
        """
        where, params = [], []
        if incident_id is not None:
            where.append("incident_id = ?")
            params.append(incident_id)
        if since is not None:
            where.append("at >= ?")  # stored as UTC ISO text: text order is time order
            params.append(time_text(since))
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = await self._fetchall(f"SELECT * FROM audit_log{clause} ORDER BY seq", params)
        return [audit_log.entry_from_row(row) for row in rows]

    async def verify_audit(self) -> AuditReport:
        async with self._reading() as conn:
            return await audit_log.verify_chain(conn)

    async def verify_alert_digests(self) -> intake.DigestReport:
        """Each delivery's audit row against the alert rows it attests (see
        `intake.alerts_digest`); run it after `verify_audit` proves the rows."""
        async with self._reading() as conn:
            return await intake.verify_alert_digests(conn)

    # -- the Slack outbox ------------------------------------------------

    async def enqueue(
        self,
        channel: str,
        kind: str,
        payload: Mapping[str, Any],
        *,
        incident_id: int | None = None,
        user_id: str | None = None,
        coalesce_key: str | None = None,
        once: bool = False,
        priority: int = 10,
        unless_rolled_up: bool = False,
    ) -> int | None:
        """Store a Slack write for the worker; returns its outbox id (None: not
        queued, its incident being shown only as a rollup line, if so asked).

        With a coalesce key, a pending row with that key that is not its
        lane's head (which may be in flight) takes the new payload in place,
        keeping its id and so its place in line; with `once` too, a write with
        that key ever queued is that write, and nothing is added. An ephemeral
        identical to one not yet delivered to that person is that one.
        """
        payload_text = canonical_json(dict(payload))  # not JSON: fails here, not in the batch
        now_text = time_text(self._clock.now())
        return await self._write(
            lambda conn: outbox_rows.enqueue(
                conn,
                channel=channel,
                kind=kind,
                payload_text=payload_text,
                incident_id=incident_id,
                user_id=user_id,
                coalesce_key=coalesce_key,
                now_text=now_text,
                once=once,
                priority=priority,
                unless_rolled_up=unless_rolled_up,
            )
        )

    async def outbox_heads(self, now: datetime) -> list[OutboxItem]:
        """Each lane's oldest unsettled write, if it is due by `now`; oldest first."""
        rows = await self._fetchall(outbox_rows.HEADS_DUE, (time_text(now),))
        return [outbox_rows.item_from_row(row) for row in rows]

    async def outbox_next_due(self, now: datetime) -> datetime | None:
        """When the earliest lane head not due by `now` becomes due; None if there is none
        (the heads due by `now` are `outbox_heads(now)`)."""
        row = await self._fetchone(outbox_rows.NEXT_DUE, (time_text(now),))
        return None if row is None or row[0] is None else parse_time(row[0])

    async def begin_send(self, item_id: int) -> None:
        """Committed before the Slack call, so a crash after it is looked up, not re-sent."""
        await self.loop_commits.run(lambda conn: outbox_rows.begin_send(conn, item_id))

    async def mark_sent(self, item_id: int, slack_ts: str | None) -> None:
        """Delivered; a delivered post_card also records the incident's card."""
        now_text = time_text(self._clock.now())
        await self.loop_commits.run(
            lambda conn: outbox_rows.mark_sent(conn, item_id, slack_ts, now_text)
        )

    async def retry_later(
        self, item_id: int, not_before: datetime, error: str, *, maybe_delivered: bool = False
    ) -> None:
        """Not delivered this time; the row stays its lane's head until `not_before`.
        `maybe_delivered`: Slack's answer was lost or a 5xx, so look before re-posting."""
        not_before_text = time_text(not_before)
        await self._write(
            lambda conn: outbox_rows.retry_later(
                conn, item_id, not_before_text, error, maybe_delivered=maybe_delivered
            )
        )

    async def drop(self, item_id: int, error: str) -> None:
        """Slack refused it for good: kept for the record, no longer in line."""
        await self._write(lambda conn: outbox_rows.drop(conn, item_id, error))

    async def outbox_pending(self) -> int:
        row = await self._fetchone(outbox_rows.PENDING_COUNT)
        return 0 if row is None else int(row[0])

    async def card_of(self, incident_id: int) -> Card | None:
        """Where the incident's live card is, once it was delivered."""
        row = await self._fetchone(outbox_rows.CARD_OF, (incident_id,))
        if row is None:
            return None
        return Card(str(row["channel"]), str(row["card_ts"]), row["thread_ts"])

    # -- storms: rollups instead of cards that would wait ---------------------

    async def place_card(
        self, incident: Incident, *, priority: int, needs_someone: bool, rule: StormRule
    ) -> rollup_rows.Placement:
        """Queue the incident's card, or show it in its channel's rollup."""
        now_text = time_text(self._clock.now())
        return await self._write(
            lambda conn: rollup_rows.place_card(
                conn,
                incident,
                priority=priority,
                needs_someone=needs_someone,
                rule=rule,
                now_text=now_text,
            )
        )

    async def promote(
        self, incident_id: int, *, priority: int, story_priority: int, story_text: str
    ) -> bool:
        """A card of its own for an incident shown in a rollup, with its story so far;
        False when its card was queued already."""
        now_text = time_text(self._clock.now())
        return await self._write(
            lambda conn: rollup_rows.promote(
                conn,
                incident_id,
                priority=priority,
                story_priority=story_priority,
                story_text=story_text,
                now_text=now_text,
            )
        )

    async def refresh_rollup_of(self, incident_id: int) -> bool:
        """Redraw the rollup line of an incident shown only there; False if it has a card."""
        now_text = time_text(self._clock.now())
        return await self._write(lambda conn: rollup_rows.refresh_of(conn, incident_id, now_text))

    async def rolled_up_incidents(self) -> dict[int, int]:
        """Every incident shown only as a rollup line, and the rollup it is in."""
        rows = await self._fetchall(rollup_rows.ROLLED_UP_ALL)
        return {int(row["id"]): int(row["rollup_id"]) for row in rows}

    async def rollup(self, rollup_id: int) -> rollup_rows.Rollup | None:
        """A rollup and its incidents, as of one moment."""
        async with self._reading() as conn:
            return await report_rows.consistent(conn, lambda c: rollup_rows.read(c, rollup_id))

    # -- the inbox of Slack deliveries -------------------------------------

    async def accept_delivery(self, key: str, kind: str, payload: Mapping[str, Any]) -> int | None:
        """Commit a delivery before Slack is answered; None when its key was seen.
        On the loop's own connection when it can: the ack waits for this commit."""
        text, now = canonical_json(dict(payload)), time_text(self._clock.now())
        return await self.loop_commits.run(
            lambda conn: inbox_rows.accept(conn, key, kind, text, now)
        )

    async def delivery_handled(self, delivery_id: int) -> None:
        now = time_text(self._clock.now())
        await self._write(lambda conn: inbox_rows.handled(conn, delivery_id, now))

    async def unhandled_deliveries(self) -> list[inbox_rows.Delivery]:
        """Deliveries accepted but not handled (GRACE died in between), oldest first."""
        return [inbox_rows.delivery_from_row(r) for r in await self._fetchall(inbox_rows.UNHANDLED)]

    async def forget_deliveries(self, before: datetime) -> None:
        """Drop handled deliveries older than `before`: their keys only guard retries."""
        text = time_text(before)
        await self._write(lambda conn: conn.execute(inbox_rows.HANDLED_BEFORE, (text,)))

    async def card_queued(self, incident_id: int) -> bool:
        """Whether the incident's card was ever queued (sent or not): a card is
        posted once, and GRACE may have died between an incident's move and it."""
        return await self._fetchone(inbox_rows.CARD_QUEUED, (incident_id,)) is not None

    # -- reports for people ------------------------------------------------

    async def status_rows(self, limit: int = 20) -> report_rows.StatusRows:
        """`/grace status`: open incidents by state, the first `limit` pending
        approvals (soonest deadline first) and the outbox backlog, as of one moment."""
        async with self._reading() as conn:
            return await report_rows.consistent(conn, lambda c: report_rows.status(c, limit))

    async def incident_page(
        self, *, open_only: bool, limit: int = 20
    ) -> report_rows.Page[Incident]:
        """`/grace incidents`: the newest `limit` incidents (not ended, or all) and their total."""
        async with self._reading() as conn:
            return await report_rows.consistent(
                conn, lambda c: report_rows.incident_page(c, open_only, limit)
            )

    async def stats(self, *, until: datetime, days: int) -> StatsReport:
        """`/grace stats`: the last `days` days up to `until`, and as many before them,
        read in one transaction."""
        current, previous = periods(until, days)
        async with self._reading() as conn:
            return await report_rows.consistent(
                conn, lambda c: stats_rows.stats_report(c, current, previous)
            )

    async def incident_story(self, incident_id: int) -> report_rows.IncidentStory | None:
        """`/grace incidents N`: everything stored about one incident; None if unknown."""
        async with self._reading() as conn:
            return await report_rows.consistent(conn, lambda c: report_rows.story(c, incident_id))

    # -- the weekly report -------------------------------------------------------

    async def weekly_report(self, period: Period, tz: str, days: list[Period]) -> WeeklyReport:
        """The report's numbers for `period` and each of its `days`, in one transaction."""
        async with self._reading() as conn:
            return await report_rows.consistent(
                conn, lambda c: weekly_rows.read_report(c, period, tz, days)
            )

    async def installed_at(self) -> datetime:
        """When this database was created (its first migration)."""
        row = await self._fetchone("SELECT applied_at FROM schema_version ORDER BY version LIMIT 1")
        assert row is not None, "an open store is migrated"
        return parse_time(row[0])

    async def report_claimed(self, period: Period) -> bool:
        return await self._fetchone(weekly_rows.REPORTED, (time_text(period.end),)) is not None

    async def claim_report(
        self, period: Period, channel: str, message: Mapping[str, Any], chart: Mapping[str, Any]
    ) -> bool:
        """Claim the period and queue its message and chart at once; False if claimed before."""
        now_text = time_text(self._clock.now())
        return await self._write(
            lambda conn: weekly_rows.claim(conn, period, channel, message, chart, now_text)
        )

    async def sent_ts(self, item_id: int) -> str | None:
        """The Slack ts an outbox row became, once it was sent."""
        row = await self._fetchone(
            "SELECT slack_ts FROM outbox WHERE id = ? AND state = 'sent'", (item_id,)
        )
        return None if row is None else row[0]

    # -- App Home ------------------------------------------------------------

    async def home_opened(self, user: str, channel: str) -> None:
        """`user` opened GRACE's Home (its channel is `channel`): committed before
        Slack is answered, so a restart still republishes theirs."""
        now = time_text(self._clock.now())
        await self._write(lambda conn: home_rows.opened(conn, user, channel, now))

    async def home_notice(self, user: str, text: str) -> bool:
        """GRACE's answer to `user` on their Home; False when they never opened it."""
        now = time_text(self._clock.now())
        return await self._write(lambda conn: home_rows.notice(conn, user, text, now))

    async def home_viewers(self) -> list[home_rows.Viewer]:
        """Everyone who ever opened the Home: one row a person."""
        return [home_rows.viewer_from_row(r) for r in await self._fetchall(home_rows.VIEWERS)]

    async def home_rows(
        self, week: tuple[datetime, datetime], *, pending_limit: int, open_limit: int
    ) -> home_rows.HomeRows:
        """What every Home shows, as of one moment; `week` is [start, end)."""
        bounds = (time_text(week[0]), time_text(week[1]))
        async with self._reading() as conn:
            return await report_rows.consistent(
                conn, lambda c: home_rows.rows(c, bounds, pending_limit, open_limit)
            )
