"""What the engine does when the world fights back: transient failures,
persistent ones, failed restores and crashes mid-run."""

from __future__ import annotations

import pytest

from engine.models import IncidentState, PlannedCheck, Snapshot, TargetHold
from engine.ports import TransientError
from engine.story import (
    BreakerChanged,
    HoldCleared,
    Interrupted,
    NeedsHuman,
    RestoreFailed,
    RolledBack,
)
from tests.engine.conftest import FAST
from tests.engine.test_healer import approve

S = IncidentState


async def test_transient_step_errors_are_retried_and_the_heal_succeeds(world):
    w = world(tier=1)
    w.executor.step_errors = [TransientError("locked"), TransientError("locked")]

    incident = await w.open(w.alert())

    assert w.store.incidents[incident.id].state is S.RESOLVED
    assert w.executor.runs == 3


async def test_persistent_errors_open_the_breaker_and_later_incidents_fail_fast(world):
    w = world(tier=1)
    w.executor.down = "connection refused"

    # Three incidents whose first call fails every retry: the third opens the breaker.
    failed = [await w.open(w.alert()) for _ in range(3)]

    finals = [w.store.incidents[i.id] for i in failed]
    assert [f.state for f in finals] == [S.ROLLED_BACK] * 3
    assert all("connection refused" in f.reason for f in finals)
    assert w.executor.calls == 3 * FAST.attempts
    opened = [e for e in w.notifier.thread[failed[2].id] if isinstance(e, BreakerChanged)]
    assert len(opened) == 1 and opened[0].opened and opened[0].circuit == "fake:db1"
    assert "connection refused" in opened[0].cause and opened[0].retry_at is not None
    assert not any(isinstance(e, BreakerChanged) for e in w.notifier.thread[failed[1].id])
    assert any(r[1] == "breaker.opened" and r[2] == failed[2].id for r in w.store.audit_rows)

    later = await w.open(w.alert())

    final = w.store.incidents[later.id]
    assert final.state is S.ROLLED_BACK
    assert "circuit breaker for fake:db1 is open" in final.reason
    assert "will try it again after" in final.reason
    assert w.executor.calls == 3 * FAST.attempts  # nothing was called
    other = await w.open(w.alert(thing="db9"))  # the breaker is per target
    assert w.executor.calls > 3 * FAST.attempts and other.id != later.id


async def test_a_step_failing_every_retry_rolls_back_and_restores(world):
    w = world(tier=1)
    w.executor.step_errors = [TransientError("database is locked")] * FAST.attempts

    incident = await w.open(w.alert())

    final = w.store.incidents[incident.id]
    assert final.state is S.ROLLED_BACK
    assert "still failing after every retry: database is locked" in final.reason
    assert w.executor.runs == FAST.attempts
    assert w.executor.restores == 1


async def test_every_step_has_its_snapshot_and_rollback_restores_them_newest_first(world):
    w = world(steps=3)
    w.executor.check_ok = False

    incident = await w.open(w.alert())
    final = await approve(w, incident)

    assert final.state is S.ROLLED_BACK
    taken = [s.location for s in await w.store.snapshots(incident.id)]
    assert taken == ["memory-1", "memory-2", "memory-3"]
    assert w.executor.restored == ["memory-3", "memory-2", "memory-1"]
    rolled = next(e for e in w.notifier.thread[incident.id] if isinstance(e, RolledBack))
    assert [s.location for s in rolled.restored] == ["memory-3", "memory-2", "memory-1"]


async def test_a_restore_that_fails_part_way_says_what_was_and_was_not_restored(world):
    w = world(steps=3)
    w.executor.check_ok = False
    w.executor.unrestorable = {"memory-2"}

    incident = await w.open(w.alert())
    final = await approve(w, incident)

    assert final.state is S.SAFE_HOLD
    assert w.executor.restored == ["memory-3"]
    told = next(e for e in w.notifier.thread[incident.id] if isinstance(e, RestoreFailed))
    assert [s.location for s in told.restored] == ["memory-3"]
    assert [s.location for s in told.not_restored] == ["memory-2", "memory-1"]
    assert told.target == "db1"


async def safe_hold(w):
    w.executor.check_ok = False
    w.executor.restore_fails = True
    incident = await w.open(w.alert())
    final = await approve(w, incident)
    assert final.state is S.SAFE_HOLD
    w.executor.check_ok = True
    w.executor.restore_fails = False
    return final


async def test_a_failed_restore_holds_the_target_until_an_admin_clears_it(world):
    w = world()
    held = await safe_hold(w)
    assert any(isinstance(e, RestoreFailed) for e in w.notifier.thread[held.id])
    [hold] = await w.store.holds()
    assert hold.target.name == "db1" and hold.incident_id == held.id

    # A new incident on that target is refused before anything runs; others still heal.
    runs = w.executor.runs
    again = await w.open(w.alert(name="ThingBroken", thing="db1", reporter="U0OTHER"))
    assert again.id == held.id  # the same alert group stays with the held incident
    other = await w.open(w.alert(thing="db9"))
    assert other.state is S.AWAITING_APPROVAL

    refusal = await w.healer.request_heal("fix-thing", "db1", user="U0ONCALL", channel="C0")
    assert isinstance(refusal, str)
    assert "safe hold since incident #1" in refusal and "an admin clears it" in refusal
    assert w.executor.runs == runs

    assert "Only GRACE's admins" in await w.healer.clear_target("U0ONCALL", "db1")
    assert await w.store.holds() == [hold]
    assert "is not in safe hold" in await w.healer.clear_target("U0LEAD", "db7")

    answer = await w.healer.clear_target("U0LEAD", "db1")

    assert "cleared" in answer and "#1" in answer
    assert await w.store.holds() == []
    assert isinstance(w.notifier.thread[held.id][-1], HoldCleared)
    assert any(row[1] == "target.cleared" for row in w.store.audit_rows)
    # The held incident ended `cleared`, so its alert group opens a new incident again.
    assert w.store.incidents[held.id].state is S.CLEARED
    fresh = await w.open(w.alert(thing="db1"))
    assert fresh.id != held.id and fresh.state is S.AWAITING_APPROVAL
    healed = await w.healer.request_heal("fix-thing", "db1", user="U0ONCALL", channel="C0")
    assert not isinstance(healed, str)
    assert (await approve(w, healed)).state is S.RESOLVED


async def test_a_hold_set_after_approval_stops_the_run(world):
    w = world()
    held = await safe_hold(w)
    await w.healer.clear_target("U0LEAD", "db1")
    waiting = await w.healer.request_heal("fix-thing", "db1", user="U0REQ", channel="C0")
    assert not isinstance(waiting, str)
    # Another incident's failed rollback holds db1 while this one awaits approval.
    w.store.held.append(
        TargetHold(target=held.plan.target, incident_id=held.id, reason="t", held_at=w.clock.now())
    )
    runs = w.executor.runs

    final = await approve(w, waiting)

    assert final.state is S.NEEDS_HUMAN
    assert "safe hold since incident #1" in final.reason
    assert w.executor.runs == runs
    assert isinstance(w.notifier.thread[waiting.id][-1], NeedsHuman)


async def test_start_up_marks_cut_short_runs_interrupted_and_holds_their_targets(world):
    w = world()
    running = await w.open(w.alert())
    waiting = await w.open(w.alert(thing="db9"))
    for incident, states in ((running, [S.APPROVED, S.EXECUTING]), (waiting, [S.APPROVED])):
        current = S.AWAITING_APPROVAL
        for state in states:
            assert await w.store.transition(incident.id, current, state, actor="t")
            current = state
    snapshot = Snapshot(
        incident_id=running.id,
        target=running.plan.target,
        location="/var/lib/grace/snap-1.sqlite",
        size_bytes=4096,
        taken_at=w.clock.now(),
    )
    await w.store.add_snapshot(snapshot)

    stopped = await w.healer.recover()

    assert [i.id for i in stopped] == [running.id, waiting.id]
    assert all(i.state is S.INTERRUPTED for i in stopped)
    told = w.notifier.thread[running.id][-1]
    assert isinstance(told, Interrupted) and told.touched and told.snapshots == (snapshot,)
    assert told.was == "executing"
    quiet = w.notifier.thread[waiting.id][-1]
    assert isinstance(quiet, Interrupted) and not quiet.touched
    # Only the target that may have been touched is held; nothing is re-run.
    assert [h.target.name for h in await w.store.holds()] == ["db1"]
    assert w.executor.runs == 0

    # An admin's clear ends the untouched one too, though nothing held its target.
    answer = await w.healer.clear_target("U0LEAD", "db9")
    assert "is cleared" in answer and f"#{waiting.id}" in answer
    assert w.store.incidents[waiting.id].state is S.CLEARED


async def test_a_check_that_waits_to_settle_gets_that_long_beyond_the_call_deadline(world):
    w = world(policy=FAST.model_copy(update={"deadline_s": 0.05}))
    w.executor.check_takes_s = 0.2
    incident = await w.open(w.alert())
    plan = incident.plan.model_copy(
        update={"checks": (PlannedCheck(check="fixed", params={"within_s": 1}),)}
    )
    w.store.incidents[incident.id] = incident.model_copy(update={"plan": plan})

    final = await approve(w, w.store.incidents[incident.id])

    assert final.state is S.RESOLVED, final.reason
    # Without `within_s` the same check is cut at the call deadline.
    w.executor.state = {"value": "broken"}
    again = await w.open(w.alert(thing="db9"))
    cut = await approve(w, again)
    assert cut.state is S.ROLLED_BACK and "gave no answer within 0.05 s" in cut.reason


async def test_a_check_left_to_its_default_wait_gives_its_own_answer_not_a_deadline_cut(world):
    w = world(policy=FAST.model_copy(update={"deadline_s": 0.05}))
    w.executor.check_takes_s = 0.2
    incident = await w.open(w.alert())
    # `settles` waits 1 s by default: the playbook does not say so.
    plan = incident.plan.model_copy(update={"checks": (PlannedCheck(check="settles"),)})
    w.store.incidents[incident.id] = incident.model_copy(update={"plan": plan})

    final = await approve(w, w.store.incidents[incident.id])

    assert final.state is S.RESOLVED, final.reason


@pytest.mark.parametrize(
    "check",
    [
        PlannedCheck(check="settles", params={"within_s": "soon"}),
        PlannedCheck(check="not_in_the_spec"),
    ],
    ids=["params-the-model-refuses", "unknown-check"],
)
async def test_a_check_the_spec_cannot_read_still_runs_and_its_answer_decides(world, check):
    # A plan stored before an upgrade may carry either; the check's own call
    # is where its executor says what is wrong, not a crash before it.
    w = world()
    incident = await w.open(w.alert())
    plan = incident.plan.model_copy(update={"checks": (check,)})
    w.store.incidents[incident.id] = incident.model_copy(update={"plan": plan})
    w.executor.check_ok = False

    final = await approve(w, w.store.incidents[incident.id])

    assert final.state is S.ROLLED_BACK, final.reason
    [(incident_id, verification)] = w.store.verification_rows
    assert incident_id == incident.id
    assert [c.check for c in verification.checks] == [check.check]
