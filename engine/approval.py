"""Who may approve what: the per-tier rules, kept apart from the flows that apply them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from engine.models import Approval, Decision, Plan
from engine.ports import Directory


def is_group(entry: str) -> bool:
    """Slack user group IDs start with S; user IDs with U or W."""
    return entry.startswith("S")


@dataclass(frozen=True)
class ApprovalPolicy:
    approvers: Mapping[int, frozenset[str]] = field(default_factory=dict)

    def allowed(self, plan: Plan) -> frozenset[str]:
        """The plan's own approvers (a playbook may only narrow its tier's), else the tier's."""
        return frozenset(plan.approvers) or self.approvers.get(plan.tier, frozenset())

    async def refusal(
        self, plan: Plan, user: str, requester: str | None, directory: Directory
    ) -> str | None:
        """Why `user` may not approve this plan, or None when they may."""
        allowed = self.allowed(plan)
        if not allowed:
            return (
                f"No approvers are configured for tier {plan.tier}, so nobody can approve this "
                f"plan. An admin can add them under `approvers.tier{plan.tier}` in the config."
            )
        if not await _is_member(user, allowed, directory):
            return (
                f"You are not on the tier {plan.tier} approver list, "
                "so your approval was not counted."
            )
        if plan.tier >= 3 and user == requester:
            return "You raised this incident; a tier 3 plan needs approvers other than you."
        return None

    def satisfied(self, plan: Plan, approvals: Iterable[Approval]) -> bool:
        users = {
            a.user for a in approvals if a.decision is Decision.APPROVE and a.plan_hash == plan.hash
        }
        return len(users) >= plan.required_approvals

    def override_problems(self, playbook_id: str, tier: int, approvers: Iterable[str]) -> list[str]:
        """A playbook may narrow its tier's approver list, never widen it."""
        tier_list = self.approvers.get(tier, frozenset())
        return [
            f"{playbook_id}: approver {entry} is not on approvers.tier{tier}"
            for entry in approvers
            if entry not in tier_list
        ]


async def _is_member(user: str, allowed: frozenset[str], directory: Directory) -> bool:
    if user in allowed:
        return True
    for group in sorted(e for e in allowed if is_group(e)):
        if user in await directory.members(group):
            return True
    return False
