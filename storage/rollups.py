"""Rollups, storage side: where a storm's incidents are shown, and when.

When a channel's queued writes would hold a new card back too long, the
incident is shown as a line of the channel's rollup instead: one message,
updated in place by one coalesced write. An incident gets a card of its own
when someone must act on it or asks for it ("promoted"); its story so far
goes under the card then. Deciding and queueing happen in one transaction,
so two incidents arriving together see each other's writes. The write
functions are group-writer ops; SqliteStore runs the reads.
"""

from __future__ import annotations

import sqlite3

import aiosqlite

from engine.models import Incident, canonical_json
from engine.records import Placement, Rollup, StormRule
from storage.db import time_text
from storage.inbox import CARD_QUEUED
from storage.outbox import ROLLED_UP, enqueue
from storage.rows import INCIDENT_SELECT, incident_from_row, new_id


def place_card(
    conn: sqlite3.Connection,
    incident: Incident,
    *,
    priority: int,
    needs_someone: bool,
    rule: StormRule,
    now_text: str,
) -> Placement:
    """Queue the incident's card, or show it in its channel's rollup."""
    assert incident.channel is not None
    if needs_someone or not _stormy(conn, incident.channel, priority, rule):
        _queue_card(conn, incident.channel, incident.id, priority, now_text)
        return Placement()
    rollup_id = _joined(conn, incident.channel, time_text(rule.joined_since), now_text)
    demoted = _roll_up_queued_cards(conn, incident.channel, rollup_id, rule.demotable)
    conn.execute("UPDATE incidents SET rollup_id = ? WHERE id = ?", (rollup_id, incident.id))
    conn.execute("UPDATE rollups SET last_added_at = ? WHERE id = ?", (now_text, rollup_id))
    refresh(conn, rollup_id, incident.channel, now_text)
    return Placement(rollup_id, (*demoted, incident.id))


def promote(
    conn: sqlite3.Connection,
    incident_id: int,
    *,
    priority: int,
    story_priority: int,
    story_text: str,
    now_text: str,
) -> bool:
    """A card of its own for an incident shown in a rollup, its story so far under
    it, and its rollup line saying so; False when its card was queued already."""
    if conn.execute(CARD_QUEUED, (incident_id,)).fetchone() is not None:
        return False
    row = conn.execute(
        "SELECT channel, rollup_id FROM incidents WHERE id = ?", (incident_id,)
    ).fetchone()
    if row is None or row["channel"] is None:
        return False
    _queue_card(conn, row["channel"], incident_id, priority, now_text)
    enqueue(
        conn,
        channel=row["channel"],
        kind="thread",
        payload_text=canonical_json({"text": story_text}),
        incident_id=incident_id,
        user_id=None,
        coalesce_key=None,
        now_text=now_text,
        priority=story_priority,
    )
    if row["rollup_id"] is not None:
        refresh(conn, row["rollup_id"], row["channel"], now_text)
    return True


def refresh(conn: sqlite3.Connection, rollup_id: int, channel: str, now_text: str) -> None:
    """One coalesced write shows the rollup as it is when it is sent."""
    enqueue(
        conn,
        channel=channel,
        kind="rollup",
        payload_text=canonical_json({"rollup": rollup_id}),
        incident_id=None,
        user_id=None,
        coalesce_key=f"rollup:{rollup_id}",
        now_text=now_text,
        priority=0,
        stream=f"rollup:{rollup_id}",
    )


def refresh_of(conn: sqlite3.Connection, incident_id: int, now_text: str) -> bool:
    """Refresh the rollup showing this incident, if it is shown in one and has no
    card of its own; False when it is not (its card tells its changes)."""
    row = conn.execute(ROLLED_UP, (incident_id,)).fetchone()
    if row is None:
        return False
    refresh(conn, row["rollup_id"], row["channel"], now_text)
    return True


ROLLED_UP_ALL = """
SELECT i.id, i.rollup_id FROM incidents AS i
WHERE i.rollup_id IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM outbox AS o WHERE o.incident_id = i.id AND o.kind = 'post_card'
)
"""
"""Every incident shown only as a rollup line, and its rollup."""

ROLLUP = "SELECT id, channel, ts FROM rollups WHERE id = ?"
MEMBERS = f"{INCIDENT_SELECT} WHERE i.rollup_id = ? ORDER BY i.id"
CARDED = (
    "SELECT DISTINCT o.incident_id FROM outbox AS o JOIN incidents AS i ON i.id = o.incident_id"
    " WHERE i.rollup_id = ? AND o.kind = 'post_card'"
)


async def read(conn: aiosqlite.Connection, rollup_id: int) -> Rollup | None:
    """The rollup and its incidents; the caller reads it in one transaction."""
    async with conn.execute(ROLLUP, (rollup_id,)) as cursor:
        row = await cursor.fetchone()
    if row is None:
        return None
    async with conn.execute(MEMBERS, (rollup_id,)) as cursor:
        members = [incident_from_row(r) for r in await cursor.fetchall()]
    async with conn.execute(CARDED, (rollup_id,)) as cursor:
        carded = frozenset(int(r[0]) for r in await cursor.fetchall())
    return Rollup(row["id"], row["channel"], row["ts"], members, carded)


def _queue_card(
    conn: sqlite3.Connection, channel: str, incident_id: int, priority: int, now_text: str
) -> None:
    enqueue(
        conn,
        channel=channel,
        kind="post_card",
        payload_text="{}",
        incident_id=incident_id,
        user_id=None,
        coalesce_key=None,
        now_text=now_text,
        priority=priority,
    )


ROLLED_UP_CARD = "rolled_up_card"
"""The kind a queued card takes when it joins a rollup unsent (kept, dropped, for the record)."""


def _roll_up_queued_cards(
    conn: sqlite3.Connection, lane: str, rollup_id: int, demotable: int
) -> list[int]:
    """Cards still waiting their turn become lines of the rollup; their queued story
    lines go with them (told from the records if the incident gets a card later)."""
    queued = conn.execute(
        "SELECT id, incident_id FROM outbox WHERE lane = ? AND kind = 'post_card'"
        " AND state = 'pending' AND attempts = 0 AND priority >= ?",
        (lane, demotable),
    ).fetchall()
    for row in queued:
        conn.execute(
            "UPDATE outbox SET kind = ?, state = 'dropped', last_error = ? WHERE id = ?",
            (ROLLED_UP_CARD, "shown in the storm's rollup instead", row["id"]),
        )
        conn.execute(
            "UPDATE outbox SET state = 'dropped', last_error = ? WHERE stream IN (?, ?)"
            " AND state = 'pending' AND attempts = 0",
            (
                "its incident is shown in the storm's rollup",
                f"story:{row['incident_id']}",
                f"card:{row['incident_id']}",
            ),
        )
        conn.execute(
            "UPDATE incidents SET rollup_id = ? WHERE id = ?", (rollup_id, row["incident_id"])
        )
    return [int(row["incident_id"]) for row in queued]


def _stormy(conn: sqlite3.Connection, channel: str, priority: int, rule: StormRule) -> bool:
    held = conn.execute(
        "SELECT 1 FROM rollups WHERE channel = ? AND last_added_at >= ? LIMIT 1",
        (channel, time_text(rule.held_since)),
    ).fetchone()
    if held is not None:
        return True
    ahead = conn.execute(
        "SELECT COUNT(*) FROM (SELECT 1 FROM outbox WHERE lane = ? AND priority <= ?"
        " AND state IN ('pending', 'sending') LIMIT ?) AS ahead",
        (channel, priority, rule.max_ahead + 1),
    ).fetchone()[0]
    return int(ahead) > rule.max_ahead


def _joined(conn: sqlite3.Connection, channel: str, joined_since: str, now_text: str) -> int:
    """The channel's rollup still taking incidents, or a new one (a new message)."""
    row = conn.execute(
        "SELECT id FROM rollups WHERE channel = ? AND last_added_at >= ? ORDER BY id DESC LIMIT 1",
        (channel, joined_since),
    ).fetchone()
    if row is not None:
        return int(row["id"])
    cursor = conn.execute(
        "INSERT INTO rollups (channel, opened_at, last_added_at) VALUES (?, ?, ?) RETURNING id",
        (channel, now_text, now_text),
    )
    return new_id(cursor)
