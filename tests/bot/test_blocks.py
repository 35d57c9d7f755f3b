"""The card and thread: alert text escaped and capped, buttons only when they can be used."""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime

import pytest
from slack_sdk.models.blocks import Block

from bot.blocks import HEADER_LIMIT, card_blocks, escape, escaped_cap, story_text
from bot.devslack import block_errors
from bot.ids import ActionId, CardButton
from engine.models import (
    Alert,
    BenchmarkResult,
    CheckResult,
    Diagnosis,
    Incident,
    IncidentState,
    Pause,
    Plan,
    PlannedCheck,
    PlannedStep,
    PlaybookStats,
    Snapshot,
    StepResult,
    Target,
    Verification,
)
from engine.story import (
    Approved,
    BreakerChanged,
    Cleared,
    Held,
    HoldCleared,
    Interrupted,
    Learned,
    NeedsHuman,
    Planned,
    Rejected,
    RestoreFailed,
    RolledBack,
    SnapshotTaken,
    StepFinished,
    Verified,
)

NOW = datetime(2026, 11, 24, tzinfo=UTC)
HOSTILE = "<!channel> <@U0BOSS> <https://evil.example|click me> & more"
PLAN = Plan(
    playbook_id="p",
    title="Fix <it>",
    tier=2,
    target=Target(executor="sqlite", name="/db/a.db"),
    steps=(PlannedStep(action="wal_checkpoint", params={"mode": "TRUNCATE"}, timeout_s=60),),
    checks=(PlannedCheck(check="integrity_ok"),),
)
SNAPSHOT = Snapshot(
    incident_id=1, target=PLAN.target, location="/s/1.sqlite", size_bytes=3 * 2**20, taken_at=NOW
)


def incident(state=IncidentState.AWAITING_APPROVAL, explanation=HOSTILE, reason=None) -> Incident:
    alert = Alert(
        source="slack",
        source_key="k",
        name="SQLiteWALTooLarge",
        text=HOSTILE,
        labels={"db_path": "/db/a.db"},
        received_at=NOW,
        reporter="U0MON",
    )
    return Incident(
        id=7,
        state=state,
        fingerprint=alert.fingerprint,
        alert=alert,
        channel="C1",
        diagnosis=Diagnosis(pattern_id="x", problem="y", explanation=explanation),
        plan=PLAN,
        reason=reason,
        created_at=NOW,
        updated_at=NOW,
    )


def as_json(blocks: list[Block]) -> str:
    return json.dumps([b.to_dict() for b in blocks])


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


@pytest.mark.parametrize("value", ["", "null", "{}", '{"incident": "x", "plan": 1}', "[1]"])
def test_foreign_button_values_are_refused(value):
    with pytest.raises(ValueError, match="not a GRACE button value"):
        CardButton.decode(value)


EVENTS = [
    Planned(diagnosis=Diagnosis(pattern_id="x", problem="y", explanation=HOSTILE), plan=PLAN),
    NeedsHuman(reason=HOSTILE),
    Cleared(),
    Held(pause=Pause(by="U0LEAD", reason=HOSTILE, at=NOW)),
    Approved(user="U0ONCALL"),
    Approved(user="grace", automatic=True),
    Rejected(user="U0ONCALL", reason=HOSTILE),
    SnapshotTaken(snapshot=SNAPSHOT),
    StepFinished(result=StepResult(action="wal_checkpoint", ok=True, detail=HOSTILE, seconds=0.4)),
    Verified(
        verification=Verification(
            checks=(CheckResult(check="integrity_ok", ok=True, detail="ok"),),
            benchmarks=(
                BenchmarkResult(
                    benchmark="read_latency", before_s=0.002, after_s=0.001, tolerance=0.5
                ),
            ),
        )
    ),
    RolledBack(why=HOSTILE, restored=(SNAPSHOT,)),
    RestoreFailed(
        why="verification failed", error=HOSTILE, target=HOSTILE, not_restored=(SNAPSHOT,)
    ),
    Learned(
        stats=PlaybookStats(playbook_id="p", attempts=3, successes=3, median_seconds=0.4),
        success=True,
    ),
    BreakerChanged(circuit="sqlite:/srv/a.db", opened=True, retry_at=NOW, cause=HOSTILE),
    BreakerChanged(circuit=HOSTILE, opened=False),
    Interrupted(was="executing", target=HOSTILE, snapshots=(SNAPSHOT,), touched=True),
    HoldCleared(user="U0LEAD", target=HOSTILE),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_every_story_event_reads_and_escapes_alert_text(event):
    text = story_text(event)
    assert text and "<!channel>" not in text and "<https://evil" not in text


def test_story_details_people_rely_on():
    told = {type(e).__name__: story_text(e) for e in EVENTS}
    assert "3/3 succeeded, median 0.4 s" in told["Learned"]
    assert "succeeded in 0.40 s" in told["StepFinished"]
    assert "(3.0 MiB)" in told["SnapshotTaken"]
    assert "2.0 ms before, 1.0 ms after (tolerance 50%)" in told["Verified"]
    assert "resolved by itself" in told["Cleared"]
    opened = story_text(EVENTS[-4])
    assert "*opened*" in opened and f"try it again after {NOW:%H:%M:%S} UTC" in opened
    assert SNAPSHOT.location in told["Interrupted"] and "/grace clear" in told["Interrupted"]
    assert "Nothing will be re-run" in told["Interrupted"]
    assert f"*Not restored* (kept, newest first): `{SNAPSHOT.location}`" in told["RestoreFailed"]
    assert "/grace clear" in told["RestoreFailed"]


def test_an_interrupted_run_that_touched_nothing_says_so():
    text = story_text(Interrupted(was="approved", target="/srv/a.db", snapshots=(), touched=False))
    assert "Nothing was changed" in text and "safe hold" not in text


def test_the_card_counts_alerts_and_says_when_they_were_seen():
    later = NOW.replace(hour=3, minute=4, second=10)
    seen = incident().model_copy(
        update={"alert_count": 37, "firing_count": 2, "first_seen": NOW, "last_seen": later}
    )
    rendered = as_json(card_blocks(seen))
    assert "37 received, 2 firing" in rendered
    assert "first 00:00:00, last 03:04:10 UTC" in rendered
