"""The outbox shared by replicas: claims on lane heads, and each lane's pace.

Every replica's worker asks for work with one write (`claim`): in that one
transaction it picks the due stream heads (`outbox.HEADS_DUE`'s choice: one
head a lane, the most urgent first) that no other worker holds, takes a token
of each lane's pace, and marks each row it took 'sending', claimed by it until
its lease runs out. Two workers claiming at once never get the same row:
SQLite has one writer at a time, and on PostgreSQL the rows are selected
`FOR UPDATE SKIP LOCKED` (a row another claim is taking is skipped, not waited
for), then written under that lock. A row whose claim ran out (its sender
died, or hangs past the lease) is claimable again and comes back 'sending': in
doubt, looked up in Slack before it is posted again.

A stream is never sent past its head: the head stays its stream's oldest
unsettled row while it is claimed, so the next row is no head until the
claimer settles it.

A lane's pace is GCRA (the generic cell rate algorithm) on one row a lane in
`outbox_lanes`, shared by every replica: `tat`, the theoretical arrival time
of the lane's next write (seconds since the epoch), lets a write go when
`tat - window <= now`, where the window, (burst - 1) / rate, lets `burst`
writes go at once; taking one moves tat to max(tat, now) + 1 / rate. So over
any T seconds a lane sends at most burst + rate * T writes, whichever replicas
send them. The check and the take are one conditional upsert, so two claims
never spend one token twice. A 429 holds the lane (`held_until`) for its
Retry-After, for every replica.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from engine.records import OutboxItem
from storage.db import dialect_of, parse_time, time_text
from storage.outbox import CARD_OUT, HEAD_IDS, by_heads, item_from_row

CLAIMABLE = f"""
SELECT o.id, o.channel, o.lane, o.kind, o.incident_id, o.user_id, o.payload, o.coalesce_key,
       o.state, o.attempts, o.not_before, o.created_at, o.priority
FROM outbox AS o
WHERE o.id IN ({{heads}}) AND o.state IN ('pending', 'sending') AND o.not_before <= ?
  AND (o.claimed_by IS NULL OR o.claimed_until <= ?) AND {CARD_OUT}
  AND NOT EXISTS (
      SELECT 1 FROM outbox_lanes AS l
      WHERE l.lane = o.lane AND (l.tat - ? > ? OR l.held_until > ?)
  )
"""
"""The heads (of HEAD_IDS) due now that no live claim holds, in lanes with a token as
far as this read sees. `o.state` is checked on the row itself too: on
PostgreSQL a row locked after another claim settled it is checked again as it
is now."""

SKIP_LOCKED = " FOR UPDATE OF o SKIP LOCKED"
"""PostgreSQL: lock the rows read, skipping those another claim has locked."""

TAKE_TOKEN = """
INSERT INTO outbox_lanes (lane, tat, held_until) VALUES (?, ?, NULL)
ON CONFLICT (lane) DO UPDATE SET
    tat = CASE WHEN outbox_lanes.tat > ? THEN outbox_lanes.tat ELSE ? END + ?
WHERE outbox_lanes.tat - ? <= ?
  AND (outbox_lanes.held_until IS NULL OR outbox_lanes.held_until <= ?)
RETURNING tat
"""
"""A lane's token, checked and taken in one statement: a row back when it was taken."""

CLAIM_ROW = """
UPDATE outbox SET state = 'sending', claimed_by = ?, claimed_until = ?, lane_lead_s = ?
WHERE id = ? AND state IN ('pending', 'sending')
  AND (claimed_by IS NULL OR claimed_until <= ?)
RETURNING id
"""

HOLD = """
INSERT INTO outbox_lanes (lane, tat, held_until) VALUES (?, 0, ?)
ON CONFLICT (lane) DO UPDATE SET held_until = CASE
    WHEN outbox_lanes.held_until > excluded.held_until THEN outbox_lanes.held_until
    ELSE excluded.held_until
END
"""

HEAD_TIMES = f"""
SELECT o.not_before, o.claimed_by, o.claimed_until, l.tat, l.held_until
FROM outbox AS o LEFT JOIN outbox_lanes AS l ON l.lane = o.lane
WHERE o.id IN ({{heads}}) AND {CARD_OUT}
"""
"""What holds each head back: its not_before, a claim, its lane's pace and hold."""

CLAIMERS = """
SELECT DISTINCT claimed_by FROM outbox
WHERE state IN ('pending', 'sending') AND claimed_by IS NOT NULL AND claimed_until > ?
"""

RELEASE = """
UPDATE outbox SET claimed_until = ?
WHERE claimed_by = ? AND state IN ('pending', 'sending') AND claimed_until > ?
"""


def window_s(rate: float, burst: int) -> float:
    """How far a lane's tat may run ahead of now: `burst` writes at once."""
    return (burst - 1) / rate


def check_pace(rate: float, burst: int) -> None:
    if not rate > 0 or not math.isfinite(rate):
        raise ValueError(f"a lane's rate must be a positive number of writes a second, not {rate}")
    if burst < 1:
        raise ValueError(f"a lane's burst must be at least one write, not {burst}")


def claim(
    conn: sqlite3.Connection,
    claimer: str,
    now: datetime,
    *,
    rate: float,
    burst: int,
    until: datetime,
    limit: int,
) -> list[OutboxItem]:
    """Claim up to `limit` lanes' next writes for `claimer` until `until`; the items
    come back as they were before (`sending`: in doubt), the most urgent first."""
    now_text, now_s, until_text = time_text(now), now.timestamp(), time_text(until)
    interval, window = 1 / rate, window_s(rate, burst)
    claimable = CLAIMABLE + (SKIP_LOCKED if dialect_of(conn) == "postgresql" else "")
    heads = [int(row[0]) for row in conn.execute(HEAD_IDS).fetchall()]
    rows = [
        row
        for sql, ids in by_heads(claimable, heads)
        for row in conn.execute(sql, (*ids, now_text, now_text, window, now_s, now_text))
    ]
    rows.sort(key=lambda row: (row["priority"], row["id"]))
    chosen: dict[str, Any] = {}
    for row in rows:  # the most urgent first: each lane's first is its next write
        if row["lane"] not in chosen:
            chosen[row["lane"]] = row
            if len(chosen) >= limit:
                break
    claimed: list[OutboxItem] = []
    # Tokens in lane order, the same for every claimer: two claims that take tokens
    # of the same lanes on PostgreSQL wait for each other in one order, never crosswise.
    for lane in sorted(chosen):
        tat = _take_token(conn, lane, now_s, now_text, interval, window)
        if tat is None:
            continue  # another replica took the lane's token since the read
        row = chosen[lane]
        # Guarded as well: were the row taken since the read, it is not taken twice.
        params = (claimer, until_text, tat - now_s, row["id"], now_text)
        if conn.execute(CLAIM_ROW, params).fetchall():
            claimed.append(item_from_row(row))
    return sorted(claimed, key=lambda item: (item.priority, item.id))


def _take_token(
    conn: sqlite3.Connection,
    lane: str,
    now_s: float,
    now_text: str,
    interval: float,
    window: float,
) -> float | None:
    """The lane's tat after its token was taken; None when it had none."""
    taken = conn.execute(
        TAKE_TOKEN,
        (lane, now_s + interval, now_s, now_s, interval, window, now_s, now_text),
    ).fetchall()
    return float(taken[0][0]) if taken else None


def hold(conn: sqlite3.Connection, lane: str, until: datetime) -> None:
    """Slack refused the lane (429): none of its writes go before `until`."""
    conn.execute(HOLD, (lane, time_text(until)))


def next_due(
    rows: Iterable[Any], now: datetime, *, rate: float | None, burst: int
) -> datetime | None:
    """The soonest moment after `now` that a head not claimable at `now` becomes
    claimable (from the rows of HEAD_TIMES); None if there is none. Lanes' pace
    counts only given the `rate` and `burst` claims are made at."""
    window = None if rate is None else window_s(rate, burst)
    soonest: datetime | None = None
    for row in rows:
        times = [parse_time(row["not_before"])]
        if row["claimed_by"] is not None and row["claimed_until"] is not None:
            times.append(parse_time(row["claimed_until"]))
        if row["held_until"] is not None:
            times.append(parse_time(row["held_until"]))
        if window is not None and row["tat"] is not None:
            times.append(_instant(float(row["tat"]) - window))
        ready = max(times)
        if ready > now and (soonest is None or ready < soonest):
            soonest = ready
    return soonest


def _instant(seconds: float) -> datetime:
    """Seconds since the epoch as a time, rounded up to the microsecond: never
    before the token it stands for is there."""
    return datetime.fromtimestamp(math.ceil(seconds * 1_000_000) / 1_000_000, UTC)


def replica_of(claimer: str) -> str:
    """The replica a claimer works for: a claimer is named `replica#suffix`."""
    replica, mark, _ = claimer.rpartition("#")
    return replica if mark else claimer


def release(conn: sqlite3.Connection, replica: str, now: datetime) -> int:
    """End at `now` every live claim of `replica`'s claimers; how many rows they held."""
    now_text = time_text(now)
    claimers = [row[0] for row in conn.execute(CLAIMERS, (now_text,)).fetchall()]
    released = 0
    for claimer in claimers:
        if replica_of(claimer) == replica:
            released += len(
                conn.execute(RELEASE + " RETURNING id", (now_text, claimer, now_text)).fetchall()
            )
    return released
