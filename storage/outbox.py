"""The durable Slack outbox, storage side: rows in, lane heads out.

Every Slack write is a row first; the bot's worker sends each lane's most
urgent write and reports back. A lane is a channel for what everyone reads
there (Slack's rate limit is per channel), or one person ('@' and their user
id) for the ephemeral answers only they see, so answers to clicks never wait
behind a story. Within a lane, rows belong to streams that each keep their
order: an incident's card and then its thread, as it was told (even across a
Slack outage or a restart); the card's updates, once the card is out; a
rollup's writes; a channel's notices. The lane sends the head of the stream
with the lowest priority number, then the oldest: cards that need someone and
rollups before other cards, cards before thread chatter, most severe first.

A row is 'pending' until a worker claims it (storage/outbox_claims.py), which
commits it 'sending' before the Slack call. From then on Slack may have it: a
'sending' row that comes round again is looked up in Slack before it is
posted again, and goes back to 'pending' only when Slack said it did not take
it. Only the claimer holding a row's claim reports its outcome (`mark_sent`,
`retry_later`, `drop`): one that lost the claim to another replica changes
nothing. The write functions here are group-writer ops; the SQL for reads is
run by the store on its read connection.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from engine.records import OutboxItem
from storage.db import parse_time
from storage.rows import new_id

PENDING, SENDING, SENT, DROPPED = "pending", "sending", "sent", "dropped"
UNSETTLED = (PENDING, SENDING)


def lane_of(channel: str, kind: str, user_id: str | None) -> str:
    """Ephemerals queue per person, everything else per channel."""
    return f"@{user_id or ''}" if kind == "ephemeral" else channel


def stream_of(lane: str, kind: str, incident_id: int | None) -> str:
    """The rows that must go out in the order they were queued."""
    if kind == "ephemeral":
        return lane
    if kind == "update_card":
        return f"card:{incident_id}"
    if incident_id is not None:
        return f"story:{incident_id}"  # its card first, then its thread
    return f"notice:{lane}"


# Each stream's oldest unsettled row; an update waits until its card went out.
ROLLED_UP = """
SELECT i.rollup_id, i.channel FROM incidents AS i
WHERE i.id = ? AND i.rollup_id IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM outbox AS o WHERE o.incident_id = i.id AND o.kind = 'post_card'
)
"""
"""An incident shown only as a rollup line: no card of its own to speak under."""

HEAD_IDS = "SELECT MIN(id) FROM outbox WHERE state IN ('pending', 'sending') GROUP BY stream"
"""Each stream's head, its oldest unsettled row. Read on its own, and the heads' rows
then by their keys (`by_heads`): asked in one statement (`o.id IN (heads)`, or each
row's stream probed for an older row), PostgreSQL, before it has statistics of a
new table, may pick a nested loop that compares every unsettled row with every
head, and a storm's claims then take a second each."""

HEAD_CHUNK = 500
"""Heads asked for in one statement at most: below SQLite's oldest limit of 999
variables, with room for a statement's other parameters."""


def by_heads(sql: str, head_ids: Sequence[int]) -> Iterator[tuple[str, list[int]]]:
    """`sql` (whose `{heads}` is where the ids go) and the ids, a chunk at a time."""
    for start in range(0, len(head_ids), HEAD_CHUNK):
        chunk = list(head_ids[start : start + HEAD_CHUNK])
        yield sql.replace("{heads}", ", ".join("?" * len(chunk))), chunk


CARD_OUT = """
NOT (o.kind = 'update_card' AND EXISTS (
    SELECT 1 FROM outbox AS p
    WHERE p.stream = 'story:' || o.incident_id AND p.kind = 'post_card'
      AND p.state IN ('pending', 'sending')
))
"""
"""A head `o` that may go: not a card's update while the card is still to be posted."""

HEADS_DUE = f"""
SELECT o.id, o.channel, o.lane, o.kind, o.incident_id, o.user_id, o.payload, o.coalesce_key,
       o.state, o.attempts, o.not_before, o.created_at, o.priority
FROM outbox AS o
WHERE o.id IN ({{heads}}) AND o.not_before <= ? AND {CARD_OUT}
"""
"""Every stream head that may go now (claimed or not: what a worker claims is
storage/outbox_claims.py's CLAIMABLE)."""

WAITING = "SELECT 1 FROM outbox WHERE coalesce_key = ? AND state = 'pending' LIMIT 1"
"""A write with this coalesce key that no worker has claimed yet: it renders when
sent, so it will show whatever changed before then."""

PENDING_COUNT = "SELECT COUNT(*) FROM outbox WHERE state IN ('pending', 'sending')"

CARD_OF = """
SELECT i.channel, i.card_ts, a.thread_ts
FROM incidents AS i
JOIN alerts AS a ON a.id = (SELECT MIN(f.id) FROM alerts AS f WHERE f.incident_id = i.id)
WHERE i.id = ? AND i.card_ts IS NOT NULL
"""
"""The card's channel and ts, and the thread it lives in when it answers a
person's message (its story goes there too, not under the card)."""


def item_from_row(row: Any) -> OutboxItem:
    return OutboxItem(
        id=row["id"],
        channel=row["channel"],
        lane=row["lane"],
        kind=row["kind"],
        incident_id=row["incident_id"],
        user_id=row["user_id"],
        payload=json.loads(row["payload"]),
        coalesce_key=row["coalesce_key"],
        attempts=row["attempts"],
        not_before=parse_time(row["not_before"]),
        created_at=parse_time(row["created_at"]),
        sending=row["state"] == SENDING,
        priority=row["priority"],
    )


def enqueue(
    conn: sqlite3.Connection,
    *,
    channel: str,
    kind: str,
    payload_text: str,
    incident_id: int | None,
    user_id: str | None,
    coalesce_key: str | None,
    now_text: str,
    once: bool = False,
    priority: int = 10,
    stream: str | None = None,
    unless_rolled_up: bool = False,
) -> int | None:
    """Insert a row, or fold it into a waiting one; returns the row's id.

    With `unless_rolled_up`, nothing is queued (None) for an incident shown only
    as a rollup line: it has no card to update or to speak under.

    With `once`, a row with this coalesce key already queued, sent or dropped is
    that write: nothing is added (a story line told again after a restart).

    An ephemeral identical to one this person has not been sent yet is that
    one: a burst of the same click gets one answer, not a queue of them.
    With a coalesce key, the latest pending row with that key takes the new
    payload in place, unless it is its stream's head: the worker may be
    sending it this very moment, and a payload replaced under it would be
    marked sent without ever being delivered. The new row then queues
    behind it and becomes the one later writes with that key fold into.
    """
    lane = lane_of(channel, kind, user_id)
    stream = stream or stream_of(lane, kind, incident_id)
    if unless_rolled_up and conn.execute(ROLLED_UP, (incident_id,)).fetchone() is not None:
        return None
    if once and coalesce_key is not None:
        told = conn.execute(
            "SELECT id FROM outbox WHERE coalesce_key = ? ORDER BY id LIMIT 1", (coalesce_key,)
        ).fetchone()
        if told is not None:
            return int(told["id"])
    if kind == "ephemeral":
        same = _unsent_twin(conn, lane, channel, payload_text)
        if same is not None:
            return same
    if coalesce_key is not None:
        target = conn.execute(
            "SELECT o.id FROM outbox AS o WHERE o.coalesce_key = ? AND o.state = 'pending'"
            " AND o.id > (SELECT MIN(h.id) FROM outbox AS h"
            "             WHERE h.stream = o.stream AND h.state IN ('pending', 'sending'))"
            " ORDER BY o.id DESC LIMIT 1",
            (coalesce_key,),
        ).fetchone()
        if target is not None:
            conn.execute(
                "UPDATE outbox SET payload = ?,"
                " priority = CASE WHEN priority < ? THEN priority ELSE ? END WHERE id = ?",
                (payload_text, priority, priority, target["id"]),
            )
            return int(target["id"])
    cursor = conn.execute(
        "INSERT INTO outbox (channel, lane, stream, priority, kind, incident_id, user_id, payload,"
        " coalesce_key, state, attempts, not_before, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?) RETURNING id",
        (
            channel,
            lane,
            stream,
            priority,
            kind,
            incident_id,
            user_id,
            payload_text,
            coalesce_key,
            now_text,
            now_text,
        ),
    )
    return new_id(cursor)


def _unsent_twin(
    conn: sqlite3.Connection, lane: str, channel: str, payload_text: str
) -> int | None:
    """An unsettled ephemeral to the same person, in the same channel, saying the
    same; it is about to reach them (or is reaching them), so it answers this too."""
    row = conn.execute(
        "SELECT id FROM outbox WHERE lane = ? AND state IN ('pending', 'sending')"
        " AND channel = ? AND payload = ? ORDER BY id LIMIT 1",
        (lane, channel, payload_text),
    ).fetchone()
    return None if row is None else int(row["id"])


SETTLE_PACE = "UPDATE outbox_lanes SET tat = CASE WHEN tat > ? THEN tat ELSE ? END WHERE lane = ?"


def mark_sent(
    conn: sqlite3.Connection,
    item_id: int,
    slack_ts: str | None,
    now_text: str,
    *,
    claimer: str | None = None,
) -> None:
    """Delivered (or found delivered). A delivered card also becomes its incident's
    card (and a rollup's first post the rollup's message), in the same
    transaction, so no later write can find the row sent but the card unknown."""
    row = _settle(
        conn,
        item_id,
        claimer,
        now_text,
        "state = 'sent', sent_at = ?, slack_ts = ?",
        (now_text, slack_ts),
    )
    if row is None:
        return
    if row["kind"] == "post_card" and slack_ts is not None and row["incident_id"] is not None:
        conn.execute(
            "UPDATE incidents SET channel = ?, card_ts = ?, updated_at = ? WHERE id = ?",
            (row["channel"], slack_ts, now_text, row["incident_id"]),
        )
    if row["kind"] == "rollup" and slack_ts is not None:  # later writes of it update it
        rollup_id = json.loads(row["payload"])["rollup"]
        conn.execute("UPDATE rollups SET ts = ? WHERE id = ?", (slack_ts, rollup_id))


def retry_later(
    conn: sqlite3.Connection,
    item_id: int,
    not_before_text: str,
    error: str,
    now_text: str,
    *,
    maybe_delivered: bool,
    claimer: str | None = None,
) -> None:
    """Not delivered as far as GRACE knows. `maybe_delivered` keeps the row
    'sending' (Slack may have it: look it up first next time); without it the
    row is 'pending' again, because Slack said it did not take it. Either way
    the claim ends: any worker may take the row from `not_before` on."""
    _settle(
        conn,
        item_id,
        claimer,
        now_text,
        "state = ?, attempts = attempts + 1, not_before = ?, last_error = ?,"
        " claimed_by = NULL, claimed_until = NULL",
        (SENDING if maybe_delivered else PENDING, not_before_text, error),
    )


def drop(
    conn: sqlite3.Connection,
    item_id: int,
    error: str,
    now_text: str,
    *,
    claimer: str | None = None,
) -> None:
    _settle(
        conn,
        item_id,
        claimer,
        now_text,
        "state = 'dropped', attempts = attempts + 1, last_error = ?",
        (error,),
    )


def _settle(
    conn: sqlite3.Connection,
    item_id: int,
    claimer: str | None,
    now_text: str,
    assignments: str,
    values: tuple[Any, ...],
) -> Any:
    """Apply `assignments` to the row if it is still pending or sending and its
    claim is `claimer`'s (None: a row no worker claimed), in one guarded UPDATE,
    so a claimer that lost the row to another replica, or a report that comes
    after the row was settled, changes nothing (None). The row's kind, channel,
    incident and payload when it applied; LookupError if there never was such a row.

    A claimer's report also settles its lane's pace: the lane is made no freer
    than it was when the row took its token (`lane_lead_s` ahead of the clock),
    as of `now_text`. No token comes back for the time the Slack call took:
    Slack counted the write when it arrived, somewhere in between, so the pace
    shared in `outbox_lanes` never runs ahead of Slack's."""
    guard, guarded = "claimed_by IS NULL", list[str]()
    if claimer is not None:
        guard, guarded = "claimed_by = ?", [claimer]
    rows = conn.execute(
        f"UPDATE outbox SET {assignments}"
        f" WHERE id = ? AND state IN ('pending', 'sending') AND {guard}"
        " RETURNING kind, channel, incident_id, payload, lane, lane_lead_s",
        (*values, item_id, *guarded),
    ).fetchall()
    if rows:
        row = rows[0]
        if claimer is not None and row["lane_lead_s"] is not None:
            paced = parse_time(now_text).timestamp() + float(row["lane_lead_s"])
            conn.execute(SETTLE_PACE, (paced, paced, row["lane"]))
        return row
    if conn.execute("SELECT 1 FROM outbox WHERE id = ?", (item_id,)).fetchone() is None:
        raise LookupError(f"no outbox item {item_id}")
    return None
