"""Start-up: every incident goes on from the state GRACE was stopped in."""

from __future__ import annotations

import contextlib

from engine.models import Decision, IncidentState
from engine.story import Interrupted, NeedsHuman, Planned

S = IncidentState


async def stored(w, alert):
    """An alert stored as intake stores it, with GRACE stopped before its follow-up."""
    [intake] = await w.store.ingest_alerts([alert], delivery_key=alert.source_key)
    assert intake.opened
    return intake.incident


async def test_an_incident_left_open_is_diagnosed_and_carded(world):
    w = world()
    incident = await stored(w, w.alert())
    assert incident.state is S.OPEN and incident.id not in w.notifier.cards

    assert await w.healer.recover() == []

    resumed = w.store.incidents[incident.id]
    assert resumed.state is S.AWAITING_APPROVAL and resumed.plan is not None
    assert w.notifier.cards[incident.id][0].state is S.AWAITING_APPROVAL
    assert w.notifier.kinds(incident.id) == ["Planned"]


async def test_a_tier1_incident_left_diagnosed_runs_as_it_would_have(world):
    w = world(tier=1)
    incident = await stored(w, w.alert())
    proposal = await w.healer.planner.propose(incident.alert)
    await w.store.transition(
        incident.id,
        S.OPEN,
        S.DIAGNOSED,
        actor="grace",
        diagnosis=proposal.diagnosis,
        plan=proposal.plan,
    )

    await w.healer.recover()
    await w.healer.drain()

    assert w.store.incidents[incident.id].state is S.RESOLVED
    assert w.executor.runs == 1
    assert w.notifier.kinds(incident.id)[:2] == ["Planned", "Approved"]


async def test_a_card_never_queued_is_posted_with_its_story(world):
    w = world()
    waiting = await stored(w, w.alert())
    proposal = await w.healer.planner.propose(waiting.alert)
    await w.store.transition(
        waiting.id,
        S.OPEN,
        S.DIAGNOSED,
        actor="grace",
        diagnosis=proposal.diagnosis,
        plan=proposal.plan,
    )
    await w.store.transition(waiting.id, S.DIAGNOSED, S.AWAITING_APPROVAL, actor="grace")
    stuck = await stored(w, w.alert(thing="db7", name="NoSuchThing"))
    await w.store.transition(stuck.id, S.OPEN, S.NEEDS_HUMAN, actor="grace", reason="no pattern")

    await w.healer.recover()
    await w.healer.recover()  # a second start posts nothing again

    assert [c.state for c in w.notifier.cards[waiting.id]] == [S.AWAITING_APPROVAL]
    assert isinstance(w.notifier.thread[waiting.id][0], Planned)
    assert [c.state for c in w.notifier.cards[stuck.id]] == [S.NEEDS_HUMAN]
    told = w.notifier.thread[stuck.id]
    assert len(told) == 1 and isinstance(told[0], NeedsHuman) and told[0].reason == "no pattern"


async def test_a_run_approved_before_its_card_was_queued_is_carded_then_interrupted(world):
    w = world(tier=1)
    incident = await stored(w, w.alert())
    proposal = await w.healer.planner.propose(incident.alert)
    await w.store.transition(
        incident.id,
        S.OPEN,
        S.DIAGNOSED,
        actor="grace",
        diagnosis=proposal.diagnosis,
        plan=proposal.plan,
    )
    await w.store.transition(incident.id, S.DIAGNOSED, S.APPROVED, actor="grace")

    [stopped] = await w.healer.recover()

    assert stopped.id == incident.id and stopped.state is S.INTERRUPTED
    # The card came first, so the interruption is told under it.
    assert w.notifier.cards[incident.id][0].state is S.APPROVED
    assert w.notifier.cards[incident.id][-1].state is S.INTERRUPTED
    kinds = w.notifier.kinds(incident.id)
    assert kinds == ["Planned", "Interrupted"]
    assert isinstance(w.notifier.thread[incident.id][-1], Interrupted)
    assert w.executor.runs == 0


async def test_an_interruption_is_told_even_when_a_stop_follows_its_move(world):
    w = world(tier=1)
    incident = await stored(w, w.alert())
    proposal = await w.healer.planner.propose(incident.alert)
    await w.store.transition(
        incident.id,
        S.OPEN,
        S.DIAGNOSED,
        actor="grace",
        diagnosis=proposal.diagnosis,
        plan=proposal.plan,
    )
    await w.store.transition(incident.id, S.DIAGNOSED, S.APPROVED, actor="grace")
    await w.store.transition(incident.id, S.APPROVED, S.EXECUTING, actor="grace")
    transition = w.store.transition
    stops = iter([True])

    async def dies_right_after_the_move(*args, **kwargs):
        moved = await transition(*args, **kwargs)
        if next(stops, False):
            raise SystemExit("killed right after the move was committed")
        return moved

    w.store.transition = dies_right_after_the_move
    with contextlib.suppress(SystemExit):
        await w.healer.recover()
    assert w.store.incidents[incident.id].state is S.INTERRUPTED

    assert await w.healer.recover() == []  # the next start: nothing runs any more
    assert w.notifier.kinds(incident.id).count("Interrupted") == 1


async def test_a_plan_approved_while_paused_still_waits_for_the_resume_after_a_restart(world):
    w = world()
    await w.healer.pause("U0LEAD", "freeze")
    incident = await w.open(w.alert())
    await w.healer.decide(
        incident_id=incident.id,
        plan_hash=incident.plan.hash,
        user="U0ONCALL",
        decision=Decision.APPROVE,
        channel="C0ALERTS",
    )
    assert w.store.incidents[incident.id].state is S.APPROVED

    assert await w.healer.recover() == [], "waiting behind the switch is not an interruption"

    assert w.store.incidents[incident.id].state is S.APPROVED and w.executor.runs == 0
    await w.healer.resume("U0LEAD")
    await w.healer.drain()
    assert w.store.incidents[incident.id].state is S.RESOLVED and w.executor.runs == 1
