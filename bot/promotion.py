"""A proposed promotion's message: the record, the change of tier, and while it is
open, Accept (with a confirm dialog) and Dismiss; once decided, who decided and
when, without buttons. Posted as a notice in the incident's channel and redrawn
in place when decided (bot/listeners/promotion.py)."""

from __future__ import annotations

from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.blocks import escape, promotion_step, slack_date, story_text, who
from bot.ids import ActionId, BlockId, ProposalButton
from engine.api import PromotionProposed, ProposalState, TierProposal, record

ADMINS_DECIDE = "Only GRACE's admins decide."


def proposal_message(proposal: TierProposal) -> dict[str, Any]:
    """chat.postMessage / chat.update arguments (less the channel and ts)."""
    blocks = [block.to_dict() for block in proposal_blocks(proposal)]
    return {"text": proposal_text(proposal), "blocks": blocks}


def proposal_text(proposal: TierProposal) -> str:
    """The notification fallback: the proposal, or how it was decided."""
    if proposal.state is ProposalState.OPEN:
        return story_text(PromotionProposed(proposal=proposal))
    return f"{_heading(proposal)} {decided_line(proposal)}"


def proposal_blocks(proposal: TierProposal) -> list[Block]:
    fields = [
        MarkdownTextObject(text=f"*Record*\n{record(proposal.stats)}"),
        MarkdownTextObject(text=f"*Tier*\n{promotion_step(proposal)}"),
    ]
    blocks: list[Block] = [
        SectionBlock(
            block_id=BlockId.PROMOTION,
            text=MarkdownTextObject(text=_heading(proposal)),
            fields=fields,
        )
    ]
    if proposal.state is not ProposalState.OPEN:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=decided_line(proposal))]))
        return blocks
    proposed = f"Proposed {slack_date(proposal.proposed_at)} · {ADMINS_DECIDE}"
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=proposed)]))
    blocks.append(_buttons(proposal))
    return blocks


def decided_line(proposal: TierProposal) -> str:
    """`Accepted by @lead <date>.`"""
    assert proposal.decided_by is not None and proposal.decided_at is not None
    verdict = "Accepted" if proposal.state is ProposalState.ACCEPTED else "Dismissed"
    return f"{verdict} by {who(proposal.decided_by)} {slack_date(proposal.decided_at)}."


def _heading(proposal: TierProposal) -> str:
    playbook = f"`{escape(proposal.playbook_id)}`"
    if proposal.state is ProposalState.ACCEPTED:
        return f":white_check_mark: *Promoted {playbook}* to tier {proposal.to_tier}."
    if proposal.state is ProposalState.DISMISSED:
        return f":heavy_minus_sign: *Not promoted:* {playbook} stays at tier {proposal.from_tier}."
    return (
        f":arrow_up: *Promote {playbook} to tier {proposal.to_tier}?*"
        f" Its record after {proposal.attempts} runs has earned it."
    )


def _buttons(proposal: TierProposal) -> ActionsBlock:
    value = ProposalButton(proposal.id).encode()
    confirm = ConfirmObject(
        title="Promote this playbook?",
        text=(
            f"`{escape(proposal.playbook_id)}`: tier {promotion_step(proposal)},"
            " from its next alert on. A record that falls demotes it again."
        ),
        confirm="Promote",
        deny="Cancel",
    )
    return ActionsBlock(
        block_id=BlockId.PROMOTION_DECISION,
        elements=[
            ButtonElement(
                text="Accept",
                action_id=ActionId.PROMOTION_ACCEPT,
                value=value,
                style="primary",
                confirm=confirm,
            ),
            ButtonElement(text="Dismiss", action_id=ActionId.PROMOTION_DISMISS, value=value),
        ],
    )
