"""Pre-aggregated period statistics: counts by UTC hour, and by longer blocks (migration 017).

`/grace stats` and the weekly report read these (storage/stats.py) instead of
scanning incidents, approvals and outcomes. Each writer adds its counts in the
transaction of the row it writes, so they are never ahead of or behind it:

| metric | key | counts, in the hour the incident was opened in |
|---|---|---|
| `state` | state | incidents, by the state they are in now (a transition moves one) |
| `alert` | alert name | incidents |
| `approved` | | incidents with an approval |
| `approved_resolved` | | those of them now resolved |
| `resolve_s` | | resolved incidents, by seconds from opening to resolved (histogram) |
| `approve_s` | | approved incidents, by seconds to the first approval (histogram) |
| `heal` | playbook | heals, in the hour they ended, by seconds (histogram); `ok` the successes |

A histogram keeps each value rounded to 2 significant digits (`bucket`, the
`printf('%.1e')` migration 017's backfill used, so a value lands in one
bucket whoever counts it). Percentiles read from it are those of the rounded
values: within 5% of the exact ones, and exact for values of 2 significant
digits (30 s, 120 s). Durations between two stored times are taken in Python,
the same for every database.
Time to resolve is taken by the move to resolved; the backfill can only read
`updated_at`, which a card delivered after the end moved later (as the scan
these counts replace read it).

Every count is also added to its day's, week's and 4 weeks' block (`SPANS`,
aligned to 1970-01-01), so a period is read from at most seven ranges of
blocks (`ranges`): the hours, days and weeks at its edges and the 4 weeks
between. Each (metric, key) is named once, in `stats_keys`: the blocks hold
its id, so a read groups by numbers.
"""

from __future__ import annotations

import math
import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from engine.models import Approval, Decision, Incident, IncidentState, Outcome
from storage.db import parse_time

SPANS = (1, 24, 168, 672)
"""Block lengths in hours (hour, day, week, 4 weeks), each a multiple of the one before."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HOUR = timedelta(hours=1)
_RESOLVED = IncidentState.RESOLVED.value

_KEY = "INSERT INTO stats_keys (metric, key) VALUES (?, ?) ON CONFLICT DO NOTHING"
# One delta into every block its hour is in (% floors here, before 1970 too).
_ADD = f"""
INSERT INTO stats_hourly (hours, hour, key_id, value, n, ok)
SELECT s.column1, ?1 - ((?1 % s.column1) + s.column1) % s.column1,
       (SELECT id FROM stats_keys WHERE metric = ?2 AND key = ?3),
       ?4, ?5, ?6
FROM (VALUES {", ".join(f"({span})" for span in SPANS)}) AS s WHERE true
ON CONFLICT (hours, hour, key_id, value) DO UPDATE SET
    n = stats_hourly.n + excluded.n, ok = stats_hourly.ok + excluded.ok
"""

_RESOLVE = (
    "SELECT created_at, updated_at,"
    " EXISTS (SELECT 1 FROM approvals WHERE incident_id = ? AND decision = 'approve')"
    " FROM incidents WHERE id = ?"
)

# The incident, and the earliest approval before this one (excluded by its user).
_APPROVAL = (
    "SELECT created_at, state, (SELECT MIN(at) FROM approvals WHERE incident_id = ?"
    " AND decision = 'approve' AND user_id != ?) FROM incidents WHERE id = ?"
)

_RANGES = 1 + 2 * (len(SPANS) - 1)
"""The most ranges of blocks a period needs (`_cover`)."""

READ = f"""
SELECT k.metric, k.key, c.value, c.n, c.ok
FROM (
    SELECT s.key_id, s.value, SUM(s.n) AS n, SUM(s.ok) AS ok
    FROM (VALUES {", ".join(["(?, ?, ?)"] * _RANGES)}) AS r
    JOIN stats_hourly AS s
      ON s.hours = r.column1 AND s.hour >= r.column2 AND s.hour < r.column3
    GROUP BY s.key_id, s.value
    HAVING SUM(s.n) != 0
) AS c
JOIN stats_keys AS k ON k.id = c.key_id
"""
"""(metric, key, value, n, ok), each summed over the ranges of blocks `ranges` gives."""

Delta = tuple[int, str, str, float, int, int]
"""(hour, metric, key, value, n, ok) to add."""


def hour_of(at: datetime) -> int:
    """The hour `at` falls in, in hours since 1970-01-01T00:00Z."""
    return (_aware(at) - _EPOCH) // _HOUR


def ranges(since: datetime, until: datetime) -> tuple[int, ...]:
    """READ's parameters for the hours from since's to until's, that one excluded:
    both bounds are taken back to the start of their hour."""
    found = _cover(hour_of(since), hour_of(until), len(SPANS) - 1)
    found += [(SPANS[0], 0, 0)] * (_RANGES - len(found))
    return tuple(bound for block in found for bound in block)


def opened(conn: sqlite3.Connection, incidents: Iterable[tuple[datetime, str]]) -> None:
    """New incidents, each (created_at, alert name): one upsert per distinct count."""
    counts: Counter[tuple[int, str, str]] = Counter()
    for created_at, alert_name in incidents:
        hour = hour_of(created_at)
        counts[hour, "state", IncidentState.OPEN.value] += 1
        counts[hour, "alert", alert_name] += 1
    _add(conn, [(hour, metric, key, 0.0, n, 0) for (hour, metric, key), n in counts.items()])


def moved(conn: sqlite3.Connection, incident: Incident, old: IncidentState) -> None:
    """The incident, as a transition from `old` just left it (its row updated)."""
    hour = hour_of(incident.created_at)
    deltas: list[Delta] = [
        (hour, "state", old.value, 0.0, -1, 0),
        (hour, "state", incident.state.value, 0.0, 1, 0),
    ]
    # Nothing leaves resolved (engine.models.TRANSITIONS): only the way in is counted.
    if incident.state is IncidentState.RESOLVED:
        created, updated, approved = conn.execute(_RESOLVE, (incident.id, incident.id)).fetchone()
        deltas.append((hour, "resolve_s", "", _seconds(updated, created), 1, 0))
        if approved:
            deltas.append((hour, "approved_resolved", "", 0.0, 1, 0))
    _add(conn, deltas)


def approved(conn: sqlite3.Connection, approval: Approval, at_text: str) -> None:
    """A decision just inserted (its `at` stored as `at_text`): an incident's first
    approval counts it approved; one earlier than its first moves its wait."""
    if approval.decision is not Decision.APPROVE:
        return
    row = conn.execute(
        _APPROVAL, (approval.incident_id, approval.user, approval.incident_id)
    ).fetchone()
    created, state, first = row
    hour = hour_of(parse_time(created))
    wait = _seconds(at_text, created)
    if first is None:
        deltas: list[Delta] = [
            (hour, "approved", "", 0.0, 1, 0),
            (hour, "approve_s", "", wait, 1, 0),
        ]
        if state == _RESOLVED:
            deltas.append((hour, "approved_resolved", "", 0.0, 1, 0))
        _add(conn, deltas)
    elif at_text < first:  # stored times are fixed-width UTC text: text order is time order
        was = _seconds(first, created)
        _add(conn, [(hour, "approve_s", "", was, -1, 0), (hour, "approve_s", "", wait, 1, 0)])


def healed(conn: sqlite3.Connection, outcome: Outcome) -> None:
    """A heal's outcome row, counted in the hour it ended."""
    if outcome.heal:
        hour, ok = hour_of(outcome.at), int(outcome.success)
        _add(conn, [(hour, "heal", outcome.playbook_id, outcome.seconds, 1, ok)])


def _add(conn: sqlite3.Connection, deltas: Sequence[Delta]) -> None:
    conn.executemany(_KEY, dict.fromkeys((metric, key) for _, metric, key, *_ in deltas))
    conn.executemany(_ADD, [(h, m, k, bucket(value), n, ok) for h, m, k, value, n, ok in deltas])


def bucket(value: float) -> float:
    """A histogram value kept to 2 significant digits, as migration 017's backfill kept
    it (SQLite's `printf('%.1e')`): the double's exact value, ties away from zero
    (125 s is 130 s, where Python's own formatting would make it 120 s)."""
    if value == 0 or not math.isfinite(value):
        return float(value)
    exact = Decimal(value)
    exponent = exact.adjusted() - 1
    digits = exact.scaleb(-exponent).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return float(digits.scaleb(exponent))


def _seconds(later: str, earlier: str) -> float:
    """Seconds between two stored times, never negative."""
    return max(0.0, (parse_time(later) - parse_time(earlier)).total_seconds())


def _aware(at: datetime) -> datetime:
    """A naive time is taken to be UTC, as `storage.db.time_text` takes it."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _cover(first: int, end: int, level: int) -> list[tuple[int, int, int]]:
    """Hours [first, end) as (span, first block, end block) ranges, the longest blocks
    in the middle: at most one range per span on each side of them."""
    span = SPANS[level]
    if level == 0:
        return [(span, first, end)] if first < end else []
    low, high = -(-first // span) * span, end // span * span
    if low >= high:
        return _cover(first, end, level - 1)
    return [
        (span, low, high),
        *_cover(first, low, level - 1),
        *_cover(high, end, level - 1),
    ]
