"""The answers to `/grace status` and `/grace incidents`: what they say, escaped, linked and
within Slack's limits, built from stored records without Slack or a database."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from bot.blocks import TEXT_LIMIT
from bot.reports import LIST_LIMIT, Status, card_url, fit, incidents_text, status_text, story_answer
from engine.availability import Readiness
from engine.models import (
    Alert,
    Approval,
    Availability,
    BenchmarkResult,
    CheckResult,
    Decision,
    Incident,
    IncidentState,
    Outcome,
    Pause,
    Plan,
    PlannedCheck,
    PlannedStep,
    StepResult,
    Target,
    TargetHold,
    Verification,
)
from engine.records import (
    Backlog,
    IncidentStory,
    Page,
    Pending,
    StateChange,
    StatusRows,
    StepRun,
    VerificationRun,
)
from storage.store import SqliteStore

S = IncidentState
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
HOSTILE = "<!channel> <@U0BOSS> <https://evil.example|click me> & more"
DOMAIN = "acme"
PLAN = Plan(
    playbook_id="sqlite-wal-checkpoint",
    title="Checkpoint <the> WAL",
    tier=3,
    target=Target(executor="sqlite", name="/db/a.db"),
    steps=(PlannedStep(action="wal_checkpoint", timeout_s=60),),
    checks=(PlannedCheck(check="integrity_ok"),),
)


def incident(n: int = 7, state: S = S.AWAITING_APPROVAL, **changes: object) -> Incident:
    fields: dict[str, object] = {
        "id": n,
        "state": state,
        "fingerprint": f"g{n}",
        "alert": Alert(
            source="alertmanager", source_key="k", name="SQLiteWALTooLarge", received_at=NOW
        ),
        "plan": PLAN,
        "channel": "C0ALERTS",
        "card_ts": "1764000000.000100",
        "created_at": NOW - timedelta(minutes=5),
        "updated_at": NOW,
        "deadline": NOW + timedelta(minutes=25),
        **changes,
    }
    return Incident(**fields)


def status(**changes: object) -> Status:
    fields: dict[str, object] = {
        "pause": None,
        "rows": StatusRows({}, Page((), 0), ()),
        "readiness": Readiness({"sqlite": Availability(ok=True)}, {}, ()),
        "now": NOW,
        **changes,
    }
    return Status(**fields)


def slack_date(at: datetime) -> str:
    return f"<!date^{int(at.timestamp())}^"


def unsafe(text: str) -> bool:
    """Whether alert or people's words could mention, link or format in Slack."""
    return "<!channel>" in text or "<@U0BOSS>" in text or "<https://evil" in text


# ---------------------------------------------------------------- /grace status


def test_a_quiet_grace_says_so_section_by_section():
    text = status_text(status(), DOMAIN)
    assert text.splitlines() == [
        "*GRACE status*",
        ":arrow_forward: *Running*: not paused.",
        "*Open incidents:* none",
        "*Waiting for approval:* none",
        "*Executors that cannot act:* none",
        "*Open breakers:* none",
        "*Held targets:* none",
        "*Slack outbox:* empty, everything is delivered",
    ]


def test_status_tells_each_part_with_words_from_outside_escaped():
    pending = [
        Pending(incident(7), approved_by=("U0ALICE",)),
        Pending(incident(8, card_ts=None, deadline=NOW - timedelta(seconds=3)), approved_by=()),
    ]
    rows = StatusRows(
        open_counts={S.SAFE_HOLD: 1, S.AWAITING_APPROVAL: 4},
        pending=Page(tuple(pending), total=4),
        backlog=(
            Backlog("C0ALERTS", "C0ALERTS", 12, NOW - timedelta(minutes=3)),
            Backlog("@U0ALICE", "C0ALERTS", 1, NOW - timedelta(seconds=2)),
        ),
    )
    readiness = Readiness(
        executors={"sqlite": Availability(ok=True), "aws": Availability(ok=False, reason=HOSTILE)},
        open_breakers={HOSTILE: NOW + timedelta(minutes=1)},
        holds=(
            TargetHold(
                target=Target(executor="files", name=HOSTILE),
                incident_id=3,
                reason=HOSTILE,
                held_at=NOW - timedelta(hours=1),
            ),
        ),
    )
    pause = Pause(by="U0LEAD", reason=HOSTILE, at=NOW - timedelta(minutes=10))
    text = status_text(status(pause=pause, rows=rows, readiness=readiness), DOMAIN)
    lines = text.splitlines()

    assert not unsafe(text)
    assert lines[1].startswith(
        f":double_vertical_bar: *Paused* by <@U0LEAD> since {slack_date(pause.at)}"
    )
    assert ": &lt;!channel&gt; &lt;@U0BOSS&gt;" in lines[1]
    # States in the order an incident goes through them.
    assert lines[2] == (
        "*Open incidents:* 5 (:hourglass_flowing_sand: Awaiting approval 4 · "
        ":octagonal_sign: Safe hold 1)"
    )
    assert lines[3] == "*Waiting for approval:* 4"
    assert lines[4] == (
        "• <https://acme.slack.com/archives/C0ALERTS/p1764000000000100|#7> · "
        "`sqlite-wal-checkpoint` on sqlite `/db/a.db` · needs two approvers, approved so far by "
        f"<@U0ALICE> · expires {slack_date(NOW + timedelta(minutes=25))}"
        "{date_short_pretty} at {time}|2026-11-24 12:25 UTC> (in 25 min)"
    )
    assert lines[5].startswith("• #8 (no card yet) · ") and lines[5].endswith("(now)")
    assert lines[6] == "• … and 2 more approval(s)"
    assert lines[7] == "*Executors that cannot act:* 1"
    assert lines[8].startswith("• `aws`: &lt;!channel&gt;")
    assert lines[9] == "*Open breakers:* 1"
    assert (
        "calls fail fast; GRACE tries it again " + slack_date(NOW + timedelta(minutes=1))
        in lines[10]
    )
    assert lines[11] == "*Held targets:* 1"
    assert "(files) since " + slack_date(NOW - timedelta(hours=1)) in lines[12]
    assert (
        ", incident #3: &lt;!channel&gt;" in lines[12]
        and "`/grace clear &lt;!channel&gt;" in lines[12]
    )
    assert lines[13:] == [
        "*Slack outbox:* 13 write(s) waiting",
        "• <#C0ALERTS>: 12 waiting, the oldest for 3 min",
        "• private answers to <@U0ALICE>: 1 waiting, the oldest for 2 s",
    ]


def test_a_pause_by_something_not_a_user_is_shown_not_mentioned():
    pause = Pause(by="<!here>", reason=None, at=NOW)
    line = status_text(status(pause=pause), DOMAIN).splitlines()[1]
    assert "by `&lt;!here&gt;`" in line and "(no reason given)" in line


def test_many_outbox_lanes_are_counted_past_the_list():
    lanes = tuple(Backlog(f"@U0P{n:03d}", "C0ALERTS", 1, NOW) for n in range(LIST_LIMIT + 5))
    rows = StatusRows({}, Page((), 0), lanes)
    text = status_text(status(rows=rows), DOMAIN)
    assert text.count("private answers to") == LIST_LIMIT
    assert text.endswith("• … and 5 more lane(s)")


# ---------------------------------------------------------------- /grace incidents


def test_no_incidents_is_said_for_open_and_for_all():
    assert incidents_text(Page((), 0), True, NOW, DOMAIN).startswith("No open incidents.")
    assert incidents_text(Page((), 0), False, NOW, DOMAIN) == "GRACE has had no incidents yet."


def test_the_list_links_each_card_and_counts_what_it_leaves_out():
    hostile = incident(
        9,
        S.NEEDS_HUMAN,
        plan=None,
        alert=Alert(
            source="slack",
            source_key="k",
            name=HOSTILE,
            received_at=NOW,
            thread_ts="1764000000.000001",
        ),
    )
    page = Page((hostile, incident(8, S.EXECUTING, card_ts=None)), total=57)
    text = incidents_text(page, False, NOW, DOMAIN)
    lines = text.splitlines()
    assert not unsafe(text)
    assert lines[0] == "*Incidents*: the 2 newest of 57"
    # A card that answers a person's message is a reply in its thread.
    assert lines[1].startswith(
        "• <https://acme.slack.com/archives/C0ALERTS/p1764000000000100"
        "?thread_ts=1764000000.000001&cid=C0ALERTS|#9> · :raising_hand: Needs a human · "
        "opened 5 min ago · `&lt;!channel&gt;"
    )
    assert lines[1].endswith(" · no plan")
    assert lines[2] == (
        "• #8 (no card yet) · :gear: Executing · opened 5 min ago · `SQLiteWALTooLarge` · "
        "`sqlite-wal-checkpoint` on sqlite `/db/a.db`"
    )
    assert lines[3] == "One incident's whole story: `/grace incidents N`."


@pytest.mark.parametrize(
    ("domain", "changes"),
    [
        ("", {}),
        ("evil.example/x?", {}),
        ("Acme", {}),
        (DOMAIN, {"channel": "#general"}),
        (DOMAIN, {"card_ts": "1.2>"}),
    ],
)
def test_no_link_but_to_a_card_whose_address_has_slacks_shape(domain, changes):
    shown = incident(**changes)
    assert card_url(shown, domain) is None
    assert "#7 (no card yet)" in incidents_text(Page((shown,), 1), True, NOW, domain)


# ---------------------------------------------------------------- /grace incidents N


def approve(user: str, at: datetime, **more: object) -> Approval:
    return Approval(
        incident_id=7, user=user, plan_hash=PLAN.hash, decision="approve", at=at, **more
    )


def finished_story() -> IncidentStory:
    at = [NOW - timedelta(minutes=5) + timedelta(seconds=s) for s in range(10)]
    states = [
        StateChange(S.DIAGNOSED, at[1], "grace"),
        StateChange(S.AWAITING_APPROVAL, at[1], "grace", deadline=at[1] + timedelta(hours=1)),
        StateChange(S.APPROVED, at[4], "U0BOB"),
        StateChange(S.EXECUTING, at[5], "grace"),
        StateChange(S.VERIFYING, at[6], "grace"),
        StateChange(S.ROLLED_BACK, at[8], "grace", reason=f"verification failed: {HOSTILE}"),
    ]
    approvals = [approve("U0ALICE", at[3]), approve("U0BOB", at[4], reason=HOSTILE)]
    verification = Verification(
        checks=(CheckResult(check="integrity_ok", ok=False, detail=HOSTILE),),
        benchmarks=(
            BenchmarkResult(benchmark="read_latency", before_s=0.001, after_s=0.01, tolerance=0.5),
        ),
    )
    ended = incident(
        7,
        S.ROLLED_BACK,
        reason=f"verification failed: {HOSTILE}",
        alert_count=5,
        firing_count=0,
        first_seen=at[0],
        last_seen=at[7],
    )
    return IncidentStory(
        incident=ended,
        members=2,
        states=tuple(states),
        approvals=tuple(approvals),
        snapshots=(),
        steps=(
            StepRun(
                StepResult(action="wal_checkpoint", ok=True, detail=HOSTILE, seconds=0.25), at[5]
            ),
        ),
        verifications=(VerificationRun(verification, at[7]),),
        outcome=Outcome(
            incident_id=7,
            playbook_id="p",
            success=False,
            seconds=3.0,
            final_state=S.ROLLED_BACK,
            at=at[8],
        ),
    )


def test_a_story_tells_states_decisions_steps_verification_and_outcome_in_order():
    story = finished_story()
    text = story_answer(story, DOMAIN)
    lines = text.splitlines()
    assert not unsafe(text)
    assert lines[0] == (
        "*Incident #7: SQLiteWALTooLarge* · :leftwards_arrow_with_hook: Rolled back · "
        "<https://acme.slack.com/archives/C0ALERTS/p1764000000000100|its card>"
    )
    assert lines[1].startswith(
        "*Alert:* `SQLiteWALTooLarge` from `alertmanager` · received 5 time(s) from 2 alert(s), "
        "all resolved · first seen "
    )
    assert lines[2] == (
        "*Plan:* Checkpoint &lt;the&gt; WAL (`sqlite-wal-checkpoint`, tier 3: two approvers) on "
        f"sqlite `/db/a.db` · plan `{PLAN.hash}`"
    )
    assert lines[3] == "*States:*"
    told = [
        re.sub(r"^• <!date\^\d+\^\{date_short_pretty\} \{time_secs\}\|[^>]*> ", "", x)
        for x in lines[4:11]
    ]
    assert told == [
        "open",
        "diagnosed",
        f"awaiting approval, expires {slack_date(datetime(2026, 11, 24, 12, 55, 1, tzinfo=UTC))}"
        "{date_short_pretty} at {time}|2026-11-24 12:55 UTC>",
        "approved by <@U0BOB>",
        "executing",
        "verifying",
        "rolled back: verification failed: &lt;!channel&gt; &lt;@U0BOSS&gt; "
        "&lt;https://evil.example|click me&gt; &amp; more",
    ]
    assert lines[11] == "*Decisions:* 2"
    assert lines[12].endswith(" <@U0ALICE> approved")
    assert lines[13].endswith(
        " <@U0BOB> approved: &lt;!channel&gt; &lt;@U0BOSS&gt; "
        "&lt;https://evil.example|click me&gt; &amp; more"
    )
    assert lines[14] == "*What was done:*"
    assert "Step `wal_checkpoint` succeeded in 0.25 s" in lines[15]
    assert "*Verification FAILED:*" in lines[16]
    # The reason was told with its state: not again under the outcome.
    assert lines[-1] == (
        "*Outcome:* :x: failure: ended rolled back after 3.0 s of healing, "
        f"{slack_date(NOW - timedelta(minutes=5) + timedelta(seconds=8))}"
        "{date_short_pretty} {time_secs}|2026-11-24 11:55:08 UTC>."
    )


def test_a_story_of_an_incident_still_waiting_on_people_says_not_yet_and_why():
    waiting = incident(4, S.NEEDS_HUMAN, plan=None, reason=HOSTILE, firing_count=1)
    story = IncidentStory(waiting, 1, (), (), (), (), (), None)
    text = story_answer(story, "")
    assert "*Plan:*" not in text and "What was done" not in text and "its card" not in text
    assert "1 of 1 still firing" in text
    assert "*Decisions:* none" in text
    assert text.endswith(
        "*Outcome:* not yet: :raising_hand: Needs a human. &lt;!channel&gt; "
        "&lt;@U0BOSS&gt; &lt;https://evil.example|click me&gt; &amp; more"
    )


def test_a_story_never_outgrows_slacks_text_limit():
    huge = "<&>" * 50_000
    story = finished_story()
    many = tuple(
        StepRun(StepResult(action="wal_checkpoint", ok=True, detail=huge, seconds=1), NOW)
        for _ in range(100)
    )
    alert = Alert(source=huge, source_key="k", name=huge, severity=huge, received_at=NOW)
    giant = IncidentStory(
        incident=incident(alert=alert, reason=huge),
        members=1,
        states=story.states,
        approvals=story.approvals,
        snapshots=(),
        steps=many,
        verifications=(),
        outcome=None,
    )
    text = story_answer(giant, DOMAIN)
    assert len(text) <= TEXT_LIMIT
    assert text.endswith("over Slack's message limit.")
    assert "<&>" not in text
    assert text.count("<") == text.count(">")  # no mention, link or date cut in half


# ---------------------------------------------------------------- fitting Slack's limit


def test_fit_keeps_whole_lines_and_counts_the_rest():
    lines = [f"<!date^{n}^{{time}}|{n}> line {n}" for n in range(100)]
    text = fit(lines, limit=300)
    assert len(text) <= 300
    kept = text.splitlines()
    assert kept[:-1] == lines[: len(kept) - 1]
    assert kept[-1] == f"… and {100 - len(kept) + 1} more line(s), over Slack's message limit."


def test_fit_leaves_a_text_within_the_limit_as_it_is():
    assert fit(["a", "b"], limit=3) == "a\nb"


# ---------------------------------------------------------------- the reads, on a real database


class Clock:
    def __init__(self) -> None:
        self.at = NOW

    def now(self) -> datetime:
        return self.at


async def test_the_reads_count_open_incidents_current_approvals_and_undelivered_writes(tmp_path):
    clock = Clock()
    store = await SqliteStore.open(tmp_path / "grace.db", clock)
    try:
        alerts = [
            Alert(source="t", source_key=f"k{n}", name=f"A{n}", received_at=NOW) for n in range(3)
        ]
        first, second, third = [i.incident for i in await store.ingest_alerts(alerts, "d1")]
        old = PLAN.model_copy(update={"title": "the plan before"})
        for incident, plan in [(first, PLAN), (second, PLAN)]:
            await store.transition(incident.id, S.OPEN, S.DIAGNOSED, actor="grace", plan=plan)
            deadline = NOW + timedelta(minutes=30 - incident.id)
            await store.transition(
                incident.id, S.DIAGNOSED, S.AWAITING_APPROVAL, actor="grace", deadline=deadline
            )
        await store.transition(third.id, S.OPEN, S.NEEDS_HUMAN, actor="grace", reason="no plan")
        decisions = [
            ("U0ALICE", PLAN.hash, Decision.APPROVE),
            ("U0BOB", old.hash, Decision.APPROVE),  # an earlier plan: it no longer counts
            ("U0CAROL", PLAN.hash, Decision.REJECT),
        ]
        for user, plan_hash, decision in decisions:
            approval = Approval(
                incident_id=first.id, user=user, plan_hash=plan_hash, decision=decision, at=NOW
            )
            await store.add_approval(approval)
        clock.at = NOW + timedelta(seconds=5)
        sent = await store.enqueue("C0ALERTS", "post", {"text": "a"})
        await store.enqueue("C0ALERTS", "post", {"text": "b"})
        await store.enqueue("C0ALERTS", "post", {"text": "c"})
        await store.enqueue("C0OPS", "ephemeral", {"text": "c"}, user_id="U0ALICE")
        await store.mark_sent(sent, "1.2")

        rows = await store.status_rows(limit=1)
        assert rows.open_counts == {S.AWAITING_APPROVAL: 2, S.NEEDS_HUMAN: 1}
        # The soonest deadline first; only approvals of the plan on the card count.
        assert rows.pending.total == 2
        assert [(p.incident.id, p.approved_by) for p in rows.pending.items] == [(second.id, ())]
        everyone = await store.status_rows(limit=5)
        assert [p.approved_by for p in everyone.pending.items] == [(), ("U0ALICE",)]
        # The longest queue first; a delivered write is not counted.
        assert rows.backlog == (
            Backlog("C0ALERTS", "C0ALERTS", 2, NOW + timedelta(seconds=5)),
            Backlog("@U0ALICE", "C0OPS", 1, NOW + timedelta(seconds=5)),
        )

        await store.transition(second.id, S.AWAITING_APPROVAL, S.EXPIRED, actor="grace")
        page = await store.incident_page(open_only=True, limit=1)
        assert ([i.id for i in page.items], page.total) == ([third.id], 2)
        page = await store.incident_page(open_only=False)
        assert ([i.id for i in page.items], page.total) == ([third.id, second.id, first.id], 3)

        story = await store.incident_story(first.id)
        assert story is not None and story.members == 1 and story.outcome is None
        assert [c.state for c in story.states] == [S.DIAGNOSED, S.AWAITING_APPROVAL]
        assert story.states[1].deadline == NOW + timedelta(minutes=30 - first.id)
        assert [(a.user, a.decision) for a in story.approvals] == [
            (user, decision) for user, _, decision in decisions
        ]
        assert await store.incident_story(999) is None
    finally:
        await store.close()
