"""Alert intake with dedupe, as one group-writer pass over queued deliveries.

`ingest` runs in the writer thread inside the batch's transaction and a
savepoint. It takes every delivery queued back to back (the writer merges
them, see `GroupWriter.run_merged`) and gives each exactly what it would
have got alone, had they run one after another in order. Should the pass
fail, the writer runs each delivery again on its own, so a delivery's
alerts are still stored all together or not at all. Alerts of one group
share the group's active incident; the partial unique index
`incidents_active_group` makes "one active incident per group" a database
guarantee, not just this code's habit.

A storm arrives as many deliveries at once, of one alert or of many, so the
work is per pass wherever it can be, and what is left per alert is plain
Python and one row in an `executemany`:

- known delivery keys and repeated alerts are found with one query each
  (per source, for alerts), and a set within the pass;
- each group's active incident is read once, and each touched incident's
  members once, however many of the pass's alerts it gets;
- alert rows, member upserts (one per member, whatever its repeats),
  incident inserts, counter updates, the new incidents' period counts (one
  upsert per hour and count, storage/hourly.py) and delivery keys are each
  one `executemany`;
- each delivery's touched incidents become one `Incident` model each, as
  that delivery left them;
- each delivery gets one `alerts.received` audit row that attests every
  alert it stored (see `_audit` and storage/alert_digests.py), instead of
  one row per alert.

The pass's SQL is in storage/intake_sql.py, what it keeps of deliveries,
incidents and members in storage/intake_state.py, and the alert rows it
builds in storage/alert_rows.py.

Nothing else writes while the transaction is open (BEGIN IMMEDIATE holds the
write lock, also against other processes), so what was read at the start
stays true until the commit: that is what makes reading once enough, and
what lets intake give alerts and incidents their ids itself (the next ids
SQLite would have given them), so a delivery's alerts are one contiguous
id range that its audit row can name.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from engine.models import Alert, AlertStatus, Incident, IncidentState, Intake
from storage import audit as audit_log
from storage import intake_sql
from storage.alert_digests import ACTION, DIGEST_ALGORITHM, digest_of
from storage.alert_rows import STATUS_TEXT, alert_row, cached_time_text
from storage.db import parse_time
from storage.intake_state import Delivery, DeliveryWork, Group, count_alert, fresh_alerts
from storage.rows import incident_from_row

_FIRING = AlertStatus.FIRING
_NOTHING = Intake(incident=None)

_BUILT: dict[tuple[Any, ...], Incident] = {}
"""Recent incident models, by their row's other columns (see `_from_row`)."""
_BUILT_MAX = 1024


def ingest(conn: sqlite3.Connection, deliveries: Sequence[Delivery]) -> list[list[Intake]]:
    """`Store.ingest_alerts` for deliveries queued together, inside the writer's transaction.

    Each delivery gets what it would get alone, in order: one Intake per
    alert, or [] when its key was recorded before (by an earlier call or
    earlier in `deliveries`). An alert whose (source, source_key) was
    stored before, by an earlier delivery or earlier in this one, gets
    `Intake(incident=None)` and is not stored again. The delivery key is
    recorded only when at least one alert was stored, so a delivery made
    wholly of repeats writes nothing at all.

    `Intake.incident` is the incident as the whole delivery left it: every
    Intake of one incident holds the same `Incident` object, with the
    counts, first/last seen and updated_at after all of the delivery's
    alerts (and none of a later delivery's), even for the first of them.
    `opened` and `all_clear` stay per alert: `opened` is true for the alert
    that opened the incident, `all_clear` for a resolved alert after which
    none of the incident's members was firing (a later alert of the
    delivery may have fired again). Intakes are frozen values, so equal
    ones may be one object too.
    """
    return _Pass(conn).store(deliveries)


class _Pass:
    """The intake of deliveries queued together, in passes over their alerts.

    The first finds the known delivery keys and the repeats; the second each
    alert's incident (reading every group's active incident once, opening
    one where a firing alert needs it); then the statuses of the touched
    incidents' stored members are read, in one query; the third counts,
    delivery by delivery and alert by alert, builds each delivery's Intakes
    as it leaves its incidents, and the rows that `intake_sql.write` inserts
    with one `executemany` per table.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._groups: dict[str, Group | None] = {}
        """Every group of the pass: its active incident, or None."""
        self._opened: list[Group] = []
        self._next_incident_id: int | None = None
        self._rows: list[tuple[Any, ...]] = []

    def store(self, deliveries: Sequence[Delivery]) -> list[list[Intake]]:
        conn = self.conn
        results: list[list[Intake]] = []
        work: list[DeliveryWork] = []
        recorded = intake_sql.recorded(conn, {d.key for d in deliveries})
        stored = intake_sql.stored_before(conn, deliveries)
        for delivery in deliveries:
            if delivery.key in recorded:
                results.append([])
                continue
            fresh = fresh_alerts(delivery.alerts, stored)
            results.append([_NOTHING] * len(delivery.alerts))
            if fresh:
                recorded.add(delivery.key)
                work.append(DeliveryWork(delivery, fresh, len(results) - 1))
        if not work:
            return results
        self._groups = intake_sql.read_active(
            conn, {alert.group for w in work for _, alert in w.fresh}
        )
        for w in work:
            self._place(w)
        intake_sql.read_members(conn, self._groups.values())
        next_id = intake_sql.max_id(conn, "alerts") + 1
        for w in work:
            next_id = self._count(w, next_id)
            results[w.position] = self._intakes(w)
        intake_sql.write(conn, self._opened, self._rows, self._groups.values())
        chain = audit_log.Chain(conn)
        for w in work:
            self._audit(chain, w)
        intake_sql.record_deliveries(conn, [(w.delivery.key, w.now_text) for w in work])
        return results

    # -- placing each alert ------------------------------------------------

    def _place(self, w: DeliveryWork) -> None:
        """Each fresh alert's incident: its group's active one, or a new one when it fires."""
        for index, alert in w.fresh:
            group = self._groups[alert.group]
            if group is not None:
                if group.row is not None:
                    group.wanted.add(alert.fingerprint)
                w.placed.append((index, alert, group, False))
            elif alert.status is _FIRING:
                w.placed.append((index, alert, self._open(alert, w), True))
            else:
                w.placed.append((index, alert, None, False))

    def _open(self, alert: Alert, w: DeliveryWork) -> Group:
        """A new incident for the alert's group; its row is inserted by `intake_sql.write`."""
        if self._next_incident_id is None:
            self._next_incident_id = intake_sql.max_id(self.conn, "incidents") + 1
        seen_text = cached_time_text(alert.received_at)
        group = Group(
            incident_id=self._next_incident_id,
            alert_count=0,
            firing_count=0,
            first_text=seen_text,
            last_text=seen_text,
            updated_text=w.now_text,
            opener=alert,
            opened_at=w.now,
        )
        self._next_incident_id += 1
        self._groups[alert.group] = group
        self._opened.append(group)
        w.opened.append(group)
        return group

    # -- counting, delivery by delivery ------------------------------------

    def _count(self, w: DeliveryWork, next_id: int) -> int:
        """Count the delivery's alerts into their incidents and build their rows,
        ids from `next_id` on; returns the next free id."""
        rows = self._rows
        w.first_id = next_id
        for index, alert, group, opened in w.placed:
            status = STATUS_TEXT[alert.status]
            seen_text = cached_time_text(alert.received_at)
            incident_id = None
            if group is not None:
                incident_id = group.incident_id
                all_clear = count_alert(
                    group, alert.fingerprint, alert.status is _FIRING, seen_text
                )
                w.touched[incident_id] = group
                w.outcomes.append((index, group, opened, all_clear))
            rows.append(alert_row(alert, next_id, incident_id))
            w.digested.append([alert.source, alert.source_key, alert.fingerprint, status])
            next_id += 1
        w.last_id = next_id - 1
        for group in w.touched.values():
            group.updated_text = w.now_text
        return next_id

    def _intakes(self, w: DeliveryWork) -> list[Intake]:
        """The delivery's Intakes, its incidents as it left them: one model each, shared."""
        models = {incident_id: self._model(g, w) for incident_id, g in w.touched.items()}
        intakes = [_NOTHING] * len(w.delivery.alerts)
        shared: dict[tuple[int, bool, bool], Intake] = {}
        for index, group, opened, all_clear in w.outcomes:
            key = (group.incident_id, opened, all_clear)
            intake = shared.get(key)
            if intake is None:
                intake = shared[key] = Intake(
                    incident=models[group.incident_id], opened=opened, all_clear=all_clear
                )
            intakes[index] = intake
        return intakes

    def _model(self, group: Group, w: DeliveryWork) -> Incident:
        """The incident as delivery `w` left it.

        Only the counted fields change from one delivery to the next, so
        after the first model of an incident the next ones are copies with
        those fields replaced, not models built again (and checked again)
        from its row and opening alert.
        """
        counted = {
            "alert_count": group.alert_count,
            "firing_count": group.firing_count,
            "first_seen": parse_time(group.first_text),
            "last_seen": parse_time(group.last_text),
            "updated_at": w.now,
        }
        if group.model is not None:
            group.model = group.model.model_copy(update=counted)
        elif group.row is not None:
            group.model = _from_row(group.row, group.row_key, counted)
        else:
            opener, opened_at = group.opener, group.opened_at
            assert opener is not None and opened_at is not None
            group.model = Incident(
                id=group.incident_id,
                state=IncidentState.OPEN,
                fingerprint=opener.group,
                alert=opener,
                channel=opener.channel,
                created_at=opened_at,
                **counted,
            )
        return group.model

    def _audit(self, chain: audit_log.Chain, w: DeliveryWork) -> None:
        """One chained row that attests every alert the delivery stored.

        Its alerts are exactly ids `first`..`last` of the alerts table, a
        contiguous range: intake gave them those ids itself, delivery after
        delivery and in delivery order, from the table's highest id up,
        inside this transaction, and `intake_sql.write` checked that every
        row went in. The digest covers each one's (source, source_key,
        fingerprint, status), so an alert row changed, removed or added in
        that range after the fact no longer matches (see
        `alert_digests.alerts_digest`). The row's
        incident_id is set when the delivery touched one incident only;
        `incidents` lists all it touched, `opened` the ones it opened. Its
        actor is the alerts' reporter or else source; the distinct ones,
        comma-joined, if they differ.
        """
        if w.last_id - w.first_id + 1 != len(w.digested):  # by construction; cheap to hold to
            raise RuntimeError("a delivery's alert ids must be contiguous")
        alerts = [alert for _, alert, _, _ in w.placed]
        incident_ids = sorted(w.touched)
        actors = sorted({alert.reporter or alert.source for alert in alerts})
        chain.write(
            at=w.now,
            actor=",".join(actors),
            action=ACTION,
            incident_id=incident_ids[0] if len(incident_ids) == 1 else None,
            detail={
                "delivery_key": w.delivery.key,
                "count": len(w.digested),
                "sources": sorted({alert.source for alert in alerts}),
                "alert_ids": {"first": w.first_id, "last": w.last_id},
                "incidents": incident_ids,
                "opened": [g.incident_id for g in w.opened],
                "digest_algorithm": DIGEST_ALGORITHM,
                "digest": digest_of(w.digested),
            },
        )


def _from_row(row: Mapping[str, Any], key: tuple[Any, ...], counted: dict[str, Any]) -> Incident:
    """`incident_from_row(row, **counted)`, reusing the model of an earlier pass when
    every column but the counted ones is the same: in a storm, each repeat
    of an alert reads its incident's row again, changed only in its counts."""
    built = _BUILT.get(key)
    if built is not None:
        return built.model_copy(update=counted)
    model = incident_from_row(row, **counted)
    if len(_BUILT) >= _BUILT_MAX:
        _BUILT.clear()
    _BUILT[key] = model
    return model
