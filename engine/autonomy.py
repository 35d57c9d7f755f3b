"""Earned autonomy: a playbook's tier follows its record.

A tier-1 playbook heals without asking anyone. When the lower bound of its
success rate (engine/evidence.py) falls below `demote_below` after at least
`demote_after` runs, it is demoted one tier, so people approve it again; the
thread that saw the failure says so, the change is audited, and the tier
stays changed across restarts (the store keeps it). A demoted playbook is not
demoted again: one step tells people to look. Tier 3 is the ceiling.

The other way needs a person: a tier-2 playbook whose lower bound clears
`promote_above` after at least `min_runs` runs is proposed for tier 1, and
only an admin's Accept promotes it (engine/earned.py). Tier 3 is never
promoted, and tier 1 cannot go lower.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from engine.evidence import lower_bound
from engine.models import Frozen, Plan, PlaybookStats, at_least_tier, lowered_to_tier

MAX_TIER = 3
PROMOTABLE_TIER = 2
"""The one tier a record can earn its way down from: 3 is never promoted, 1 is the floor."""


class Autonomy(Frozen):
    """`autonomy:` in the config."""

    demote_below: float = Field(
        0.8, ge=0, le=1, description="a lower bound under this after demote_after runs demotes"
    )
    demote_after: int = Field(5, ge=1, description="runs before a playbook can be demoted")
    promote_above: float = Field(
        0.95, ge=0, le=1, description="a lower bound over this after min_runs runs may promote"
    )
    min_runs: int = Field(20, ge=1, description="runs before a promotion is proposed")


class TierChange(Frozen):
    """A playbook's tier as changed from its catalog tier, by whom and why."""

    playbook_id: str
    tier: int = Field(ge=1, le=MAX_TIER)
    base_tier: int = Field(ge=1, le=MAX_TIER)
    """The catalog's tier when it changed."""
    by: str
    reason: str
    at: datetime


class ProposalState(StrEnum):
    OPEN = "open"
    ACCEPTED = "accepted"
    DISMISSED = "dismissed"


class TierProposal(Frozen):
    """A promotion GRACE proposed: the record it rests on, where it was asked, and
    how it was decided."""

    id: int = 0
    """The store's number for it; 0 until stored."""
    playbook_id: str
    from_tier: int = Field(ge=1, le=MAX_TIER)
    to_tier: int = Field(ge=1, le=MAX_TIER)
    attempts: int = Field(ge=0)
    successes: int = Field(ge=0)
    lower_bound: float
    median_seconds: float | None = None
    channel: str
    state: ProposalState = ProposalState.OPEN
    proposed_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None
    decided_runs: int | None = None
    """The playbook's runs when it was decided: a Dismiss holds off the next proposal
    until `min_runs` more."""

    @property
    def stats(self) -> PlaybookStats:
        """The record when it was proposed."""
        return PlaybookStats(
            playbook_id=self.playbook_id,
            attempts=self.attempts,
            successes=self.successes,
            median_seconds=self.median_seconds,
        )


def tier_of(catalog_tier: int, change: TierChange | None) -> int:
    """A playbook's tier now. A demotion only ever raises it; a promotion holds while
    the catalog keeps the tier it was promoted from (a playbook raised in the
    catalog since is not lowered by an old Accept)."""
    if change is None:
        return catalog_tier
    if change.tier < change.base_tier:
        return change.tier if catalog_tier == change.base_tier else catalog_tier
    return max(catalog_tier, change.tier)


def demotion(
    stats: PlaybookStats, base_tier: int, current: TierChange | None, policy: Autonomy
) -> int | None:
    """The tier a playbook falls to after this record, or None when it keeps its own."""
    tier = tier_of(base_tier, current)
    if tier > base_tier or tier >= MAX_TIER:  # demoted already, or at the ceiling
        return None
    if stats.attempts < policy.demote_after or lower_bound(stats) >= policy.demote_below:
        return None
    return tier + 1


def promotion(
    stats: PlaybookStats, base_tier: int, current: TierChange | None, policy: Autonomy
) -> int | None:
    """The tier a playbook may be proposed for after this record, or None."""
    tier = tier_of(base_tier, current)
    if tier != PROMOTABLE_TIER:
        return None
    if stats.attempts < policy.min_runs or lower_bound(stats) <= policy.promote_above:
        return None
    return tier - 1


def effective(plan: Plan, change: TierChange | None) -> Plan:
    """The plan at its playbook's current tier: a demotion raises it, with the
    approvals that tier needs (never fewer than the plan asked for); a promotion
    lowers it to that tier's own approvals (tier 1: none)."""
    tier = tier_of(plan.tier, change)
    return lowered_to_tier(plan, tier) if tier < plan.tier else at_least_tier(plan, tier)
