"""The durable inbox, storage side: Slack deliveries in, unhandled ones out.

A delivery is a row before Slack's request is answered (the group writer
commits it with whatever else is queued), and marked handled once its
handler has run. Its key is Slack's own identity of the delivery (the event
id, the click's action time, the command's trigger id), so a delivery Slack
sends again is recognised and not handled twice.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from engine.records import Delivery
from storage.rows import inserted_id

UNHANDLED = """
SELECT id, kind, payload FROM inbox WHERE handled_at IS NULL ORDER BY id
"""
UNHANDLED_BEFORE = """
SELECT id, kind, payload FROM inbox WHERE handled_at IS NULL AND received_at < ? ORDER BY id
"""

HANDLED_BEFORE = "DELETE FROM inbox WHERE handled_at IS NOT NULL AND handled_at < ?"

CARD_QUEUED = "SELECT 1 FROM outbox WHERE incident_id = ? AND kind = 'post_card' LIMIT 1"


def accept(
    conn: sqlite3.Connection, key: str, kind: str, payload_text: str, now_text: str
) -> int | None:
    """The new row's id; None when a delivery with this key was accepted before."""
    cursor = conn.execute(
        "INSERT INTO inbox (delivery_key, kind, payload, received_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (delivery_key) DO NOTHING RETURNING id",
        (key, kind, payload_text, now_text),
    )
    return inserted_id(cursor)


def handled(conn: sqlite3.Connection, delivery_id: int, now_text: str) -> None:
    conn.execute(
        "UPDATE inbox SET handled_at = ? WHERE id = ? AND handled_at IS NULL",
        (now_text, delivery_id),
    )


def delivery_from_row(row: Any) -> Delivery:
    return Delivery(id=row["id"], kind=row["kind"], payload=json.loads(row["payload"]))
