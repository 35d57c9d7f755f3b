"""Earned autonomy carried out (the rules are engine/autonomy.py's).

A failed heal whose record fell under the floor demotes its playbook at once,
said in the thread that saw it. A successful heal whose record clears the bar
only proposes a promotion: fewer people would watch that playbook, so a
person decides. The proposal is a message of its own in the incident's
channel with Accept and Dismiss; the store keeps one open proposal a
playbook, so a burst of successes proposes once, and after a Dismiss the
next waits `min_runs` more runs. Only an admin decides: anyone else's click
changes nothing and is audited. Accepting writes the new tier in the
compare-and-set that closes the proposal, so two clicks promote once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from engine.autonomy import (
    Autonomy,
    ProposalState,
    TierChange,
    TierProposal,
    demotion,
    promotion,
    tier_of,
)
from engine.evidence import lower_bound, record
from engine.models import GRACE, Incident, Plan, PlaybookStats
from engine.narration import Narrator
from engine.ports import Clock, Store
from engine.story import Demoted, PromotionProposed


class Verdict(StrEnum):
    """What one click on a proposal came to."""

    DECIDED = "decided"
    DECIDED_BEFORE = "decided_before"
    REFUSED = "refused"
    """Not an admin's: nothing changed."""
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Decided:
    """What a click came to, for the bot to show."""

    verdict: Verdict
    proposal: TierProposal | None = None
    """As it stands after the click."""


@dataclass(frozen=True)
class EarnedAutonomy:
    store: Store
    narrator: Narrator
    clock: Clock
    policy: Autonomy = field(default_factory=Autonomy)
    base_tiers: Mapping[str, int] = field(default_factory=dict)
    """Each playbook's tier in the catalog, from which a change counts."""
    admins: frozenset[str] = frozenset()
    """Who may decide on a promotion."""

    async def learned(
        self, incident: Incident, plan: Plan, stats: PlaybookStats, *, success: bool
    ) -> None:
        """After a heal's outcome is recorded with its playbook's record (`stats`)."""
        base = self.base_tiers.get(plan.playbook_id, plan.tier)
        current = (await self.store.playbook_tiers()).get(stats.playbook_id)
        if success:
            await self._propose(incident, stats, base, current)
        else:
            await self._demote(incident, stats, base, current)

    async def _demote(
        self, incident: Incident, stats: PlaybookStats, base: int, current: TierChange | None
    ) -> None:
        """A playbook whose record fell below the floor needs approval again, at once."""
        tier = demotion(stats, base, current, self.policy)
        if tier is None:
            return
        why = (
            f"{record(stats)}: under the {self.policy.demote_below:.0%} floor"
            f" after {stats.attempts} runs"
        )
        change = TierChange(
            playbook_id=stats.playbook_id,
            tier=tier,
            base_tier=base,
            by=GRACE,
            reason=why,
            at=self.clock.now(),
        )
        await self.store.change_tier(change)
        await self.narrator.tell(incident, Demoted(change=change))

    async def _propose(
        self, incident: Incident, stats: PlaybookStats, base: int, current: TierChange | None
    ) -> None:
        tier = promotion(stats, base, current, self.policy)
        if tier is None or incident.channel is None:
            return
        proposal = TierProposal(
            playbook_id=stats.playbook_id,
            from_tier=tier_of(base, current),
            to_tier=tier,
            attempts=stats.attempts,
            successes=stats.successes,
            lower_bound=lower_bound(stats),
            median_seconds=stats.median_seconds,
            channel=incident.channel,
            proposed_at=self.clock.now(),
        )
        stored = await self.store.propose_tier(proposal, quiet_runs=self.policy.min_runs)
        if stored is not None:
            await self.narrator.propose_promotion(PromotionProposed(proposal=stored))

    async def resume(self) -> None:
        """At start-up: a proposal stored by a GRACE that stopped before queueing
        its message is posted now (the notifier posts each proposal once)."""
        for proposal in await self.store.open_proposals():
            await self.narrator.propose_promotion(PromotionProposed(proposal=proposal))

    async def decide(self, proposal_id: int, user: str, *, accept: bool) -> Decided:
        """One click on Accept or Dismiss."""
        proposal = await self.store.tier_proposal(proposal_id)
        if proposal is None:
            return Decided(Verdict.UNKNOWN)
        if user not in self.admins:
            detail = {"proposal": proposal_id, "playbook": proposal.playbook_id, "accept": accept}
            await self.store.audit(user, "promotion.refused", detail=detail)
            return Decided(Verdict.REFUSED, proposal)
        if proposal.state is not ProposalState.OPEN:
            return Decided(Verdict.DECIDED_BEFORE, proposal)
        now = self.clock.now()
        decided = proposal.model_copy(
            update={
                "state": ProposalState.ACCEPTED if accept else ProposalState.DISMISSED,
                "decided_by": user,
                "decided_at": now,
                "decided_runs": (await self.store.playbook_stats(proposal.playbook_id)).attempts,
            }
        )
        change = None
        if accept:
            change = TierChange(
                playbook_id=proposal.playbook_id,
                tier=proposal.to_tier,
                base_tier=self.base_tiers.get(proposal.playbook_id, proposal.from_tier),
                by=user,
                reason=(
                    f"{record(proposal.stats)} when proposed, over the"
                    f" {self.policy.promote_above:.0%} bar"
                ),
                at=now,
            )
        if await self.store.decide_proposal(decided, change):
            return Decided(Verdict.DECIDED, decided)
        return Decided(Verdict.DECIDED_BEFORE, await self.store.tier_proposal(proposal_id))
