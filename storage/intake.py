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
  alert it stored (see `_audit`), instead of one row per alert.

Nothing else writes while the transaction is open (BEGIN IMMEDIATE holds the
write lock, also against other processes), so what was read at the start
stays true until the commit: that is what makes reading once enough, and
what lets intake give alerts and incidents their ids itself (the next ids
SQLite would have given them), so a delivery's alerts are one contiguous
id range that its audit row can name.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiosqlite

from engine.models import Alert, AlertStatus, Incident, IncidentState, Intake, canonical_json
from storage import audit as audit_log
from storage import hourly
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


_COUNTED = frozenset({"alert_count", "firing_count", "first_seen", "last_seen", "updated_at"})
"""The incident columns intake changes; `_model` replaces just these."""
_BUILT: dict[tuple[Any, ...], Incident] = {}
"""Recent incident models, by their row's other columns (see `_from_row`)."""
_BUILT_MAX = 1024

_ENCODED: dict[tuple[tuple[str, str], ...], str] = {}
"""Canonical JSON of recent label and annotation sets (see `_pairs_json`)."""
_ENCODED_MAX, _ENCODED_MAX_CHARS = 8192, 512
"""At most this many sets of at most this much JSON each: a few MB whatever is sent."""

_IN_CHUNK = 256
"""Most values in one `IN (...)` list, or pairs in one VALUES list: below SQLite's
oldest variable limit (999)."""

_RECORDED = "SELECT delivery_key FROM deliveries WHERE delivery_key IN ({marks})"
_STORED_KEYS = "SELECT source_key FROM alerts WHERE source = ? AND source_key IN ({marks})"
_ACTIVE_OF = f"{INCIDENT_SELECT} WHERE i.fingerprint IN ({{marks}}) AND {ACTIVE}"
_MEMBERS_OF = (
    "SELECT m.incident_id, m.fingerprint, m.status FROM (VALUES {marks}) AS w"
    " JOIN incident_alerts AS m ON m.incident_id = w.column1 AND m.fingerprint = w.column2"
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
_INSERT_DELIVERY = "INSERT INTO deliveries (delivery_key, received_at) VALUES (?, ?)"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One `Store.ingest_alerts` call: its alerts, its key and when it was made."""

    alerts: Sequence[Alert]
    key: str
    now: datetime


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
    return hashlib.sha256(canonical_json(items).encode()).hexdigest()


@dataclass(slots=True)
class _Member:
    """One member alert (incident, fingerprint) as the pass leaves it."""

    firing: bool
    first_text: str
    last_text: str
    count: int = 0


@dataclass(slots=True)
class _Group:
    """A group's active incident as the pass so far left it; written back once, at the end."""

    incident_id: int
    alert_count: int
    firing_count: int
    first_text: str
    last_text: str
    updated_text: str
    """When the last delivery that counted an alert into it was made."""
    row: Mapping[str, Any] | None = None
    """The incident as read, or None when this pass opened it."""
    row_key: tuple[Any, ...] = ()
    """The row's columns that intake does not count: its key in `_BUILT`."""
    opener: Alert | None = None
    opened_at: datetime | None = None
    members: dict[str, _Member] = field(default_factory=dict)
    wanted: set[str] = field(default_factory=set)
    """Fingerprints of the pass's alerts, when the incident was stored before."""
    stored_firing: dict[str, bool] = field(default_factory=dict)
    """Which of those were stored members, and whether each fires."""
    model: Incident | None = None
    """As the latest delivery of the pass left it."""


@dataclass(slots=True)
class _Work:
    """One delivery that stores alerts, as the pass works through it."""

    delivery: Delivery
    fresh: list[tuple[int, Alert]]
    """Its alerts (with their index) that are neither stored nor repeated."""
    position: int
    """Where its Intakes go in the pass's results."""
    now_text: str = field(init=False)
    now: datetime = field(init=False)
    placed: list[tuple[int, Alert, _Group | None, bool]] = field(default_factory=list)
    """Each fresh alert with its incident, and whether it opened it."""
    opened: list[_Group] = field(default_factory=list)
    touched: dict[int, _Group] = field(default_factory=dict)
    """The incidents it counted alerts into, by id, in order."""
    outcomes: list[tuple[int, _Group, bool, bool]] = field(default_factory=list)
    digested: list[list[str]] = field(default_factory=list)
    first_id: int = 0
    last_id: int = 0

    def __post_init__(self) -> None:
        self.now_text = time_text(self.delivery.now)
        # Parsed back from the stored text, so models built here equal later reads.
        self.now = parse_time(self.now_text)


class _Pass:
    """The intake of deliveries queued together, in passes over their alerts.

    The first finds the known delivery keys and the repeats; the second each
    alert's incident (reading every group's active incident once, opening
    one where a firing alert needs it); then the statuses of the touched
    incidents' stored members are read, in one query; the third counts,
    delivery by delivery and alert by alert, builds each delivery's Intakes
    as it leaves its incidents, and the rows that `_write` inserts with one
    `executemany` per table.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._groups: dict[str, _Group | None] = {}
        """Every group of the pass: its active incident, or None."""
        self._opened: list[_Group] = []
        self._next_incident_id: int | None = None
        self._rows: list[tuple[Any, ...]] = []

    def store(self, deliveries: Sequence[Delivery]) -> list[list[Intake]]:
        results: list[list[Intake]] = []
        work: list[_Work] = []
        recorded = self._recorded({d.key for d in deliveries})
        stored = self._stored_before(deliveries)
        for delivery in deliveries:
            if delivery.key in recorded:
                results.append([])
                continue
            fresh = _fresh(delivery.alerts, stored)
            results.append([_NOTHING] * len(delivery.alerts))
            if fresh:
                recorded.add(delivery.key)
                work.append(_Work(delivery, fresh, len(results) - 1))
        if not work:
            return results
        self._read_active({alert.group for w in work for _, alert in w.fresh})
        for w in work:
            self._place(w)
        self._read_members()
        next_id = self._max_id("alerts") + 1
        for w in work:
            next_id = self._count(w, next_id)
            results[w.position] = self._intakes(w)
        self._write()
        chain = audit_log.Chain(self.conn)
        for w in work:
            self._audit(chain, w)
        self.conn.executemany(_INSERT_DELIVERY, [(w.delivery.key, w.now_text) for w in work])
        return results

    # -- reading, once per pass --------------------------------------------

    def _recorded(self, keys: set[str]) -> set[str]:
        """The delivery keys among `keys` stored before."""
        found: set[str] = set()
        for sql, chunk in _in_lists(_RECORDED, list(keys)):
            found.update(key for (key,) in self.conn.execute(sql, chunk))
        return found

    def _stored_before(self, deliveries: Sequence[Delivery]) -> set[tuple[str, str]]:
        """The pass's (source, source_key) pairs already stored: one query per source."""
        keys_by_source: dict[str, list[str]] = {}
        for delivery in deliveries:
            for alert in delivery.alerts:
                keys = keys_by_source.get(alert.source)
                if keys is None:
                    keys = keys_by_source[alert.source] = []
                keys.append(alert.source_key)
        found: set[tuple[str, str]] = set()
        for source, keys in keys_by_source.items():
            for sql, chunk in _in_lists(_STORED_KEYS, keys):
                found.update((source, key) for (key,) in self.conn.execute(sql, (source, *chunk)))
        return found

    def _read_active(self, group_keys: set[str]) -> None:
        """Each group's active incident (None: it has none), read together, once."""
        groups: dict[str, _Group | None] = dict.fromkeys(group_keys)
        for sql, chunk in _in_lists(_ACTIVE_OF, list(group_keys)):
            cursor = self.conn.execute(sql, chunk)
            names = [column[0] for column in cursor.description]
            kept = [i for i, name in enumerate(names) if name not in _COUNTED]
            for values in cursor:
                # A dict, not the sqlite3.Row: incident_from_row reads ~35 columns by
                # name, and a Row finds each name by a scan of all of them.
                row = dict(zip(names, values, strict=True))
                groups[row["fingerprint"]] = _Group(
                    incident_id=row["id"],
                    alert_count=row["alert_count"],
                    firing_count=row["firing_count"],
                    first_text=row["first_seen"] or row["created_at"],
                    last_text=row["last_seen"] or row["created_at"],
                    updated_text=row["updated_at"],
                    row=row,
                    row_key=tuple(values[i] for i in kept),
                )
        self._groups = groups

    def _place(self, w: _Work) -> None:
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

    def _open(self, alert: Alert, w: _Work) -> _Group:
        """A new incident for the alert's group; its row is inserted in `_write`."""
        if self._next_incident_id is None:
            self._next_incident_id = self._max_id("incidents") + 1
        seen_text = _time_text(alert.received_at)
        group = _Group(
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

    def _read_members(self) -> None:
        """Whether each stored member the pass touches fires: one query for them all."""
        wanted = {
            (g.incident_id, fingerprint): g
            for g in self._groups.values()
            if g is not None
            for fingerprint in g.wanted
        }
        for sql, chunk in _in_lists(_MEMBERS_OF, list(wanted), "(?, ?)"):
            flat = [value for pair in chunk for value in pair]
            for incident_id, fingerprint, status in self.conn.execute(sql, flat):
                group = wanted[incident_id, fingerprint]
                group.stored_firing[fingerprint] = status == _FIRING_TEXT

    def _max_id(self, table: str) -> int:
        (top,) = self.conn.execute(_MAX_ID[table]).fetchone()
        return 0 if top is None else int(top)

    # -- counting, delivery by delivery ------------------------------------

    def _count(self, w: _Work, next_id: int) -> int:
        """Count the delivery's alerts into their incidents and build their rows,
        ids from `next_id` on; returns the next free id."""
        rows = self._rows
        w.first_id = next_id
        for index, alert, group, opened in w.placed:
            status = _STATUS_TEXT[alert.status]
            seen_text = _time_text(alert.received_at)
            incident_id = None
            if group is not None:
                incident_id = group.incident_id
                all_clear = _count(group, alert.fingerprint, alert.status is _FIRING, seen_text)
                w.touched[incident_id] = group
                w.outcomes.append((index, group, opened, all_clear))
            rows.append(alert_row(alert, next_id, incident_id))
            w.digested.append([alert.source, alert.source_key, alert.fingerprint, status])
            next_id += 1
        w.last_id = next_id - 1
        for group in w.touched.values():
            group.updated_text = w.now_text
        return next_id

    def _intakes(self, w: _Work) -> list[Intake]:
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

    def _model(self, group: _Group, w: _Work) -> Incident:
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

    # -- writing, once per pass --------------------------------------------

    def _write(self) -> None:
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
                        time_text(g.opened_at),
                        g.updated_text,
                        g.alert_count,
                        g.firing_count,
                        g.first_text,
                        g.last_text,
                    )
                    for g in self._opened
                    if g.opener is not None and g.opened_at is not None
                ],
            )
            hourly.opened(
                conn,
                [(g.opened_at, g.opener.name) for g in self._opened if g.opener and g.opened_at],
            )
        # Every row must go in, at the id it was given: the audit rows name the ranges.
        rows = self._rows
        inserted = conn.executemany(INSERT_ALERT, rows).rowcount
        if inserted != len(rows):
            raise RuntimeError(f"stored {inserted} of the deliveries' {len(rows)} alert rows")
        touched = [g for g in self._groups.values() if g is not None and g.members]
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
                    g.updated_text,
                    g.incident_id,
                )
                for g in touched
                if g.row is not None
            ],
        )

    def _audit(self, chain: audit_log.Chain, w: _Work) -> None:
        """One chained row that attests every alert the delivery stored.

        Its alerts are exactly ids `first`..`last` of the alerts table, a
        contiguous range: intake gave them those ids itself, delivery after
        delivery and in delivery order, from the table's highest id up,
        inside this transaction, and `_write` checked that every row went
        in. The digest covers each one's (source, source_key, fingerprint,
        status), so an alert row changed, removed or added in that range
        after the fact no longer matches (see `alerts_digest`). The row's
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
                "digest": _digest(w.digested),
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


def alert_row(alert: Alert, alert_id: int | None, incident_id: int | None) -> tuple[Any, ...]:
    """The alert's row of the alerts table, in INSERT_ALERT's column order.

    Its label and annotation sets and its instants are each encoded once
    across passes (see `_pairs_json`, `_time_text`): a storm repeats them.
    bench/aiohttp_floor.py stores exactly these rows and nothing else, to
    measure the least any intake of one row per alert costs.
    """
    return (
        alert_id,
        incident_id,
        alert.source,
        alert.source_key,
        alert.name,
        _STATUS_TEXT[alert.status],
        alert.severity,
        _pairs_json(alert.labels),
        _pairs_json(alert.annotations),
        alert.text,
        None if alert.starts_at is None else _time_text(alert.starts_at),
        None if alert.ends_at is None else _time_text(alert.ends_at),
        alert.link,
        alert.fingerprint,
        alert.group,
        alert.channel,
        alert.reporter,
        alert.thread_ts,
        _time_text(alert.received_at),
    )


def _fresh(alerts: Sequence[Alert], stored: set[tuple[str, str]]) -> list[tuple[int, Alert]]:
    """The alerts (with their index) not stored before; each is added to `stored`,
    so a second alert with its key, here or in a later delivery, is a repeat."""
    fresh: list[tuple[int, Alert]] = []
    for index, alert in enumerate(alerts):
        key = (alert.source, alert.source_key)
        if key not in stored:
            stored.add(key)
            fresh.append((index, alert))
    return fresh


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


# `time_text`, each instant rendered once: an alert keeps its startsAt through
# every repeat, and a pass's alerts share a few received_at values.
_time_text = functools.lru_cache(maxsize=8192)(time_text)


def _pairs_json(pairs: dict[str, str]) -> str:
    """Canonical JSON of an alert's labels or annotations, each set encoded once.

    A storm repeats the same sets thousands of times. The key is the items in
    their order, so only an equal dict finds an entry, and equal dicts encode
    alike.
    """
    key = tuple(pairs.items())
    text = _ENCODED.get(key)
    if text is None:
        text = canonical_json(pairs)
        if len(text) <= _ENCODED_MAX_CHARS:
            if len(_ENCODED) >= _ENCODED_MAX:
                _ENCODED.clear()
            _ENCODED[key] = text
    return text


def _in_lists(template: str, values: list[Any], mark: str = "?") -> list[tuple[str, list[Any]]]:
    """`template` with its `{marks}` filled, and `values` in chunks to go with it.

    Each value takes one `mark` ("?", or "(?, ?)" for a pair). Each chunk is
    padded (with its last value, which changes nothing in an IN list or a
    join on VALUES) to a power of two, so a few statement texts serve every
    size: they are built once and stay in the connection's statement cache.
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
            sql = _IN_SQL[template, size] = template.format(marks=", ".join([mark] * size))
        chunks.append((sql, chunk))
    return chunks


_IN_SQL: dict[tuple[str, int], str] = {}
