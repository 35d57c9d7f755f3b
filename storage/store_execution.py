"""`SqliteStore`'s record of a run: snapshots taken, steps run, verifications."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from engine.models import (
    BenchmarkResult,
    CheckResult,
    Snapshot,
    StepResult,
    Target,
    Verification,
    canonical_json,
)
from storage import audit as audit_log
from storage.db import parse_time, time_text
from storage.store_core import StoreCore


class ExecutionMixin(StoreCore):
    """What a run did, each row written with the audit row that records it."""

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
