"""Playbook tiers changed from the catalog's (engine/autonomy.py), each change audited."""

from __future__ import annotations

import sqlite3
from typing import Any

from engine.autonomy import TierChange
from storage import audit as audit_log
from storage.db import parse_time, time_text

ALL = "SELECT playbook_id, tier, base_tier, changed_by, reason, changed_at FROM playbook_tiers"


def change(conn: sqlite3.Connection, new: TierChange) -> None:
    """Record the playbook's new tier and its audit row, in the caller's transaction."""
    conn.execute(
        "INSERT INTO playbook_tiers (playbook_id, tier, base_tier, changed_by, reason, changed_at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (playbook_id) DO UPDATE SET tier = excluded.tier,"
        " base_tier = excluded.base_tier, changed_by = excluded.changed_by,"
        " reason = excluded.reason, changed_at = excluded.changed_at",
        (new.playbook_id, new.tier, new.base_tier, new.by, new.reason, time_text(new.at)),
    )
    audit_log.append(
        conn,
        at=new.at,
        actor=new.by,
        action="playbook.tier",
        detail={
            "playbook": new.playbook_id,
            "tier": new.tier,
            "base_tier": new.base_tier,
            "reason": new.reason,
        },
    )


def from_row(row: Any) -> TierChange:
    return TierChange(
        playbook_id=row["playbook_id"],
        tier=int(row["tier"]),
        base_tier=int(row["base_tier"]),
        by=row["changed_by"],
        reason=row["reason"],
        at=parse_time(row["changed_at"]),
    )
