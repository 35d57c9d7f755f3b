"""Earned autonomy: a playbook whose record falls loses a tier at once.

A tier-1 playbook heals without asking anyone. When the lower bound of its
success rate (engine/evidence.py) falls below `demote_below` after at least
`demote_after` runs, it is demoted one tier, so people approve it again; the
thread that saw the failure says so, the change is audited, and the tier
stays changed across restarts (the store keeps it). A demoted playbook is not
demoted again: one step tells people to look. Tier 3 is the ceiling.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from engine.evidence import lower_bound
from engine.models import Frozen, Plan, PlaybookStats, at_least_tier

MAX_TIER = 3


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


def demotion(
    stats: PlaybookStats, base_tier: int, current: TierChange | None, policy: Autonomy
) -> int | None:
    """The tier a playbook falls to after this record, or None when it keeps its own."""
    tier = current.tier if current is not None else base_tier
    if tier > base_tier or tier >= MAX_TIER:  # demoted already, or at the ceiling
        return None
    if stats.attempts < policy.demote_after or lower_bound(stats) >= policy.demote_below:
        return None
    return tier + 1


def effective(plan: Plan, change: TierChange | None) -> Plan:
    """The plan at its playbook's current tier: a demotion raises it, with the
    approvals that tier needs (never fewer than the plan asked for)."""
    return plan if change is None else at_least_tier(plan, change.tier)
