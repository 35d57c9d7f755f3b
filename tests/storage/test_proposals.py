"""Proposed promotions: one open a playbook, decided once, each step audited with its change."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from engine.autonomy import ProposalState, TierChange, TierProposal
from storage.store import SqliteStore

AT = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def proposed(attempts: int = 24, playbook: str = "wal") -> TierProposal:
    return TierProposal(
        playbook_id=playbook,
        from_tier=2,
        to_tier=1,
        attempts=attempts,
        successes=attempts,
        lower_bound=0.8620,
        median_seconds=12.0,
        channel="C0ALERTS",
        proposed_at=AT,
    )


def decided(proposal: TierProposal, by: str, state: ProposalState, runs: int) -> TierProposal:
    update = {"state": state, "decided_by": by, "decided_at": AT, "decided_runs": runs}
    return proposal.model_copy(update=update)


def promoted(by: str) -> TierChange:
    return TierChange(playbook_id="wal", tier=1, base_tier=2, by=by, reason="24/24", at=AT)


async def actions(store: SqliteStore) -> list[tuple[str, str]]:
    return [
        (e.actor, e.action)
        for e in await store.audit_entries()
        if e.action.startswith(("promotion.", "playbook."))
    ]


async def test_one_open_proposal_a_playbook_however_many_successes_ask(store):
    first = await store.propose_tier(proposed(24), quiet_runs=20)
    assert first is not None and first.id > 0
    assert await store.tier_proposal(first.id) == first
    # A burst: each success asks again, and none is stored.
    again = await asyncio.gather(
        *(store.propose_tier(proposed(n), quiet_runs=20) for n in (25, 26))
    )
    assert again == [None, None]
    other = await store.propose_tier(proposed(24, playbook="vacuum"), quiet_runs=20)
    assert other is not None
    assert await actions(store) == [("grace", "promotion.proposed")] * 2
    [entry, _] = [e for e in await store.audit_entries() if e.action == "promotion.proposed"]
    assert entry.detail == {
        "proposal": first.id,
        "playbook": "wal",
        "from_tier": 2,
        "to_tier": 1,
        "attempts": 24,
        "successes": 24,
        "lower_bound": 0.862,
    }


async def test_accepting_is_a_compare_and_set_with_the_new_tier_so_two_clicks_promote_once(
    db_path, clock
):
    async with await SqliteStore.open(db_path, clock) as store:
        proposal = await store.propose_tier(proposed(), quiet_runs=20)
        assert proposal is not None
        clicks = [
            store.decide_proposal(
                decided(proposal, lead, ProposalState.ACCEPTED, 24), promoted(lead)
            )
            for lead in ("U0LEAD1", "U0LEAD2")
        ]
        assert sorted(await asyncio.gather(*clicks)) == [False, True]
    async with await SqliteStore.open(db_path, clock) as store:  # kept across a restart
        stored = await store.tier_proposal(proposal.id)
        assert stored.state is ProposalState.ACCEPTED and stored.decided_at == AT
        winner = stored.decided_by
        assert (await store.playbook_tiers())["wal"] == promoted(winner)
        assert await actions(store) == [
            ("grace", "promotion.proposed"),
            (winner, "promotion.accepted"),
            (winner, "playbook.tier"),
        ]
        assert (await store.verify_audit()).ok


async def test_a_dismissed_proposal_comes_back_only_after_quiet_runs_more(store):
    proposal = await store.propose_tier(proposed(24), quiet_runs=20)
    dismissed = decided(proposal, "U0LEAD", ProposalState.DISMISSED, 30)
    assert await store.decide_proposal(dismissed, None)
    assert not await store.decide_proposal(dismissed, None)  # decided once
    assert await store.playbook_tiers() == {}
    assert await store.propose_tier(proposed(49), quiet_runs=20) is None
    again = await store.propose_tier(proposed(50), quiet_runs=20)  # 20 runs after the Dismiss
    assert again is not None and again.id != proposal.id
    assert await actions(store) == [
        ("grace", "promotion.proposed"),
        ("U0LEAD", "promotion.dismissed"),
        ("grace", "promotion.proposed"),
    ]


async def test_a_demotion_withdraws_the_open_proposal_in_its_transaction(store):
    proposal = await store.propose_tier(proposed(), quiet_runs=20)
    demoted = TierChange(playbook_id="wal", tier=3, base_tier=2, by="grace", reason="0/5", at=AT)
    await store.change_tier(demoted)
    withdrawn = await store.tier_proposal(proposal.id)
    assert (withdrawn.state, withdrawn.decided_by) == (ProposalState.DISMISSED, "grace")
    late = decided(proposal, "U0LEAD", ProposalState.ACCEPTED, 30)
    assert not await store.decide_proposal(late, promoted("U0LEAD"))
    assert (await store.playbook_tiers())["wal"] == demoted
    assert await actions(store) == [
        ("grace", "promotion.proposed"),
        ("grace", "promotion.dismissed"),
        ("grace", "playbook.tier"),
    ]
