"""People decide on a waiting plan: one Approve or Reject at a time per incident.

A refusal is answered privately to the person who clicked. An approval that
counts while GRACE is paused is returned to the caller instead: the bot says
who paused it and how it is resumed, in its own words.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from engine.approval import ApprovalPolicy
from engine.models import Approval, Decision, Incident, IncidentState, Pause
from engine.narration import Narrator
from engine.ports import Clock, Directory, Store
from engine.story import Approved, Rejected

S = IncidentState
ALREADY_DECIDED = "You have already decided on this plan."


@dataclass(frozen=True)
class Decisions:
    store: Store
    narrator: Narrator
    policy: ApprovalPolicy
    directory: Directory
    clock: Clock
    lock: Callable[[int], AbstractAsyncContextManager[object]]
    run: Callable[[int], None]
    """Starts an approved plan (after the caller's answer)."""

    async def decide(
        self,
        *,
        incident_id: int,
        plan_hash: str,
        user: str,
        decision: Decision,
        channel: str,
        reason: str | None = None,
    ) -> Pause | None:
        """Apply one person's Approve or Reject; answers them privately when refused.

        Returns the pause a counted approval waits behind, for the caller to tell
        the person. One decision at a time per incident, so a double click is
        answered in order. Safe to run twice for one click: the inbox hands a
        click over again when GRACE stopped half-way through it, and what its
        first run recorded is carried out now (the compare-and-set moves the
        incident once).
        """
        async with self.lock(incident_id):
            answer = await self._decide(incident_id, plan_hash, user, decision, reason)
        if isinstance(answer, str):
            await self.narrator.tell_user(channel, user, answer)
            return None
        return answer

    async def _decide(
        self, incident_id: int, plan_hash: str, user: str, decision: Decision, reason: str | None
    ) -> str | Pause | None:
        """A refusal to answer the person privately, or the pause their approval waits behind."""
        incident = await self.store.get_incident(incident_id)
        refusal = await self._refusal(incident, plan_hash, user, decision)
        if refusal is not None:
            await self.store.audit(
                user,
                "approval.refused",
                incident_id=incident_id,
                detail={"decision": decision.value, "why": refusal, "plan_hash": plan_hash},
            )
            return refusal
        assert incident is not None and incident.plan is not None
        approval = Approval(
            incident_id=incident_id,
            user=user,
            plan_hash=plan_hash,
            decision=decision,
            at=self.clock.now(),
            reason=reason,
        )
        recorded = await self.store.add_approval(approval)
        approvals = await self.store.approvals(incident_id)
        # Not recorded now but stored alike: this click's own earlier run, cut short.
        resumed = not recorded and any(_alike(a, approval) for a in approvals)
        if not (recorded or resumed):
            return ALREADY_DECIDED
        if decision is Decision.REJECT:
            await self._reject(incident, user, reason)
            return None
        if not self.policy.satisfied(incident.plan, approvals):
            if not recorded:
                return ALREADY_DECIDED
            return await self.store.paused()
        approved = await self.store.transition(
            incident_id, S.AWAITING_APPROVAL, S.APPROVED, actor=user
        )
        if approved is None:
            return "Someone else decided on this plan first."
        # Read after the move: a resume that came between missed nothing, it saw APPROVED.
        pause = await self.store.paused()
        await self.narrator.tell(approved, Approved(user=user, waits=pause is not None))
        await self.narrator.show(approved)
        if pause is not None:
            return pause
        self.run(incident_id)
        return None

    async def _refusal(
        self, incident: Incident | None, plan_hash: str, user: str, decision: Decision
    ) -> str | None:
        if incident is None or incident.plan is None:
            return "This incident is unknown to GRACE."
        if incident.state is not S.AWAITING_APPROVAL:
            return f"This incident is already {incident.state.value.replace('_', ' ')}."
        if incident.plan.hash != plan_hash:
            return "The plan changed since this card was posted; approve the current plan instead."
        return await self.policy.refusal(
            incident.plan, user, incident.alert.reporter, self.directory
        )

    async def _reject(self, incident: Incident, user: str, reason: str | None) -> None:
        rejected = await self.store.transition(
            incident.id, S.AWAITING_APPROVAL, S.REJECTED, actor=user, reason=reason
        )
        if rejected is None:
            return
        await self.narrator.tell(rejected, Rejected(user=user, reason=reason))
        await self.narrator.show(rejected)


def _alike(stored: Approval, new: Approval) -> bool:
    """The same person's same decision on the same plan."""
    same = (new.user, new.decision, new.plan_hash)
    return (stored.user, stored.decision, stored.plan_hash) == same
