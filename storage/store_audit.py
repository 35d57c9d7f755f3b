"""`SqliteStore`'s audit log: appending, reading, and proving it unchanged."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from engine.models import AuditEntry
from engine.records import AuditReport, DigestReport
from storage import alert_digests
from storage import audit as audit_log
from storage.db import time_text
from storage.store_core import StoreCore


class AuditMixin(StoreCore):
    """The append-only, hash-chained log, and the checks run over it."""

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
        where: list[str] = []
        params: list[object] = []
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

    async def verify_alert_digests(self) -> DigestReport:
        """Each delivery's audit row against the alert rows it attests (see
        `alert_digests.alerts_digest`); run it after `verify_audit` proves the rows."""
        async with self._reading() as conn:
            return await alert_digests.verify_alert_digests(conn)
