"""A playbook's changed tier is stored, audited and kept across restarts."""

from __future__ import annotations

from datetime import UTC, datetime

from engine.autonomy import TierChange
from storage.store import SqliteStore


async def test_a_tier_change_survives_a_reopen_and_is_in_the_audit_chain(db_path, clock):
    change = TierChange(
        playbook_id="wal-checkpoint-now",
        tier=2,
        base_tier=1,
        by="grace",
        reason="0/5 succeeded, 0% at worst: under the 80% floor after 5 runs",
        at=datetime(2026, 12, 7, 9, 0, tzinfo=UTC),
    )
    async with await SqliteStore.open(db_path, clock) as store:
        assert await store.playbook_tiers() == {}
        await store.change_tier(change)
    async with await SqliteStore.open(db_path, clock) as store:
        assert await store.playbook_tiers() == {"wal-checkpoint-now": change}
        [entry] = [e for e in await store.audit_entries() if e.action == "playbook.tier"]
        assert (entry.actor, entry.detail["playbook"], entry.detail["tier"]) == (
            "grace",
            "wal-checkpoint-now",
            2,
        )
        assert (await store.verify_audit()).ok
