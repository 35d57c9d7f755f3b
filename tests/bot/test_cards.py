"""The live card: escaped and capped, buttons only while they can be used, and the
truth people act on (who can approve, until when, the pause, how it ended)."""

from __future__ import annotations

import html
from datetime import timedelta

from bot.blocks import HEADER_LIMIT, escape, escaped_cap
from bot.cards import CardFacts, card_blocks, card_text
from bot.devslack import block_errors
from bot.ids import ActionId, CardButton
from engine.models import (
    RELEASING_STATES,
    Approval,
    Decision,
    Incident,
    IncidentState,
    Pause,
)
from tests.bot.samples import NOW, PLAN, as_json, incident


def test_alert_text_cannot_mention_or_link():
    rendered = as_json(card_blocks(incident()))
    for raw in ("<!channel>", "<@U0BOSS>", "<https://evil", " & more"):
        assert raw not in rendered
    assert "&lt;!channel&gt; &lt;@U0BOSS&gt;" in rendered and "&amp; more" in rendered


def test_the_header_shows_an_alert_name_as_written_and_never_as_a_mention_or_link():
    # plain_text, but Slack reads &amp; &lt; &gt; in it as in mrkdwn: escaped, so the
    # reader sees the name as the sender wrote it and nobody is notified.
    name = "<!channel> <@U0BOSS> <https://evil.example|click> & co"
    alert = incident().alert.model_copy(update={"name": name, "reporter": "U1><!here"})
    blocks = card_blocks(incident().model_copy(update={"alert": alert}))
    header = blocks[0].to_dict()
    assert header["type"] == "header" and header["text"]["type"] == "plain_text"
    assert header["text"]["text"] == escape(name)
    rendered = as_json(blocks)
    assert "<!" not in rendered and "<https" not in rendered and "<@U0BOSS" not in rendered
    assert "posted by" not in rendered  # a reporter that is not a user ID is mentioned nowhere


def test_a_long_header_is_cut_to_slacks_150_characters_between_entities():
    for name in ("<" * 200, "a" + "&" * 200, "x" * 200):
        text = escaped_cap(name, HEADER_LIMIT)
        assert len(text) <= HEADER_LIMIT and text.endswith("… (truncated)")
        kept = text.removesuffix("… (truncated)")
        assert name.startswith(html.unescape(kept)) and escape(html.unescape(kept)) == kept
    assert block_errors([b.to_dict() for b in card_blocks(_named("<" * 200))]) == []


def _named(name: str) -> Incident:
    return incident().model_copy(
        update={"alert": incident().alert.model_copy(update={"name": name})}
    )


def test_a_huge_explanation_is_capped_with_a_marker_and_slack_accepts_it():
    blocks = [b.to_dict() for b in card_blocks(incident(explanation="x" * 10_000))]
    section = blocks[1]["text"]["text"]
    assert len(section) == 3000 and section.endswith("… (truncated)")
    assert block_errors(blocks) == []


def test_buttons_carry_incident_and_plan_and_only_while_awaiting_approval():
    blocks = [b.to_dict() for b in card_blocks(incident())]
    [actions] = [b for b in blocks if b["type"] == "actions"]
    assert [e["action_id"] for e in actions["elements"]] == [
        ActionId.APPROVE,
        ActionId.REJECT,
        ActionId.DRY_RUN,
    ]
    for element in actions["elements"]:
        assert CardButton.decode(element["value"]) == CardButton(7, PLAN.hash)
    for state in set(IncidentState) - {IncidentState.AWAITING_APPROVAL}:
        assert not [b for b in card_blocks(incident(state)) if b.type == "actions"], state


def test_reason_is_shown_escaped():
    rendered = as_json(card_blocks(incident(IncidentState.NEEDS_HUMAN, reason="<@U1> bad")))
    assert "*Why:* &lt;@U1&gt; bad" in rendered


def test_the_card_counts_alerts_and_says_when_they_were_seen():
    later = NOW.replace(hour=3, minute=4, second=10)
    seen = incident().model_copy(
        update={"alert_count": 37, "firing_count": 2, "first_seen": NOW, "last_seen": later}
    )
    rendered = as_json(card_blocks(seen))
    assert "37 received · now 2 firing" in rendered
    assert "first 00:00:00, last 03:04:10 UTC" in rendered


def test_a_waiting_card_mentions_its_approvers_and_shows_its_deadline_in_the_readers_zone():
    deadline = NOW + timedelta(minutes=30)
    waiting = incident().model_copy(update={"deadline": deadline})
    facts = CardFacts(approvers=("S0ONCALL", "U0ALICE"))
    # The message text is what notifies: the people who can act are pinged at once.
    assert card_text(waiting, facts).endswith("waiting for <!subteam^S0ONCALL>, <@U0ALICE>")
    rendered = as_json(card_blocks(waiting, facts))
    stamp = int(deadline.timestamp())
    assert "*Waiting for* <!subteam^S0ONCALL>, <@U0ALICE>" in rendered
    assert f"<!date^{stamp}^{{date_short_pretty}} at {{time}}|2026-11-24 00:30 UTC>" in rendered
    assert block_errors([b.to_dict() for b in card_blocks(waiting, facts)]) == []


def test_a_waiting_card_without_approvers_says_nobody_can_approve_it():
    rendered = as_json(card_blocks(incident(), CardFacts()))
    assert "nobody: no approvers are configured" in rendered
    assert "waiting for" not in card_text(incident(), CardFacts())


def test_only_a_waiting_card_names_approvers():
    resolved = incident(IncidentState.RESOLVED)
    assert "Waiting for" not in as_json(card_blocks(resolved, CardFacts(approvers=("U0A",))))


def test_every_open_card_carries_the_pause_banner_while_paused_and_none_after():
    pause = Pause(by="U0LEAD", reason="<!here> migration", at=NOW)
    for state in set(IncidentState) - RELEASING_STATES:
        paused = as_json(card_blocks(incident(state), CardFacts(pause=pause)))
        assert "*GRACE is paused* by <@U0LEAD>: &lt;!here&gt; migration" in paused, state
        assert "approvals still count" in paused
        assert "GRACE is paused" not in as_json(card_blocks(incident(state))), state
    for state in RELEASING_STATES:  # it ended: nobody needs to act on it
        assert "GRACE is paused" not in as_json(card_blocks(incident(state), CardFacts(pause)))


def _ended(state: IncidentState, firing: int, approvals: tuple[Approval, ...]) -> str:
    ended = incident(state).model_copy(
        update={"updated_at": NOW + timedelta(minutes=4), "alert_count": 3, "firing_count": firing}
    )
    return as_json(card_blocks(ended, CardFacts(approvals=approvals)))


def _vote(user: str, decision: Decision) -> Approval:
    return Approval(incident_id=7, user=user, plan_hash=PLAN.hash, decision=decision, at=NOW)


def test_the_final_card_says_who_approved_how_it_ended_how_long_and_if_it_still_fires():
    votes = (_vote("U0ALICE", Decision.APPROVE), _vote("U0BOB", Decision.APPROVE))
    resolved = _ended(IncidentState.RESOLVED, 0, votes)
    assert "*Approved by*\\n<@U0ALICE>, <@U0BOB>" in resolved
    assert ":white_check_mark: Resolved after 4 min" in resolved
    assert "3 received · now resolved" in resolved and "1 firing" not in resolved
    failed = _ended(IncidentState.ROLLED_BACK, 2, votes[:1])
    assert "Rolled back after 4 min" in failed and "now 2 firing" in failed


def test_a_rejected_card_names_who_rejected():
    rejected = _ended(IncidentState.REJECTED, 1, (_vote("U0BOB", Decision.REJECT),))
    assert "*Rejected by*\\n<@U0BOB>" in rejected and "Approved by" not in rejected


def test_a_tier_1_card_says_nobody_needed_to_approve():
    tier1 = incident(IncidentState.RESOLVED).model_copy(
        update={"plan": PLAN.model_copy(update={"tier": 1, "required_approvals": 0})}
    )
    assert "nobody needed to: tier 1" in as_json(card_blocks(tier1))
