"""A proposed promotion's message and the tier people read: what it says, within Slack's rules."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.devslack import block_errors
from bot.ids import ActionId, ProposalButton
from bot.playbook_text import playbooks_text
from bot.promotion import proposal_message
from engine.autonomy import ProposalState, TierChange, TierProposal
from engine.catalog import PlaybookSpec

AT = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
OPEN = TierProposal(
    id=7,
    playbook_id="a" * 64,  # the longest id a playbook may have
    from_tier=2,
    to_tier=1,
    attempts=24,
    successes=24,
    lower_bound=0.862,
    median_seconds=12.0,
    channel="C0ALERTS",
    proposed_at=AT,
)


def decided(by: str, state: ProposalState) -> TierProposal:
    return OPEN.model_copy(update={"state": state, "decided_by": by, "decided_at": AT})


def test_an_open_proposal_shows_its_record_and_asks_with_accept_and_dismiss():
    message = proposal_message(OPEN)
    assert block_errors(message["blocks"]) == []
    fields = [f["text"] for f in message["blocks"][0]["fields"]]
    assert fields == [
        "*Record*\n24/24 succeeded, 86% at worst, median 12 s",
        "*Tier*\n2 → 1: heals without asking anyone",
    ]
    [accept, dismiss] = message["blocks"][-1]["elements"]
    assert (accept["action_id"], dismiss["action_id"]) == (
        ActionId.PROMOTION_ACCEPT,
        ActionId.PROMOTION_DISMISS,
    )
    assert ProposalButton.decode(accept["value"]) == ProposalButton(7)
    assert accept["confirm"]["deny"]["text"] == "Cancel"
    assert message["text"].startswith(f":arrow_up: `{OPEN.playbook_id}` has earned a promotion")


@pytest.mark.parametrize(
    ("proposal", "said"),
    [
        (decided("U0LEAD", ProposalState.ACCEPTED), "Accepted by <@U0LEAD> <!date^"),
        (decided("U0LEAD", ProposalState.DISMISSED), "Dismissed by <@U0LEAD> <!date^"),
        (decided("grace", ProposalState.DISMISSED), "Dismissed by GRACE <!date^"),  # a demotion
    ],
)
def test_a_decided_proposal_says_who_decided_and_when_without_buttons(proposal, said):
    message = proposal_message(proposal)
    assert block_errors(message["blocks"]) == []
    assert all(block["type"] != "actions" for block in message["blocks"])
    assert message["blocks"][-1]["elements"][0]["text"].startswith(said)
    assert said in message["text"]


@pytest.mark.parametrize("value", ["", "null", "{}", '{"proposal": "7"}', '{"proposal": 0}'])
def test_foreign_proposal_buttons_are_refused(value):
    with pytest.raises(ValueError, match="not a GRACE proposal button"):
        ProposalButton.decode(value)


def playbook(tier: int) -> PlaybookSpec:
    return PlaybookSpec.model_validate(
        {
            "id": "fix-it",
            "title": "Fix it",
            "treats": ["broken"],
            "tier": tier,
            "target": {"executor": "sqlite", "from_label": "db_path"},
            "steps": [{"action": "wal_checkpoint"}],
            "checks": [{"check": "integrity_ok"}],
        }
    )


def test_a_promotion_shows_in_playbooks_while_the_catalog_keeps_its_tier():
    change = TierChange(playbook_id="fix-it", tier=1, base_tier=2, by="U0LEAD", reason="r", at=AT)
    text = playbooks_text([playbook(2)], {"fix-it": change})
    assert "· *tier 1* (heals at once; promoted from tier 2 by <@U0LEAD> <!date^" in text
    # The catalog raised it to tier 3 since: the old Accept no longer lowers it.
    assert "· tier 3 (two approvers) ·" in playbooks_text([playbook(3)], {"fix-it": change})
