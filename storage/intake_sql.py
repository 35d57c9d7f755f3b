"""An intake pass's SQL (see storage/intake.py): what it reads once, and
writes once, per pass, however many deliveries and alerts the pass holds.

Reads put many values in one statement (`_in_lists`), and writes are one
`executemany` per table: a storm's cost is then per pass, not per alert.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from engine.models import AlertStatus, IncidentState
from storage import hourly
from storage.db import time_text
from storage.intake_state import Delivery, Group
from storage.rows import ACTIVE, INCIDENT_SELECT, INSERT_ALERT

_FIRING_TEXT, _RESOLVED_TEXT = AlertStatus.FIRING.value, AlertStatus.RESOLVED.value
_OPEN = IncidentState.OPEN.value

_COUNTED = frozenset({"alert_count", "firing_count", "first_seen", "last_seen", "updated_at"})
"""The incident columns intake changes; a `Group`'s `row_key` is the others."""

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
    " first_seen = CASE WHEN excluded.first_seen < incident_alerts.first_seen"
    " THEN excluded.first_seen ELSE incident_alerts.first_seen END,"
    " last_seen = CASE WHEN excluded.last_seen > incident_alerts.last_seen"
    " THEN excluded.last_seen ELSE incident_alerts.last_seen END,"
    " count = incident_alerts.count + excluded.count"
)
_INSERT_DELIVERY = "INSERT INTO deliveries (delivery_key, received_at) VALUES (?, ?)"

# -- reading, once per pass ------------------------------------------------


def recorded(conn: sqlite3.Connection, keys: set[str]) -> set[str]:
    """The delivery keys among `keys` stored before."""
    found: set[str] = set()
    for sql, chunk in _in_lists(_RECORDED, list(keys)):
        found.update(key for (key,) in conn.execute(sql, chunk))
    return found


def stored_before(conn: sqlite3.Connection, deliveries: Sequence[Delivery]) -> set[tuple[str, str]]:
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
            found.update((source, key) for (key,) in conn.execute(sql, (source, *chunk)))
    return found


def read_active(conn: sqlite3.Connection, group_keys: set[str]) -> dict[str, Group | None]:
    """Each group's active incident (None: it has none), read together, once."""
    groups: dict[str, Group | None] = dict.fromkeys(group_keys)
    for sql, chunk in _in_lists(_ACTIVE_OF, list(group_keys)):
        cursor = conn.execute(sql, chunk)
        names = [column[0] for column in cursor.description]
        kept = [i for i, name in enumerate(names) if name not in _COUNTED]
        for values in cursor:
            # A dict, not the sqlite3.Row: incident_from_row reads ~35 columns by
            # name, and a Row finds each name by a scan of all of them.
            row = dict(zip(names, values, strict=True))
            groups[row["fingerprint"]] = Group(
                incident_id=row["id"],
                alert_count=row["alert_count"],
                firing_count=row["firing_count"],
                first_text=row["first_seen"] or row["created_at"],
                last_text=row["last_seen"] or row["created_at"],
                updated_text=row["updated_at"],
                row=row,
                row_key=tuple(values[i] for i in kept),
            )
    return groups


def read_members(conn: sqlite3.Connection, groups: Iterable[Group | None]) -> None:
    """Whether each stored member the pass touches fires: one query for them all."""
    wanted = {
        (g.incident_id, fingerprint): g for g in groups if g is not None for fingerprint in g.wanted
    }
    for sql, chunk in _in_lists(_MEMBERS_OF, list(wanted), "(?, ?)"):
        flat = [value for pair in chunk for value in pair]
        for incident_id, fingerprint, status in conn.execute(sql, flat):
            group = wanted[incident_id, fingerprint]
            group.stored_firing[fingerprint] = status == _FIRING_TEXT


def max_id(conn: sqlite3.Connection, table: str) -> int:
    (top,) = conn.execute(_MAX_ID[table]).fetchone()
    return 0 if top is None else int(top)


# -- writing, once per pass ------------------------------------------------


def write(
    conn: sqlite3.Connection,
    opened: Sequence[Group],
    rows: Sequence[tuple[Any, ...]],
    groups: Iterable[Group | None],
) -> None:
    """The incidents the pass `opened`, its alert `rows`, and every touched
    incident's members and counts as the pass left them."""
    if opened:
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
                for g in opened
                if g.opener is not None and g.opened_at is not None
            ],
        )
        hourly.opened(
            conn,
            [(g.opened_at, g.opener.name) for g in opened if g.opener and g.opened_at],
        )
    # Every row must go in, at the id it was given: the audit rows name the ranges.
    inserted = conn.executemany(INSERT_ALERT, rows).rowcount
    if inserted != len(rows):
        raise RuntimeError(f"stored {inserted} of the deliveries' {len(rows)} alert rows")
    touched = [g for g in groups if g is not None and g.members]
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


def record_deliveries(conn: sqlite3.Connection, keys: Iterable[tuple[str, str]]) -> None:
    """Each (delivery key, received at) that stored alerts, so a retry stores nothing."""
    conn.executemany(_INSERT_DELIVERY, keys)


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
