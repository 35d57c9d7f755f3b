"""Alert intake with dedupe, as one synchronous group-writer op per delivery.

`ingest` runs in the writer thread inside the batch's transaction and its
own savepoint, so a delivery's alerts are stored all together or not at all.
Alerts of one group share the group's active incident; the partial unique
index `incidents_active_group` makes "one active incident per group" a
database guarantee, not just this code's habit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.models import Alert, AlertStatus, Incident, IncidentState, Intake
from storage import audit as audit_log
from storage.db import parse_time, time_text
from storage.rows import (
    ACTIVE,
    INCIDENT_SELECT,
    INSERT_ALERT,
    alert_params,
    incident_from_row,
    rowid,
)

_FIRING = AlertStatus.FIRING.value


def ingest(
    conn: sqlite3.Connection, alerts: Sequence[Alert], delivery_key: str, now: datetime
) -> list[Intake]:
    """`Store.ingest_alerts` inside the writer's transaction.

    The delivery key is recorded only when at least one alert was stored,
    so a delivery made wholly of alerts seen before writes nothing at all.
    """
    if conn.execute("SELECT 1 FROM deliveries WHERE delivery_key = ?", (delivery_key,)).fetchone():
        return []
    session = _Session(conn, delivery_key, now)
    intakes = [session.add(alert) for alert in alerts]
    session.flush()
    if session.stored:
        conn.execute(
            "INSERT INTO deliveries (delivery_key, received_at) VALUES (?, ?)",
            (delivery_key, session.now_text),
        )
    return intakes


@dataclass(slots=True)
class _Tracked:
    """An incident as this delivery has left it so far; written back once, at the end."""

    incident: Incident
    first_text: str
    last_text: str
    dirty: bool = False


class _Session:
    """One delivery's intake. It remembers the incidents it touched, so a storm
    of alerts in one group reads that incident once and writes its counts
    once, not once per alert; nothing else can write while its transaction
    is open, so what it remembers stays true until it commits."""

    def __init__(self, conn: sqlite3.Connection, delivery_key: str, now: datetime) -> None:
        self.conn = conn
        self.delivery_key = delivery_key
        self.now_text = time_text(now)
        # Parsed back from the stored text, so models built here equal later reads.
        self.now = parse_time(self.now_text)
        self.chain = audit_log.Chain(conn)
        self.stored = 0
        self._active: dict[str, _Tracked | None] = {}

    def add(self, alert: Alert) -> Intake:
        active = self._active_of(alert.group)
        if active is not None:
            if not self._insert_alert(alert, active.incident.id):
                return Intake(incident=None)
            return self._stored(alert, self._join(active, alert), opened=False)
        if alert.status is AlertStatus.FIRING:
            if self._seen(alert):
                return Intake(incident=None)
            incident = self._open(alert)
            self._insert_alert(alert, incident.id)
            return self._stored(alert, incident, opened=True)
        if not self._insert_alert(alert, None):
            return Intake(incident=None)
        return self._stored(alert, None, opened=False)

    def flush(self) -> None:
        for tracked in self._active.values():
            if tracked is None or not tracked.dirty:
                continue
            incident = tracked.incident
            self.conn.execute(
                "UPDATE incidents SET alert_count = ?, firing_count = ?, first_seen = ?,"
                " last_seen = ?, updated_at = ? WHERE id = ?",
                (
                    incident.alert_count,
                    incident.firing_count,
                    tracked.first_text,
                    tracked.last_text,
                    self.now_text,
                    incident.id,
                ),
            )

    def _seen(self, alert: Alert) -> bool:
        return (
            self.conn.execute(
                "SELECT 1 FROM alerts WHERE source = ? AND source_key = ?",
                (alert.source, alert.source_key),
            ).fetchone()
            is not None
        )

    def _insert_alert(self, alert: Alert, incident_id: int | None) -> bool:
        """Store the alert row; False when (source, source_key) was stored before."""
        cursor = self.conn.execute(INSERT_ALERT, alert_params(alert, incident_id))
        return cursor.rowcount == 1

    def _active_of(self, group: str) -> _Tracked | None:
        if group not in self._active:
            row = self.conn.execute(
                f"{INCIDENT_SELECT} WHERE i.fingerprint = ? AND {ACTIVE}", (group,)
            ).fetchone()
            self._active[group] = None if row is None else _tracked(incident_from_row(row))
        return self._active[group]

    def _open(self, alert: Alert) -> Incident:
        seen_text = time_text(alert.received_at)
        cursor = self.conn.execute(
            "INSERT INTO incidents (state, fingerprint, alert_name, channel, created_at,"
            " updated_at, version, alert_count, firing_count, first_seen, last_seen)"
            " VALUES (?, ?, ?, ?, ?, ?, 1, 1, 1, ?, ?)",
            (
                IncidentState.OPEN.value,
                alert.group,
                alert.name,
                alert.channel,
                self.now_text,
                self.now_text,
                seen_text,
                seen_text,
            ),
        )
        seen = parse_time(seen_text)
        incident = Incident(
            id=rowid(cursor),
            state=IncidentState.OPEN,
            fingerprint=alert.group,
            alert=alert,
            alert_count=1,
            firing_count=1,
            first_seen=seen,
            last_seen=seen,
            channel=alert.channel,
            created_at=self.now,
            updated_at=self.now,
        )
        self._member(incident.id, alert, seen_text, previous=None)
        self._active[alert.group] = _Tracked(incident, seen_text, seen_text)
        return incident

    def _join(self, tracked: _Tracked, alert: Alert) -> Incident:
        incident = tracked.incident
        seen_text = time_text(alert.received_at)
        previous = self.conn.execute(
            "SELECT status, first_seen, last_seen FROM incident_alerts"
            " WHERE incident_id = ? AND fingerprint = ?",
            (incident.id, alert.fingerprint),
        ).fetchone()
        self._member(incident.id, alert, seen_text, previous)
        was_firing = previous is not None and previous["status"] == _FIRING
        changes: dict[str, Any] = {
            "alert_count": incident.alert_count + 1,
            "firing_count": incident.firing_count
            + (alert.status is AlertStatus.FIRING)
            - was_firing,
            "updated_at": self.now,
        }
        # Stored times are fixed-width UTC text, so text order is time order.
        if seen_text < tracked.first_text:
            tracked.first_text = seen_text
            changes["first_seen"] = parse_time(seen_text)
        if seen_text > tracked.last_text:
            tracked.last_text = seen_text
            changes["last_seen"] = parse_time(seen_text)
        tracked.incident = incident.model_copy(update=changes)
        tracked.dirty = True
        return tracked.incident

    def _member(
        self, incident_id: int, alert: Alert, seen_text: str, previous: sqlite3.Row | None
    ) -> None:
        """The member alert's latest status wins; its count and times accumulate."""
        if previous is None:
            self.conn.execute(
                "INSERT INTO incident_alerts (incident_id, fingerprint, status, first_seen,"
                " last_seen, count) VALUES (?, ?, ?, ?, ?, 1)",
                (incident_id, alert.fingerprint, alert.status.value, seen_text, seen_text),
            )
            return
        self.conn.execute(
            "UPDATE incident_alerts SET status = ?, first_seen = ?, last_seen = ?,"
            " count = count + 1 WHERE incident_id = ? AND fingerprint = ?",
            (
                alert.status.value,
                min(previous["first_seen"], seen_text),
                max(previous["last_seen"], seen_text),
                incident_id,
                alert.fingerprint,
            ),
        )

    def _stored(self, alert: Alert, incident: Incident | None, *, opened: bool) -> Intake:
        """Audit a stored alert and say what storing it did."""
        incident_id = None if incident is None else incident.id
        self.chain.write(
            at=self.now,
            actor=alert.reporter or alert.source,
            action="alert.received",
            incident_id=incident_id,
            detail={
                "source": alert.source,
                "source_key": alert.source_key,
                "name": alert.name,
                "status": alert.status.value,
                "fingerprint": alert.fingerprint,
                "group": alert.group,
                "incident_id": incident_id,
                "opened": opened,
                "delivery_key": self.delivery_key,
            },
        )
        self.stored += 1
        all_clear = (
            incident is not None
            and alert.status is AlertStatus.RESOLVED
            and incident.firing_count == 0
        )
        return Intake(incident=incident, opened=opened, all_clear=all_clear)


def _tracked(incident: Incident) -> _Tracked:
    first = incident.first_seen or incident.created_at
    last = incident.last_seen or incident.created_at
    return _Tracked(incident, time_text(first), time_text(last))
