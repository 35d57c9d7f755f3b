"""Alert intake with dedupe, as one synchronous group-writer op per delivery.

`ingest` runs in the writer thread inside the batch's transaction and its
own savepoint, so a delivery's alerts are stored all together or not at all.
Alerts of one group share the group's active incident; the partial unique
index `incidents_active_group` makes "one active incident per group" a
database guarantee, not just this code's habit.

A storm arrives as deliveries of many alerts, so the work is per delivery
wherever it can be, and what is left per alert is plain Python and one row
in an `executemany`:

- repeats are found with one query per source (and a set, within the
  delivery), not by letting inserts fail one at a time;
- each group's active incident is read once, and each touched incident's
  members once, however many of the delivery's alerts it gets;
- alert rows, member upserts (one per member, whatever its repeats),
  incident inserts and counter updates are each one `executemany`;
- each touched incident becomes one `Incident` model, as the delivery left it;
- the delivery gets one `alerts.received` audit row that attests every alert
  it stored (see `_audit`), instead of one row per alert.

Nothing else writes while the transaction is open (BEGIN IMMEDIATE holds the
write lock, also against other processes), so what was read at the start
stays true until the commit: that is what makes reading once enough, and
what lets intake give alerts and incidents their ids itself (the next ids
SQLite would have given them), so a delivery's alerts are one contiguous
id range that its audit row can name.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiosqlite

from engine.models import Alert, AlertStatus, Incident, IncidentState, Intake
from storage import audit as audit_log
from storage.db import parse_time, time_text
from storage.rows import ACTIVE, INCIDENT_SELECT, INSERT_ALERT, incident_from_row

ACTION = "alerts.received"
"""The audit action of a delivery's one row. Rows written before it was
introduced are `alert.received`, one per alert, and stay as they are."""

DIGEST_ALGORITHM = "sha256-json-v1"
"""Named in each audit row, so a later change of digest can be told apart.
See `alerts_digest`."""

ALERTS_OF_DELIVERY = (
    "SELECT source, source_key, fingerprint, status FROM alerts"
    " WHERE id BETWEEN ? AND ? ORDER BY id"
)
"""The stored alerts an `alerts.received` row attests, for recomputing its digest."""

_FIRING = AlertStatus.FIRING
_STATUS_TEXT = {status: status.value for status in AlertStatus}
_FIRING_TEXT, _RESOLVED_TEXT = AlertStatus.FIRING.value, AlertStatus.RESOLVED.value
_OPEN = IncidentState.OPEN.value
_NOTHING = Intake(incident=None)

# engine.models.canonical_json, without building an encoder per call.
_canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode

_IN_CHUNK = 256
"""Most values in one `IN (...)` list: below SQLite's oldest variable limit (999)."""

_STORED_KEYS = "SELECT source_key FROM alerts WHERE source = ? AND source_key IN ({marks})"
_ACTIVE_OF = f"{INCIDENT_SELECT} WHERE i.fingerprint IN ({{marks}}) AND {ACTIVE}"
_MEMBERS_OF = (
    "SELECT fingerprint, status FROM incident_alerts"
    " WHERE incident_id = ? AND fingerprint IN ({marks})"
)
_MAX_ID = {table: f"SELECT MAX(id) FROM {table}" for table in ("alerts", "incidents")}
_INSERT_INCIDENT = (
    "INSERT INTO incidents (id, state, fingerprint, alert_name, channel, created_at,"
    " updated_at, version, alert_count, firing_count, first_seen, last_seen)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?)"
)
_UPDATE_INCIDENT = (
    "UPDATE incidents SET alert_count = ?, firing_count = ?, first_seen = ?, last_seen = ?,"
    " updated_at = ? WHERE id = ?"
)
# The member alert's latest status wins; its count and times accumulate.
_UPSERT_MEMBER = (
    "INSERT INTO incident_alerts (incident_id, fingerprint, status, first_seen, last_seen, count)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (incident_id, fingerprint) DO UPDATE SET"
    " status = excluded.status,"
    " first_seen = min(incident_alerts.first_seen, excluded.first_seen),"
    " last_seen = max(incident_alerts.last_seen, excluded.last_seen),"
    " count = incident_alerts.count + excluded.count"
)


def ingest(
    conn: sqlite3.Connection, alerts: Sequence[Alert], delivery_key: str, now: datetime
) -> list[Intake]:
    """`Store.ingest_alerts` inside the writer's transaction: one Intake per alert, in order.

    An alert whose (source, source_key) was stored before, by an earlier
    delivery or earlier in this one, gets `Intake(incident=None)` and is not
    stored again. The delivery key is recorded only when at least one alert
    was stored, so a delivery made wholly of repeats writes nothing at all.

    `Intake.incident` is the incident as the whole delivery left it: every
    Intake of one incident holds the same `Incident` object, with the
    counts, first/last seen and updated_at after all of the delivery's
    alerts, even for the first of them. `opened` and `all_clear` stay per
    alert: `opened` is true for the alert that opened the incident,
    `all_clear` for a resolved alert after which none of the incident's
    members was firing (a later alert of the delivery may have fired again).
    Intakes are frozen values, so equal ones may be one object too.
    """
    if conn.execute("SELECT 1 FROM deliveries WHERE delivery_key = ?", (delivery_key,)).fetchone():
        return []
    return _Delivery(conn, delivery_key, now).store(alerts)


def alerts_digest(rows: Iterable[Sequence[Any]]) -> str:
    """The digest an `alerts.received` row holds: sha256 (hex) of the canonical
    JSON (engine.models.canonical_json, UTF-8) of the list of
    [source, source_key, fingerprint, status] of the stored alerts in id order.

    To check a row: read its detail's `alert_ids.first`..`alert_ids.last`
    with ALERTS_OF_DELIVERY and compare this digest of them, and their
    number, with its `digest` and `count`; `verify_alert_digests` does that
    for the whole log. The hash chain vouches for the detail, the digest for
    those four columns of the alert rows (not their labels or text).
    """
    return _digest([[src, key, fingerprint, status] for src, key, fingerprint, status in rows])


@dataclass(frozen=True)
class DigestReport:
    """What `verify_alert_digests` found: `rows` is how many `alerts.received`
    rows were checked, `problems` names each one whose alerts do not match."""

    rows: int
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


async def verify_alert_digests(conn: aiosqlite.Connection) -> DigestReport:
    """Recompute every `alerts.received` row's digest from the alerts table.

    Complements `audit.verify_chain`, which proves the rows' details are the
    ones written; this proves the alert rows they name are still the ones
    stored. Older `alert.received` rows (one per alert) name no digest and
    are not checked here.
    """
    async with conn.execute(
        "SELECT seq, detail FROM audit_log WHERE action = ? ORDER BY seq", (ACTION,)
    ) as cursor:
        audited = list(await cursor.fetchall())
    problems: list[str] = []
    for seq, detail_text in audited:
        try:
            detail = json.loads(detail_text)
            first, last = int(detail["alert_ids"]["first"]), int(detail["alert_ids"]["last"])
            count, digest = int(detail["count"]), str(detail["digest"])
        except (TypeError, ValueError, KeyError):
            problems.append(f"seq {seq}: detail names no alert range and digest")
            continue
        async with conn.execute(ALERTS_OF_DELIVERY, (first, last)) as cursor:
            stored = list(await cursor.fetchall())
        if len(stored) != count:
            problems.append(f"seq {seq}: {count} alerts attested, {len(stored)} stored")
        elif alerts_digest(stored) != digest:
            problems.append(f"seq {seq}: alerts {first}..{last} do not match their digest")
    return DigestReport(rows=len(audited), problems=tuple(problems))


def _digest(items: list[list[str]]) -> str:
    return hashlib.sha256(_canonical(items).encode()).hexdigest()


@dataclass(slots=True)
class _Member:
    """One member alert (incident, fingerprint) as this delivery leaves it."""

    firing: bool
    first_text: str
    last_text: str
    count: int = 0


@dataclass(slots=True)
class _Group:
    """A group's active incident as this delivery leaves it; written back once, at the end."""

    incident_id: int
    alert_count: int
    firing_count: int
    first_text: str
    last_text: str
    row: sqlite3.Row | None = None
    """The incident as read, or None when this delivery opened it."""
    opener: Alert | None = None
    members: dict[str, _Member] = field(default_factory=dict)
    wanted: set[str] = field(default_factory=set)
    """Fingerprints of this delivery's alerts, when the incident was stored before."""
    stored_firing: dict[str, bool] = field(default_factory=dict)
    """Which of those were stored members, and whether each fires."""
    model: Incident | None = None


class _Delivery:
    """One delivery's intake, in two passes over its alerts.

    The first finds the repeats and each alert's incident (reading each
    group's active incident once, opening one where a firing alert needs
    it); then the statuses of the touched incidents' stored members are read,
    one query per incident; the second pass counts, alert by alert, and
    builds the rows that `_write` inserts with one `executemany` per table.
    """

    def __init__(self, conn: sqlite3.Connection, delivery_key: str, now: datetime) -> None:
        self.conn = conn
        self.delivery_key = delivery_key
        self.now_text = time_text(now)
        # Parsed back from the stored text, so models built here equal later reads.
        self.now = parse_time(self.now_text)
        self._groups: dict[str, _Group | None] = {}
        """Every group of the delivery: its active incident, or None."""
        self._opened: list[_Group] = []
        self._next_incident_id: int | None = None
        self._times: dict[datetime, str] = {}

    def store(self, alerts: Sequence[Alert]) -> list[Intake]:
        # First pass: what is stored, and in which incident.
        stored_before = self._stored_before(alerts)
        fresh: list[tuple[int, Alert]] = []
        for index, alert in enumerate(alerts):
            key = (alert.source, alert.source_key)
            if key not in stored_before:
                stored_before.add(key)  # a second alert with this key is a repeat
                fresh.append((index, alert))
        if not fresh:
            return [_NOTHING] * len(alerts)
        groups = self._read_active({alert.group for _, alert in fresh})
        placed: list[tuple[int, Alert, _Group | None, bool]] = []
        for index, alert in fresh:
            group = groups[alert.group]
            if group is not None:
                if group.row is not None:
                    group.wanted.add(alert.fingerprint)
                placed.append((index, alert, group, False))
            elif alert.status is _FIRING:
                placed.append((index, alert, self._open(alert), True))
            else:
                placed.append((index, alert, None, False))
        self._read_members()

        # Second pass: count, alert by alert, and build the rows.
        times = self._times
        outcomes: list[tuple[int, _Group, bool, bool]] = []
        first_id = next_id = self._max_id("alerts") + 1
        rows: list[tuple[Any, ...]] = []
        digested: list[list[str]] = []
        for index, alert, group, opened in placed:
            status = _STATUS_TEXT[alert.status]
            seen_text = times.get(alert.received_at) or self._time(alert.received_at)
            incident_id = None
            if group is not None:
                incident_id = group.incident_id
                all_clear = _count(group, alert.fingerprint, alert.status is _FIRING, seen_text)
                outcomes.append((index, group, opened, all_clear))
            rows.append(
                (
                    next_id,
                    incident_id,
                    alert.source,
                    alert.source_key,
                    alert.name,
                    status,
                    alert.severity,
                    _canonical(alert.labels),
                    _canonical(alert.annotations) if alert.annotations else "{}",
                    alert.text,
                    None if alert.starts_at is None else self._time(alert.starts_at),
                    None if alert.ends_at is None else self._time(alert.ends_at),
                    alert.link,
                    alert.fingerprint,
                    alert.group,
                    alert.channel,
                    alert.reporter,
                    seen_text,
                )
            )
            digested.append([alert.source, alert.source_key, alert.fingerprint, status])
            next_id += 1

        touched = [g for g in groups.values() if g is not None and g.members]
        self._write(rows, touched)
        self._audit([alert for _, alert, _, _ in placed], first_id, next_id - 1, digested, touched)
        self.conn.execute(
            "INSERT INTO deliveries (delivery_key, received_at) VALUES (?, ?)",
            (self.delivery_key, self.now_text),
        )

        intakes = [_NOTHING] * len(alerts)
        shared: dict[tuple[int, bool, bool], Intake] = {}
        for index, group, opened, all_clear in outcomes:
            key = (group.incident_id, opened, all_clear)
            intake = shared.get(key)
            if intake is None:
                intake = shared[key] = Intake(
                    incident=self._model(group), opened=opened, all_clear=all_clear
                )
            intakes[index] = intake
        return intakes

    # -- reading, once per delivery --------------------------------------

    def _stored_before(self, alerts: Sequence[Alert]) -> set[tuple[str, str]]:
        """The delivery's (source, source_key) pairs already stored: one query per source."""
        keys_by_source: dict[str, list[str]] = {}
        for alert in alerts:
            keys = keys_by_source.get(alert.source)
            if keys is None:
                keys = keys_by_source[alert.source] = []
            keys.append(alert.source_key)
        found: set[tuple[str, str]] = set()
        for source, keys in keys_by_source.items():
            for sql, chunk in _in_lists(_STORED_KEYS, keys):
                found.update((source, key) for (key,) in self.conn.execute(sql, (source, *chunk)))
        return found

    def _read_active(self, group_keys: set[str]) -> dict[str, _Group | None]:
        """Each group's active incident (None: it has none), read together, once."""
        groups: dict[str, _Group | None] = dict.fromkeys(group_keys)
        for sql, chunk in _in_lists(_ACTIVE_OF, list(group_keys)):
            for row in self.conn.execute(sql, chunk):
                groups[row["fingerprint"]] = _Group(
                    incident_id=row["id"],
                    alert_count=row["alert_count"],
                    firing_count=row["firing_count"],
                    first_text=row["first_seen"] or row["created_at"],
                    last_text=row["last_seen"] or row["created_at"],
                    row=row,
                )
        self._groups = groups
        return groups

    def _open(self, alert: Alert) -> _Group:
        """A new incident for the alert's group; its row is inserted in `_write`."""
        if self._next_incident_id is None:
            self._next_incident_id = self._max_id("incidents") + 1
        seen_text = self._time(alert.received_at)
        group = _Group(
            incident_id=self._next_incident_id,
            alert_count=0,
            firing_count=0,
            first_text=seen_text,
            last_text=seen_text,
            opener=alert,
        )
        self._next_incident_id += 1
        self._groups[alert.group] = group
        self._opened.append(group)
        return group

    def _read_members(self) -> None:
        """Whether each stored member this delivery touches fires: one query per incident."""
        for group in self._groups.values():
            if group is None or not group.wanted:
                continue
            for sql, chunk in _in_lists(_MEMBERS_OF, list(group.wanted)):
                group.stored_firing.update(
                    (fingerprint, status == _FIRING_TEXT)
                    for fingerprint, status in self.conn.execute(sql, (group.incident_id, *chunk))
                )

    def _max_id(self, table: str) -> int:
        (top,) = self.conn.execute(_MAX_ID[table]).fetchone()
        return 0 if top is None else int(top)

    # -- writing, once per delivery --------------------------------------

    def _write(self, rows: list[tuple[Any, ...]], touched: list[_Group]) -> None:
        conn = self.conn
        if self._opened:
            conn.executemany(
                _INSERT_INCIDENT,
                [
                    (
                        g.incident_id,
                        _OPEN,
                        g.opener.group,
                        g.opener.name,
                        g.opener.channel,
                        self.now_text,
                        self.now_text,
                        g.alert_count,
                        g.firing_count,
                        g.first_text,
                        g.last_text,
                    )
                    for g in self._opened
                    if g.opener is not None
                ],
            )
        # Every row must go in, at the id it was given: the audit row names the range.
        inserted = conn.executemany(INSERT_ALERT, rows).rowcount
        if inserted != len(rows):
            raise RuntimeError(f"stored {inserted} of the delivery's {len(rows)} alert rows")
        conn.executemany(
            _UPSERT_MEMBER,
            [
                (
                    g.incident_id,
                    fingerprint,
                    _FIRING_TEXT if m.firing else _RESOLVED_TEXT,
                    m.first_text,
                    m.last_text,
                    m.count,
                )
                for g in touched
                for fingerprint, m in g.members.items()
            ],
        )
        conn.executemany(
            _UPDATE_INCIDENT,
            [
                (
                    g.alert_count,
                    g.firing_count,
                    g.first_text,
                    g.last_text,
                    self.now_text,
                    g.incident_id,
                )
                for g in touched
                if g.row is not None
            ],
        )

    def _audit(
        self,
        alerts: list[Alert],
        first_id: int,
        last_id: int,
        digested: list[list[str]],
        touched: list[_Group],
    ) -> None:
        """One chained row that attests every alert the delivery stored.

        Its alerts are exactly ids `first`..`last` of the alerts table, a
        contiguous range: intake gave them those ids itself, in delivery
        order, from the table's highest id up, inside this transaction, and
        `_write` checked that every row went in. The digest covers each
        one's (source, source_key, fingerprint, status), so an alert row
        changed, removed or added in that range after the fact no longer
        matches (see `alerts_digest`). The row's incident_id is set when the
        delivery touched one incident only; `incidents` lists all it touched,
        `opened` the ones it opened. Its actor is the alerts' reporter or
        else source; the distinct ones, comma-joined, if they differ.
        """
        if last_id - first_id + 1 != len(digested):  # by construction; cheap to hold to
            raise RuntimeError("a delivery's alert ids must be contiguous")
        incident_ids = sorted(g.incident_id for g in touched)
        actors = sorted({alert.reporter or alert.source for alert in alerts})
        audit_log.Chain(self.conn).write(
            at=self.now,
            actor=",".join(actors),
            action=ACTION,
            incident_id=incident_ids[0] if len(incident_ids) == 1 else None,
            detail={
                "delivery_key": self.delivery_key,
                "count": len(digested),
                "sources": sorted({alert.source for alert in alerts}),
                "alert_ids": {"first": first_id, "last": last_id},
                "incidents": incident_ids,
                "opened": [g.incident_id for g in self._opened],
                "digest_algorithm": DIGEST_ALGORITHM,
                "digest": _digest(digested),
            },
        )

    # -- models, once per incident -----------------------------------------

    def _model(self, group: _Group) -> Incident:
        """The incident as the whole delivery left it, built once and shared."""
        if group.model is None:
            first, last = parse_time(group.first_text), parse_time(group.last_text)
            if group.row is not None:
                group.model = incident_from_row(
                    group.row,
                    alert_count=group.alert_count,
                    firing_count=group.firing_count,
                    first_seen=first,
                    last_seen=last,
                    updated_at=self.now,
                )
            else:
                opener = group.opener
                assert opener is not None
                group.model = Incident(
                    id=group.incident_id,
                    state=IncidentState.OPEN,
                    fingerprint=opener.group,
                    alert=opener,
                    alert_count=group.alert_count,
                    firing_count=group.firing_count,
                    first_seen=first,
                    last_seen=last,
                    channel=opener.channel,
                    created_at=self.now,
                    updated_at=self.now,
                )
        return group.model

    def _time(self, value: datetime) -> str:
        # A delivery's alerts usually share their received_at: render it once.
        text = self._times.get(value)
        if text is None:
            text = self._times[value] = time_text(value)
        return text


def _count(group: _Group, fingerprint: str, firing: bool, seen_text: str) -> bool:
    """Count one stored alert into its incident; True when it is an all-clear."""
    member = group.members.get(fingerprint)
    if member is None:
        was_firing = group.stored_firing.get(fingerprint, False)
        member = group.members[fingerprint] = _Member(was_firing, seen_text, seen_text)
    else:
        was_firing = member.firing
        # Stored times are fixed-width UTC text, so text order is time order.
        if seen_text < member.first_text:
            member.first_text = seen_text
        elif seen_text > member.last_text:
            member.last_text = seen_text
    member.firing = firing
    member.count += 1
    group.alert_count += 1
    group.firing_count += firing - was_firing
    if seen_text < group.first_text:
        group.first_text = seen_text
    elif seen_text > group.last_text:
        group.last_text = seen_text
    return not firing and group.firing_count == 0


def _in_lists(template: str, values: list[str]) -> list[tuple[str, list[str]]]:
    """`template` with its `{marks}` filled, and `values` in chunks to go with it.

    Each chunk is padded (with its last value, which changes nothing in an
    IN list) to a power of two, so a few statement texts serve every size:
    they are built once and stay in the connection's statement cache.
    """
    chunks = []
    for start in range(0, len(values), _IN_CHUNK):
        chunk = values[start : start + _IN_CHUNK]
        size = 1
        while size < len(chunk):
            size *= 2
        chunk += [chunk[-1]] * (size - len(chunk))
        sql = _IN_SQL.get((template, size))
        if sql is None:
            sql = _IN_SQL[template, size] = template.format(marks=", ".join("?" * size))
        chunks.append((sql, chunk))
    return chunks


_IN_SQL: dict[tuple[str, int], str] = {}
