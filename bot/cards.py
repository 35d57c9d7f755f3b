"""The incident's live card, as a person should read it at every moment.

It tells the truth when it is sent: the outbox renders it from the database
then (`CardFacts` gathers what the incident itself does not hold), so a card
waiting in the outbox shows what is true when Slack gets it. A card waiting
for approval mentions the people who can give it and says when it expires
(in each reader's time zone); while GRACE is paused an open card says so at
the top (one that ended needs no one, so it never carries the banner);
once the incident ended it says who approved, how it ended and how long it
took, and whether its alert still fires.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.blocks import (
    FIELD_LIMIT,
    HEADER_LIMIT,
    SECTION_LIMIT,
    STATE_LABEL,
    approval_rule,
    cap,
    escape,
    escaped_cap,
    mention,
    slack_date,
    span,
)
from bot.ids import ActionId, BlockId, CardButton, is_user_id
from engine.api import ApprovalPolicy
from engine.models import (
    RELEASING_STATES,
    Approval,
    Decision,
    Incident,
    IncidentState,
    Pause,
    Plan,
)
from engine.storage_ports import IncidentReads

S = IncidentState
ENDED = RELEASING_STATES | {S.SAFE_HOLD, S.INTERRUPTED, S.NEEDS_HUMAN}
"""States after which nothing more happens without a person."""


@dataclass(frozen=True)
class CardFacts:
    """What a card shows beyond the incident itself, read when the card is sent."""

    pause: Pause | None = None
    approvers: tuple[str, ...] = ()
    """Who can approve a waiting plan: user IDs and user group IDs."""
    approvals: tuple[Approval, ...] = field(default=())


@dataclass(frozen=True)
class CardReader:
    """Gathers a card's facts from the store and the approval policy."""

    store: IncidentReads
    policy: ApprovalPolicy

    async def facts(self, incident: Incident) -> CardFacts:
        waiting = incident.plan if incident.state is S.AWAITING_APPROVAL else None
        approvers = tuple(sorted(self.policy.allowed(waiting))) if waiting is not None else ()
        decided = incident.plan is not None and waiting is None
        approvals = tuple(await self.store.approvals(incident.id)) if decided else ()
        return CardFacts(await self.store.paused(), approvers, approvals)


def card_message(incident: Incident, facts: CardFacts) -> dict[str, Any]:
    """chat.postMessage / chat.update arguments (less the channel and ts)."""
    blocks = [block.to_dict() for block in card_blocks(incident, facts)]
    return {"text": card_text(incident, facts), "blocks": blocks}


def card_text(incident: Incident, facts: CardFacts = CardFacts()) -> str:
    """The notification fallback, and what notifies: the approvers are mentioned here."""
    text = f"{STATE_LABEL[incident.state]}: {escape(incident.alert.name)}"
    if facts.approvers:
        text += f" · waiting for {', '.join(mention(a) for a in facts.approvers)}"
    return cap(text, 3000)


def card_blocks(incident: Incident, facts: CardFacts = CardFacts()) -> list[Block]:
    """The live card; while GRACE is paused every open card says so, at the top."""
    alert = incident.alert
    what = incident.diagnosis.explanation if incident.diagnosis else alert.text or alert.name
    blocks: list[Block] = [
        # plain_text, yet Slack decodes &amp;, &lt; and &gt; in it as in mrkdwn: the
        # name is escaped like all alert text, and read back as the sender wrote it.
        HeaderBlock(text=escaped_cap(alert.name, HEADER_LIMIT)),
        *([_paused(facts.pause)] if facts.pause and incident.state not in RELEASING_STATES else []),
        SectionBlock(text=MarkdownTextObject(text=cap(escape(what), SECTION_LIMIT))),
        SectionBlock(fields=_fields(incident, facts)),
    ]
    if incident.reason:
        why = cap(f"*Why:* {escape(incident.reason)}", SECTION_LIMIT)
        blocks.append(SectionBlock(text=MarkdownTextObject(text=why)))
    if waiting := _waiting(incident, facts):
        blocks.append(SectionBlock(text=MarkdownTextObject(text=cap(waiting, SECTION_LIMIT))))
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=_context(incident))]))
    if incident.state is S.AWAITING_APPROVAL and incident.plan is not None:
        blocks.append(decision_buttons(incident.id, incident.plan))
    return blocks


def decision_buttons(
    incident_id: int, plan: Plan, block_id: str = BlockId.DECISION
) -> ActionsBlock:
    """Approve, Reject and Dry run, bound to this plan: the card's, and App Home's
    (a view holds many, each under its own `block_id`). A tier 1 plan waits only
    for a pause and needs nobody's approval: no Approve."""
    value = CardButton(incident_id, plan.hash).encode()
    approve = ButtonElement(
        text="Approve", action_id=ActionId.APPROVE, value=value, style="primary"
    )
    return ActionsBlock(
        block_id=block_id,
        elements=[
            *([approve] if plan.tier > 1 else []),
            ButtonElement(text="Reject", action_id=ActionId.REJECT, value=value, style="danger"),
            ButtonElement(text="Dry run", action_id=ActionId.DRY_RUN, value=value),
        ],
    )


def _paused(pause: Pause) -> ContextBlock:
    why = f": {escape(pause.reason)}" if pause.reason else ""
    text = (
        f":double_vertical_bar: *GRACE is paused* by <@{pause.by}>{why}. "
        "Nothing runs until `/grace resume`; approvals still count."
    )
    return ContextBlock(elements=[MarkdownTextObject(text=cap(text, FIELD_LIMIT))])


def _waiting(incident: Incident, facts: CardFacts) -> str:
    """Who can act on a waiting plan, and until when."""
    if incident.state is not S.AWAITING_APPROVAL or incident.plan is None:
        return ""
    until = f" · *Expires* {slack_date(incident.deadline)}" if incident.deadline else ""
    if incident.plan.tier == 1:
        return f"*Runs* as soon as GRACE is resumed: tier 1 needs no approval{until}"
    who = ", ".join(mention(a) for a in facts.approvers) or "nobody: no approvers are configured"
    return f"*Waiting for* {who}{until}"


def _fields(incident: Incident, facts: CardFacts) -> list[MarkdownTextObject]:
    pairs = [("State", _state(incident)), ("Alerts", _seen(incident))]
    if incident.alert.labels:
        labels = ", ".join(f"{k}={v}" for k, v in incident.alert.labels.items())
        pairs.append(("Labels", escape(labels)))
    if incident.plan is not None:
        plan = incident.plan
        pairs += [
            ("Playbook", escape(plan.title)),
            ("Tier", f"{plan.tier} ({approval_rule(plan.required_approvals)})"),
            ("Target", f"{plan.target.executor}: `{escape(plan.target.name)}`"),
        ]
        if incident.diagnosis is not None and incident.diagnosis.evidence:
            pairs.append(("Why this playbook", escape(incident.diagnosis.evidence)))
        if decided := _decided(incident, facts.approvals):
            pairs.append(decided)
    return [MarkdownTextObject(text=cap(f"*{k}*\n{v}", FIELD_LIMIT)) for k, v in pairs]


def _state(incident: Incident) -> str:
    """The state, and for one that ended, how long it took from the first alert."""
    label = STATE_LABEL[incident.state]
    if incident.state not in ENDED:
        return label
    return f"{label} after {span(incident.updated_at - incident.created_at)}"


def _decided(incident: Incident, approvals: tuple[Approval, ...]) -> tuple[str, str] | None:
    approved = [a.user for a in approvals if a.decision is Decision.APPROVE]
    rejected = [a.user for a in approvals if a.decision is Decision.REJECT]
    if rejected:
        return "Rejected by", ", ".join(f"<@{u}>" for u in rejected)
    if approved:
        return "Approved by", ", ".join(f"<@{u}>" for u in approved)
    if incident.plan is not None and incident.plan.required_approvals == 0:
        return "Approved by", "nobody needed to: tier 1"
    return None


def _seen(incident: Incident) -> str:
    now = "resolved" if incident.firing_count == 0 else f"{incident.firing_count} firing"
    times = f"{incident.alert_count} received · now {now}"
    if incident.first_seen and incident.last_seen:
        first, last = (t.strftime("%H:%M:%S") for t in (incident.first_seen, incident.last_seen))
        times += f"\nfirst {first}, last {last} UTC" if first != last else f"\nat {first} UTC"
    return times


def _context(incident: Incident) -> str:
    parts = [f"Incident #{incident.id}", f"source: {escape(incident.alert.source)}"]
    if is_user_id(incident.alert.reporter):  # a mention only of what is a user's ID
        parts.append(f"posted by <@{incident.alert.reporter}>")
    if incident.plan is not None:
        parts.append(f"plan `{incident.plan.hash}`")
    return " · ".join(parts)
