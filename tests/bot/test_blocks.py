"""The thread and notices: alert text escaped, and the details people rely on."""

from __future__ import annotations

import pytest

from bot.blocks import approval_waits_text, story_text
from bot.ids import CardButton
from engine.models import (
    BenchmarkResult,
    CheckResult,
    Diagnosis,
    Pause,
    PlaybookStats,
    StepResult,
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
    Paused,
    Planned,
    Rejected,
    RestoreFailed,
    Resumed,
    RolledBack,
    SnapshotTaken,
    StepFinished,
    Verified,
)
from tests.bot.samples import HOSTILE, NOW, PLAN, SNAPSHOT


@pytest.mark.parametrize("value", ["", "null", "{}", '{"incident": "x", "plan": 1}', "[1]"])
def test_foreign_button_values_are_refused(value):
    with pytest.raises(ValueError, match="not a GRACE button value"):
        CardButton.decode(value)


EVENTS = [
    Planned(diagnosis=Diagnosis(pattern_id="x", problem="y", explanation=HOSTILE), plan=PLAN),
    NeedsHuman(reason=HOSTILE),
    NeedsHuman(reason=HOSTILE, held=HOSTILE),
    Cleared(),
    Held(pause=Pause(by="U0LEAD", reason=HOSTILE, at=NOW)),
    Approved(user="U0ONCALL"),
    Approved(user="grace", automatic=True),
    Approved(user="U0ONCALL", waits=True),
    Paused(pause=Pause(by="U0LEAD", reason=HOSTILE, at=NOW)),
    Resumed(user="U0LEAD", waiting=2),
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
    assert "*GRACE is paused* by <@U0LEAD>: &lt;!channel&gt;" in told["Paused"]
    assert "approvals are still taken and count then" in told["Paused"]
    assert "*GRACE is resumed* by <@U0LEAD>. 2 approved plan(s)" in told["Resumed"]
    waits = story_text(Approved(user="U0ONCALL", waits=True))
    assert waits == ":+1: Approved by <@U0ONCALL>. It runs once GRACE is resumed."


def test_a_held_target_and_a_paused_approval_are_told_how_to_go_on():
    held = story_text(NeedsHuman(reason="`db1` is in safe hold", held="db1"))
    assert held.endswith("An admin clears it with `/grace clear db1`.")
    told = approval_waits_text(Pause(by="U0LEAD", reason="freeze", at=NOW))
    assert "Your approval is recorded and counts" in told and "paused by <@U0LEAD>: freeze" in told
    assert "checked again" in told


def test_an_interrupted_run_that_touched_nothing_says_so():
    text = story_text(Interrupted(was="approved", target="/srv/a.db", snapshots=(), touched=False))
    assert "Nothing was changed" in text and "safe hold" not in text
