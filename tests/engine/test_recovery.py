"""Start-up: every incident goes on from the state GRACE was stopped in."""

from __future__ import annotations

import contextlib
from datetime import timedelta

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


# -- several replicas on one store ----------------------------------------------------

TTL_S = 30.0


async def run_by(w, runner: str, state: S = S.EXECUTING, thing: str = "db1"):
    """A tier-2 incident approved and moved on to `state` by the replica `runner`."""
    incident = await stored(w, w.alert(thing=thing))
    proposal = await w.healer.planner.propose(incident.alert)
    mine, w.store.replica = w.store.replica, runner
    try:
        path = [(S.OPEN, S.DIAGNOSED), (S.DIAGNOSED, S.APPROVED), (S.APPROVED, S.EXECUTING)]
        for expected, new in path[: [S.DIAGNOSED, S.APPROVED, S.EXECUTING].index(state) + 1]:
            await w.store.transition(
                incident.id,
                expected,
                new,
                actor="grace",
                diagnosis=proposal.diagnosis,
                plan=proposal.plan,
            )
    finally:
        w.store.replica = mine
    return w.store.incidents[incident.id]


async def test_a_live_replicas_run_is_left_alone_and_taken_over_once_it_stops_beating(world):
    w = world()
    w.store.heartbeat("grace-2")
    incident = await run_by(w, "grace-2")
    assert incident.state is S.EXECUTING

    # This replica starts, and ticks, while grace-2 is alive: its heal goes on.
    assert await w.healer.recover() == []
    w.clock.current += timedelta(seconds=TTL_S - 1)
    await w.healer.tick()
    assert w.store.incidents[incident.id].state is S.EXECUTING
    assert "Interrupted" not in w.notifier.kinds(incident.id) and w.store.held == []

    # grace-2 was killed: no beat for longer than the TTL. The next tick takes it over.
    w.clock.current += timedelta(seconds=2)
    await w.healer.tick()
    ended = w.store.incidents[incident.id]
    assert ended.state is S.INTERRUPTED
    [event] = [e for e in w.notifier.thread[incident.id] if isinstance(e, Interrupted)]
    assert event.touched and event.target == "db1"
    [hold] = w.store.held
    assert (hold.target, hold.incident_id) == (incident.plan.target, incident.id)
    assert w.notifier.cards[incident.id][-1].state is S.INTERRUPTED

    # Told once, never run again, whatever ticks or starts follow.
    await w.healer.tick()
    assert await w.healer.recover() == []
    assert w.notifier.kinds(incident.id).count("Interrupted") == 1
    assert w.executor.runs == 0


async def test_a_dead_replicas_run_is_ended_at_a_start_and_a_live_ones_is_not(world):
    w = world()
    w.store.heartbeat("grace-2")
    w.clock.current += timedelta(seconds=TTL_S + 1)
    w.store.heartbeat("grace-3")
    dead = await run_by(w, "grace-2", thing="db1")
    live = await run_by(w, "grace-3", S.APPROVED, thing="db9")

    [stopped] = await w.healer.recover()

    assert stopped.id == dead.id and stopped.state is S.INTERRUPTED
    assert w.store.incidents[live.id].state is S.APPROVED
    assert w.notifier.kinds(dead.id).count("Interrupted") == 1
    assert "Interrupted" not in w.notifier.kinds(live.id)


async def test_a_replicas_own_runs_end_at_its_start_and_are_left_alone_at_its_ticks(world):
    """Its own name at a start: the process that ran them died. At a tick: they are
    running here now, whatever its heartbeat says."""
    w = world()
    ours = await run_by(w, "local")  # the healer's own name; it never beat
    w.clock.current += timedelta(seconds=TTL_S * 10)

    await w.healer.tick()
    assert w.store.incidents[ours.id].state is S.EXECUTING

    [stopped] = await w.healer.recover()
    assert stopped.id == ours.id and stopped.state is S.INTERRUPTED


async def test_a_run_recorded_before_replicas_is_ended_at_a_start(world):
    w = world()
    w.store.heartbeat("grace-2")
    old = await run_by(w, "grace-2")
    del w.store.run_by[old.id]  # a row from before migration 019: no runner

    [stopped] = await w.healer.recover()
    assert stopped.id == old.id and stopped.state is S.INTERRUPTED


async def test_a_dead_replica_that_died_before_queueing_its_card_gets_one_first(world):
    w = world()
    incident = await run_by(w, "grace-2", S.APPROVED)  # never beat: dead
    assert incident.id not in w.notifier.cards

    await w.healer.tick()

    assert w.notifier.cards[incident.id][0].state is S.APPROVED
    assert w.notifier.kinds(incident.id) == ["Planned", "Interrupted"]
    assert w.store.incidents[incident.id].state is S.INTERRUPTED
    assert w.store.held == [], "nothing ran: the target was not touched"


async def test_an_incident_a_dead_replica_left_open_is_taken_on_after_the_ttl(world):
    """Another replica stored it and died before diagnosing it: not at once (it may
    be opening it now), but once it has stood unmoved for the liveness TTL."""
    w = world()
    incident = await stored(w, w.alert())

    w.clock.current += timedelta(seconds=TTL_S - 1)
    await w.healer.tick()
    assert w.store.incidents[incident.id].state is S.OPEN and incident.id not in w.notifier.cards

    w.clock.current += timedelta(seconds=2)
    await w.healer.tick()
    taken = w.store.incidents[incident.id]
    assert taken.state is S.AWAITING_APPROVAL
    assert w.notifier.kinds(incident.id) == ["Planned"]

    await w.healer.tick()  # moved on: nothing more to take
    assert w.notifier.kinds(incident.id) == ["Planned"]
