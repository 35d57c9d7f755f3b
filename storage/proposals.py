"""Promotions proposed and decided (engine/earned.py), each step with its audit row.

Group-writer ops: each runs inside the writer's transaction, so a proposal and
its audit row, or a decision, its audit row and the new tier, commit together.
The partial unique index of migration 018 keeps one open proposal a playbook.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from engine.autonomy import ProposalState, TierChange, TierProposal
from engine.models import GRACE
from storage import audit as audit_log
from storage import tiers as tier_rows
from storage.db import parse_time, time_text
from storage.rows import inserted_id

SELECT = (
    "SELECT id, playbook_id, from_tier, to_tier, attempts, successes, lower_bound,"
    " median_seconds, channel, state, proposed_at, decided_by, decided_at, decided_runs"
    " FROM tier_proposals"
)
BY_ID = f"{SELECT} WHERE id = ?"
OPEN = f"{SELECT} WHERE state = 'open' ORDER BY id"


def propose(
    conn: sqlite3.Connection, proposal: TierProposal, quiet_runs: int
) -> TierProposal | None:
    """Store an open proposal and audit it; None when one is open for the playbook,
    or one was dismissed fewer than `quiet_runs` runs ago."""
    dismissed = conn.execute(
        "SELECT 1 FROM tier_proposals WHERE playbook_id = ? AND state = ? AND decided_runs > ?",
        (proposal.playbook_id, ProposalState.DISMISSED.value, proposal.attempts - quiet_runs),
    ).fetchone()
    if dismissed is not None:
        return None
    cursor = conn.execute(
        "INSERT INTO tier_proposals (playbook_id, from_tier, to_tier, attempts, successes,"
        " lower_bound, median_seconds, channel, state, proposed_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id",
        (
            proposal.playbook_id,
            proposal.from_tier,
            proposal.to_tier,
            proposal.attempts,
            proposal.successes,
            proposal.lower_bound,
            proposal.median_seconds,
            proposal.channel,
            ProposalState.OPEN.value,
            time_text(proposal.proposed_at),
        ),
    )
    proposal_id = inserted_id(cursor)
    if proposal_id is None:
        return None
    stored = proposal.model_copy(update={"id": proposal_id})
    audit_log.append(
        conn,
        at=stored.proposed_at,
        actor=GRACE,
        action="promotion.proposed",
        detail=_detail(stored),
    )
    return stored


def decide(conn: sqlite3.Connection, decided: TierProposal, change: TierChange | None) -> bool:
    """Compare-and-set on an open proposal: its new state and audit row, and with an
    Accept the new tier; False (nothing written) when it was decided already."""
    assert decided.decided_by is not None and decided.decided_at is not None
    cursor = conn.execute(
        "UPDATE tier_proposals SET state = ?, decided_by = ?, decided_at = ?, decided_runs = ?"
        " WHERE id = ? AND state = ?",
        (
            decided.state.value,
            decided.decided_by,
            time_text(decided.decided_at),
            decided.decided_runs,
            decided.id,
            ProposalState.OPEN.value,
        ),
    )
    if cursor.rowcount != 1:
        return False
    audit_log.append(
        conn,
        at=decided.decided_at,
        actor=decided.decided_by,
        action=f"promotion.{decided.state.value}",
        detail=_detail(decided),
    )
    if change is not None:
        tier_rows.change(conn, change)
    return True


def change_tier(conn: sqlite3.Connection, change: TierChange) -> None:
    """GRACE's own change of a tier; an open proposal, about the old tier, is dismissed."""
    open_ = conn.execute(
        f"{SELECT} WHERE playbook_id = ? AND state = ?",
        (change.playbook_id, ProposalState.OPEN.value),
    ).fetchone()
    if open_ is not None:
        withdrawn = from_row(open_).model_copy(
            update={
                "state": ProposalState.DISMISSED,
                "decided_by": change.by,
                "decided_at": change.at,
            }
        )
        decide(conn, withdrawn, None)
    tier_rows.change(conn, change)


def _detail(proposal: TierProposal) -> dict[str, Any]:
    return {
        "proposal": proposal.id,
        "playbook": proposal.playbook_id,
        "from_tier": proposal.from_tier,
        "to_tier": proposal.to_tier,
        "attempts": proposal.attempts,
        "successes": proposal.successes,
        "lower_bound": proposal.lower_bound,
    }


def from_row(row: Any) -> TierProposal:
    decided_at = row["decided_at"]
    return TierProposal(
        id=int(row["id"]),
        playbook_id=row["playbook_id"],
        from_tier=int(row["from_tier"]),
        to_tier=int(row["to_tier"]),
        attempts=int(row["attempts"]),
        successes=int(row["successes"]),
        lower_bound=float(row["lower_bound"]),
        median_seconds=row["median_seconds"],
        channel=row["channel"],
        state=ProposalState(row["state"]),
        proposed_at=parse_time(row["proposed_at"]),
        decided_by=row["decided_by"],
        decided_at=None if decided_at is None else parse_time(decided_at),
        decided_runs=row["decided_runs"],
    )
