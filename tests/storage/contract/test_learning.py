"""The contract of learning: outcomes counted into a playbook's record, tier
proposals open once a playbook and decided once, a demotion withdrawing one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from engine.autonomy import ProposalState, TierChange, TierProposal
from engine.models import Alert, IncidentState, Outcome
from engine.storage_ports import GraceStore
from tests.storage.contract.conftest import Database, open_incident

AT = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def proposed(attempts: int = 24, playbook: str = "wal") -> TierProposal:
    return TierProposal(
        playbook_id=playbook,
        from_tier=2,
        to_tier=1,
        attempts=attempts,
        successes=attempts,
        lower_bound=0.862,
        median_seconds=12.0,
        channel="C0ALERTS",
        proposed_at=AT,
    )


def decided(proposal: TierProposal, by: str, state: ProposalState, runs: int) -> TierProposal:
    update = {"state": state, "decided_by": by, "decided_at": AT, "decided_runs": runs}
    return proposal.model_copy(update=update)


def promoted(by: str) -> TierChange:
    return TierChange(playbook_id="wal", tier=1, base_tier=2, by=by, reason="24/24", at=AT)


async def actions(store: GraceStore) -> list[tuple[str, str]]:
    """Who did what to proposals and tiers, in the audit's order."""
    return [
        (e.actor, e.action)
        for e in await store.audit_entries()
        if e.action.startswith(("promotion.", "playbook."))
    ]


async def test_outcomes_make_the_playbooks_record(
    store: GraceStore, replica: GraceStore, make_alert: Callable[..., Alert]
) -> None:
    incident = await open_incident(store, make_alert(), "d-1")
    empty = await store.playbook_stats("rotate-logs")
    assert (empty.attempts, empty.successes, empty.median_seconds) == (0, 0, None)
    runs = [(True, 10.0), (False, 2.0), (True, 5.0)]
    for n, (ok, seconds) in enumerate(runs):
        end = IncidentState.RESOLVED if ok else IncidentState.ROLLED_BACK
        outcome = Outcome(
            incident_id=incident.id,
            playbook_id="rotate-logs",
            success=ok,
            seconds=seconds,
            final_state=end,
            at=AT.replace(minute=n),
        )
        stats = await (store if n % 2 else replica).record_outcome(outcome)
    assert (stats.attempts, stats.successes, stats.median_seconds) == (3, 2, 5.0)
    assert await store.playbook_stats("rotate-logs") == stats
    assert (await replica.playbook_stats("restart-web")).attempts == 0


async def test_one_open_proposal_a_playbook_however_many_ask(
    store: GraceStore, replica: GraceStore
) -> None:
    first = await store.propose_tier(proposed(24), quiet_runs=20)
    assert first is not None and first.id is not None and first.id > 0
    assert await replica.tier_proposal(first.id) == first
    again = await asyncio.gather(
        store.propose_tier(proposed(25), quiet_runs=20),
        replica.propose_tier(proposed(26), quiet_runs=20),
    )
    assert again == [None, None]
    other = await replica.propose_tier(proposed(24, playbook="vacuum"), quiet_runs=20)
    assert other is not None
    assert [p.id for p in await store.open_proposals()] == [first.id, other.id]
    assert await actions(replica) == [("grace", "promotion.proposed")] * 2
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


async def test_a_proposal_is_decided_once_and_an_accept_changes_the_tier_with_it(
    store: GraceStore, replica: GraceStore, database: Database
) -> None:
    proposal = await store.propose_tier(proposed(), quiet_runs=20)
    assert proposal is not None
    clicks = await asyncio.gather(
        store.decide_proposal(
            decided(proposal, "U0LEAD1", ProposalState.ACCEPTED, 24), promoted("U0LEAD1")
        ),
        replica.decide_proposal(
            decided(proposal, "U0LEAD2", ProposalState.ACCEPTED, 24), promoted("U0LEAD2")
        ),
    )
    assert sorted(clicks) == [False, True]
    winner = "U0LEAD1" if clicks[0] else "U0LEAD2"
    await database.close_all()
    later = await database.open()  # kept across a restart
    stored = await later.tier_proposal(proposal.id)
    assert stored is not None and stored.state is ProposalState.ACCEPTED
    assert (stored.decided_by, stored.decided_at) == (winner, AT)
    assert (await later.playbook_tiers())["wal"] == promoted(winner)
    assert await later.open_proposals() == []
    assert await actions(later) == [
        ("grace", "promotion.proposed"),
        (winner, "promotion.accepted"),
        (winner, "playbook.tier"),
    ]
    assert (await later.verify_audit()).ok


async def test_a_dismissed_proposal_returns_only_after_quiet_runs(store: GraceStore) -> None:
    proposal = await store.propose_tier(proposed(24), quiet_runs=20)
    assert proposal is not None
    dismissed = decided(proposal, "U0LEAD", ProposalState.DISMISSED, 30)
    assert await store.decide_proposal(dismissed, None)
    assert not await store.decide_proposal(dismissed, None)
    assert await store.playbook_tiers() == {}
    assert await store.propose_tier(proposed(49), quiet_runs=20) is None
    again = await store.propose_tier(proposed(50), quiet_runs=20)
    assert again is not None and again.id != proposal.id
    assert await actions(store) == [
        ("grace", "promotion.proposed"),
        ("U0LEAD", "promotion.dismissed"),
        ("grace", "promotion.proposed"),
    ]


async def test_a_demotion_withdraws_the_open_proposal(store: GraceStore) -> None:
    proposal = await store.propose_tier(proposed(), quiet_runs=20)
    assert proposal is not None
    demoted = TierChange(playbook_id="wal", tier=3, base_tier=2, by="grace", reason="0/5", at=AT)
    await store.change_tier(demoted)
    withdrawn = await store.tier_proposal(proposal.id)
    assert withdrawn is not None
    assert (withdrawn.state, withdrawn.decided_by) == (ProposalState.DISMISSED, "grace")
    late = decided(proposal, "U0LEAD", ProposalState.ACCEPTED, 30)
    assert not await store.decide_proposal(late, promoted("U0LEAD"))
    assert await store.playbook_tiers() == {"wal": demoted}
    assert await actions(store) == [
        ("grace", "promotion.proposed"),
        ("grace", "promotion.dismissed"),
        ("grace", "playbook.tier"),
    ]
