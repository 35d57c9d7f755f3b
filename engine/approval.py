"""Who may approve what: the per-tier rules, kept apart from the flows that apply them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from engine.models import Approval, Decision

REQUIRED_APPROVALS = {1: 0, 2: 1, 3: 2}


@dataclass(frozen=True)
class ApprovalPolicy:
    approvers: Mapping[int, frozenset[str]] = field(default_factory=dict)

    def refusal(self, tier: int, user: str, requester: str | None) -> str | None:
        """Why `user` may not approve a plan of this tier, or None when they may."""
        allowed = self.approvers.get(tier, frozenset())
        if not allowed:
            return (
                f"No approvers are configured for tier {tier}, so nobody can approve this plan. "
                f"An admin can add them under `approvers.tier{tier}` in the config."
            )
        if user not in allowed:
            return (
                f"You are not on the tier {tier} approver list, so your approval was not counted."
            )
        if tier >= 3 and user == requester:
            return "You raised this incident; a tier 3 plan needs approvers other than you."
        return None

    def satisfied(self, tier: int, plan_hash: str, approvals: Iterable[Approval]) -> bool:
        users = {
            a.user for a in approvals if a.decision is Decision.APPROVE and a.plan_hash == plan_hash
        }
        return len(users) >= REQUIRED_APPROVALS[tier]
