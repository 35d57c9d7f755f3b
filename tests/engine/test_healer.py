from __future__ import annotations

import asyncio

from engine.models import AlertStatus, Availability, Decision, IncidentState, Pause
from engine.story import Approved, Learned, NeedsHuman, Paused, RestoreFailed, Resumed, RolledBack

S = IncidentState
HEAL_STORY = ["Planned", "Approved", "SnapshotTaken", "StepFinished", "Verified", "Learned"]


async def click_approve(w, incident, user="U0ONCALL", plan_hash=None):
    return await w.healer.decide(
        incident_id=incident.id,
        plan_hash=plan_hash or incident.plan.hash,
        user=user,
        decision=Decision.APPROVE,
        channel="C0ALERTS",
    )


async def approve(w, incident, user="U0ONCALL", plan_hash=None):
    """Approve and wait for whatever it set off to finish."""
    await click_approve(w, incident, user, plan_hash)
    await w.healer.drain()
    return w.store.incidents[incident.id]


async def test_tier2_waits_for_approval_then_heals_verifies_and_learns(world):
    w = world(tier=2)
    incident = await w.open(w.alert())
    assert incident.state is S.AWAITING_APPROVAL
    assert list(w.notifier.cards) == [incident.id]
    assert w.executor.runs == 0
    assert w.notifier.kinds(incident.id) == ["Planned"]

    final = await approve(w, incident)

    assert final.state is S.RESOLVED
    assert w.executor.state == {"value": "fixed"}
    assert w.notifier.kinds(incident.id) == HEAL_STORY
    learned = w.notifier.thread[incident.id][-1]
    assert isinstance(learned, Learned) and learned.stats.summary().startswith("1/1 succeeded")
    assert w.notifier.cards[incident.id][-1].state is S.RESOLVED
    assert [o.success for o in w.store.outcomes] == [True]


async def test_tier1_heals_at_once_without_anyone(world):
    w = world(tier=1)
    incident = await w.open(w.alert())
    await w.healer.drain()
    assert w.store.incidents[incident.id].state is S.RESOLVED
    assert w.notifier.kinds(incident.id) == HEAL_STORY
    assert w.notifier.thread[incident.id][1].automatic is True


async def test_repeated_delivery_and_repeated_alert_are_no_ops(world):
    w = world()
    alert = w.alert()
    assert len(await w.healer.receive([alert], "ev1")) == 1
    assert await w.healer.receive([alert], "ev1") == []
    [again] = await w.healer.receive([alert], "ev-other-key-same-message")
    assert again.incident is None
    await w.healer.drain()
    assert len(w.store.incidents) == 1
    assert len(w.notifier.cards) == 1


async def test_the_same_alert_again_joins_its_incident_and_updates_the_card(world):
    w = world()
    first = await w.open(w.alert())
    for _ in range(4):
        assert (await w.open(w.alert())).id == first.id
    incident = w.store.incidents[first.id]
    assert incident.alert_count == 5 and incident.state is S.AWAITING_APPROVAL
    assert len(w.notifier.cards) == 1, "one card, updated in place"
    assert [c.alert_count for c in w.notifier.cards[first.id][1:]] == [2, 3, 4, 5]
    assert w.notifier.kinds(first.id) == ["Planned"]


async def test_a_batch_updates_each_card_once(world):
    w = world()
    alerts = [w.alert() for _ in range(10)] + [w.alert(thing="db2") for _ in range(3)]
    intakes = await w.healer.receive(alerts, "batch")
    await w.healer.drain()
    assert [i.opened for i in intakes].count(True) == 2
    first, second = sorted(w.notifier.cards)
    assert len(w.notifier.cards[first]) == 2 and w.notifier.cards[first][-1].alert_count == 10
    assert w.notifier.cards[second][-1].state is S.NEEDS_HUMAN


async def test_a_resolved_alert_ends_an_incident_nobody_acted_on(world):
    w = world()
    incident = await w.open(w.alert())
    await w.open(w.alert(status=AlertStatus.RESOLVED))
    final = w.store.incidents[incident.id]
    assert final.state is S.AUTO_RESOLVED
    assert w.notifier.kinds(incident.id) == ["Planned", "Cleared"]
    assert w.notifier.cards[incident.id][-1].state is S.AUTO_RESOLVED
    await approve(w, incident)
    assert w.executor.runs == 0
    assert "already auto resolved" in w.notifier.private[-1][2]


async def test_a_resolved_alert_never_heals_and_opens_nothing(world):
    w = world(tier=1)
    assert await w.open(w.alert(status=AlertStatus.RESOLVED)) is None
    await w.healer.drain()
    assert w.store.incidents == {} and w.executor.runs == 0


async def test_a_heal_under_way_is_not_cut_short_by_the_all_clear(world):
    w = world()
    w.executor.step_gate = asyncio.Event()
    incident = await w.open(w.alert())
    await click_approve(w, incident)
    async with asyncio.timeout(2):  # the step has started: the target is being changed
        await w.executor.step_started.wait()
    await w.healer.receive([w.alert(status=AlertStatus.RESOLVED)], "resolved")
    w.executor.step_gate.set()
    await w.healer.drain()
    assert w.store.incidents[incident.id].state is S.RESOLVED
    assert "Cleared" not in w.notifier.kinds(incident.id)


async def test_unlisted_approver_is_refused_privately_and_audited(world):
    w = world()
    incident = await w.open(w.alert())
    final = await approve(w, incident, user="U0INTRUDER")
    assert final.state is S.AWAITING_APPROVAL
    assert w.executor.runs == 0
    channel, user, text = w.notifier.private[-1]
    assert (channel, user) == ("C0ALERTS", "U0INTRUDER")
    assert "not on the tier 2 approver list" in text
    assert ("U0INTRUDER", "approval.refused") in [(a, b) for a, b, _, _ in w.store.audit_rows]


async def test_two_approvers_clicking_at_once_run_the_plan_once(world):
    w = world()
    w.executor.step_gate = asyncio.Event()
    incident = await w.open(w.alert())
    decide = [
        w.healer.decide(
            incident_id=incident.id,
            plan_hash=incident.plan.hash,
            user=u,
            decision=Decision.APPROVE,
            channel="C0ALERTS",
        )
        for u in ("U0ONCALL", "U0SRE")
    ]
    await asyncio.gather(*decide)
    w.executor.step_gate.set()
    await w.healer.drain()
    assert w.executor.runs == 1
    assert w.store.incidents[incident.id].state is S.RESOLVED
    [(loser, text)] = [(user, text) for _, user, text in w.notifier.private]
    assert loser == "U0SRE"
    assert "already approved" in text or "first" in text


async def test_same_user_clicking_twice_runs_once(world):
    w = world()
    incident = await w.open(w.alert())
    await approve(w, incident)
    await approve(w, incident)
    assert w.executor.runs == 1
    assert "already resolved" in w.notifier.private[-1][2]


async def test_stale_plan_hash_is_refused(world):
    w = world()
    incident = await w.open(w.alert())
    final = await approve(w, incident, plan_hash="0" * 16)
    assert final.state is S.AWAITING_APPROVAL
    assert "plan changed" in w.notifier.private[-1][2]


async def test_failed_verification_restores_the_snapshot_and_rolls_back(world):
    w = world()
    w.executor.check_ok = False
    incident = await w.open(w.alert())
    final = await approve(w, incident)
    assert final.state is S.ROLLED_BACK
    assert "verification failed" in final.reason
    assert w.executor.restores == 1
    assert w.executor.state == {"value": "broken"}
    assert isinstance(w.notifier.thread[incident.id][-2], RolledBack)
    assert [o.success for o in w.store.outcomes] == [False]


async def test_failed_step_rolls_back_without_verifying(world):
    w = world()
    w.executor.step_ok = False
    incident = await w.open(w.alert())
    final = await approve(w, incident)
    assert final.state is S.ROLLED_BACK
    assert "step `fix` failed" in final.reason
    assert "Verified" not in w.notifier.kinds(incident.id)


async def test_failed_restore_ends_in_safe_hold(world):
    w = world()
    w.executor.check_ok = False
    w.executor.restore_fails = True
    incident = await w.open(w.alert())
    final = await approve(w, incident)
    assert final.state is S.SAFE_HOLD
    assert "disk gone" in final.reason
    assert any(isinstance(e, RestoreFailed) for e in w.notifier.thread[incident.id])


async def test_step_past_its_deadline_is_cut_and_rolled_back(world):
    w = world(timeout=0.05)
    w.executor.step_gate = asyncio.Event()  # never set: the step hangs
    incident = await w.open(w.alert())
    final = await approve(w, incident)
    assert final.state is S.ROLLED_BACK
    assert "gave no answer within 0.05 s" in final.reason


async def test_target_outside_allowlist_is_refused_and_nothing_runs(world):
    w = world(tier=1)
    incident = await w.open(w.alert(thing="../../etc/passwd"))
    await w.healer.drain()
    assert incident.state is S.NEEDS_HUMAN
    assert w.executor.runs == 0
    event = w.notifier.thread[incident.id][0]
    assert isinstance(event, NeedsHuman) and "not in the fake allowlist" in event.reason


async def test_an_executor_whose_check_fails_gets_its_incident_to_a_human(world):
    w = world(tier=1)

    async def broken() -> Availability:
        raise ConnectionError("socket gone")

    w.executor.available = broken
    incident = await w.open(w.alert())

    assert incident.state is S.NEEDS_HUMAN
    assert w.executor.runs == 0
    event = w.notifier.thread[incident.id][0]
    assert isinstance(event, NeedsHuman)
    assert event.reason == (
        "The `fake` executor cannot act here: its check failed: ConnectionError: socket gone"
    )


async def test_a_storm_of_new_incidents_asks_the_executor_once(world):
    w = world()
    checks = 0

    async def counted() -> Availability:
        nonlocal checks
        checks += 1
        return Availability(ok=True)

    w.executor.available = counted
    # Seven groups, so seven incidents to plan; things outside the allowlist are
    # refused after the executor was asked, so they ask too.
    alerts = [w.alert(thing=f"db{n}") for n in range(1, 8)]
    intakes = await w.healer.receive(alerts, "storm")
    await w.healer.drain()

    assert sum(i.opened for i in intakes) == 7
    assert checks == 1


async def test_unrecognised_alert_needs_a_human(world):
    w = world()
    incident = await w.open(w.alert(name="SomethingElse"))
    assert incident.state is S.NEEDS_HUMAN
    assert "No pattern recognises `SomethingElse`" in incident.reason


async def test_reject_ends_the_incident_without_running(world):
    w = world()
    incident = await w.open(w.alert())
    await w.healer.decide(
        incident_id=incident.id,
        plan_hash=incident.plan.hash,
        user="U0ONCALL",
        decision=Decision.REJECT,
        channel="C0ALERTS",
        reason="not now",
    )
    final = w.store.incidents[incident.id]
    assert final.state is S.REJECTED and final.reason == "not now"
    assert w.executor.runs == 0


async def test_tier3_needs_two_distinct_approvers_other_than_the_requester(world):
    w = world(tier=3)
    incident = await w.open(w.alert(reporter="U0A"))
    assert (await approve(w, incident, user="U0A")).state is S.AWAITING_APPROVAL
    assert "raised this incident" in w.notifier.private[-1][2]
    assert (await approve(w, incident, user="U0B")).state is S.AWAITING_APPROVAL
    assert (await approve(w, incident, user="U0C")).state is S.RESOLVED
    assert w.executor.runs == 1


async def test_a_member_of_an_approver_group_may_approve(world):
    w = world()
    incident = await w.open(w.alert())
    final = await approve(w, incident, user="U0GROUPIE")
    assert final.state is S.RESOLVED
    assert w.directory.lookups == 1


async def test_a_user_in_no_listed_group_is_refused(world):
    w = world()
    incident = await w.open(w.alert())
    final = await approve(w, incident, user="U0NOBODY")
    assert final.state is S.AWAITING_APPROVAL
    assert "not on the tier 2 approver list" in w.notifier.private[-1][2]


async def test_a_playbook_can_ask_for_more_approvals_from_fewer_people(world):
    w = world(approval="    approval: {approvers: [U0ONCALL, U0SRE], required: 2}\n")
    incident = await w.open(w.alert())
    assert incident.plan.required_approvals == 2
    assert (await approve(w, incident, user="U0GROUPIE")).state is S.AWAITING_APPROVAL
    assert "not on the tier 2 approver list" in w.notifier.private[-1][2]
    assert (await approve(w, incident, user="U0ONCALL")).state is S.AWAITING_APPROVAL
    assert (await approve(w, incident, user="U0SRE")).state is S.RESOLVED


async def test_a_person_can_ask_for_a_playbook_by_name(world):
    w = world()
    incident = await w.healer.request_heal("fix-thing", "db1", user="U0ASKER", channel="C0OPS")
    assert incident.alert.source == "manual" and incident.alert.reporter == "U0ASKER"
    current = w.store.incidents[incident.id]
    assert current.state is S.AWAITING_APPROVAL and current.channel == "C0OPS"
    assert current.diagnosis.explanation == "Asked for “Fix the thing” by name."
    assert (await approve(w, current)).state is S.RESOLVED


async def test_a_tier3_requester_cannot_approve_their_own_request(world):
    w = world(tier=3)
    incident = await w.healer.request_heal("fix-thing", "db1", user="U0A", channel="C0OPS")
    assert (await approve(w, incident, user="U0A")).state is S.AWAITING_APPROVAL
    assert "raised this incident" in w.notifier.private[-1][2]


async def test_a_bad_request_is_refused_and_stores_nothing(world):
    w = world()
    unknown = await w.healer.request_heal("rm-rf", "db1", user="U0ASKER", channel="C0OPS")
    assert "no playbook `rm-rf`" in unknown and "fix-thing" in unknown
    outside = await w.healer.request_heal("fix-thing", "/etc", user="U0ASKER", channel="C0OPS")
    assert "not in the fake allowlist" in outside
    assert w.store.incidents == {} and w.executor.runs == 0


async def test_dry_runs_show_the_plan_and_touch_nothing(world):
    w = world()
    dry = await w.healer.dry_run_request("fix-thing", "db1", user="U0ASKER")
    assert [s.action for s in dry.plan.steps] == ["fix"] and dry.plan.target.name == "db1"
    assert dry.snapshot == "a copy of db1 in memory"
    assert w.store.incidents == {} and w.executor.runs == 0
    incident = await w.open(w.alert())
    assert (await w.healer.dry_run(incident.id)).plan == incident.plan
    assert w.executor.runs == 0 and w.executor.state == {"value": "broken"}
    assert "no plan" in await w.healer.dry_run(999)


async def test_only_admins_pull_the_kill_switch_and_it_is_audited(world):
    w = world()
    assert "Only GRACE's admins" in await w.healer.pause("U0ONCALL", "nope")
    assert w.store.pause is None and w.notifier.notices == []
    assert "GRACE is paused" in await w.healer.pause("U0LEAD", "db migration")
    assert w.store.pause.by == "U0LEAD" and w.store.pause.reason == "db migration"
    actions = [a for _, a, _, _ in w.store.audit_rows]
    assert "pause.refused" in actions and "grace.paused" in actions
    assert "Only GRACE's admins" in await w.healer.resume("U0ONCALL")
    assert "resumed" in await w.healer.resume("U0LEAD") and w.store.pause is None
    assert w.notifier.notices == [
        Paused(pause=w.notifier.notices[0].pause),
        Resumed(user="U0LEAD", waiting=0),
    ]
    assert w.notifier.notices[0].pause.by == "U0LEAD"


async def test_pausing_and_resuming_redraw_every_card_a_person_may_be_looking_at(world):
    w = world()
    waiting = await w.open(w.alert())
    shown = len(w.notifier.cards[waiting.id])
    await w.healer.pause("U0LEAD", "freeze")
    assert len(w.notifier.cards[waiting.id]) == shown + 1, "the card gains the banner"
    await w.healer.resume("U0LEAD")
    assert len(w.notifier.cards[waiting.id]) == shown + 2, "and loses it"


async def test_while_paused_an_approval_is_recorded_and_runs_once_resumed(world):
    w = world(tier=2)
    await w.healer.pause("U0LEAD", "freeze")
    incident = await w.open(w.alert())
    waits = await click_approve(w, incident)
    await w.healer.drain()
    final = w.store.incidents[incident.id]
    assert final.state is S.APPROVED and w.executor.runs == 0
    # The pause it waits behind, which the bot tells the person (tests/bot/test_blocks.py).
    assert (waits.by, waits.reason) == ("U0LEAD", "freeze") and w.notifier.private == []
    assert w.notifier.thread[incident.id][-1] == Approved(user="U0ONCALL", waits=True)
    assert "Held" not in w.notifier.kinds(incident.id), "said once, by the approval"
    assert "1 approved plan(s)" in await w.healer.resume("U0LEAD")
    await w.healer.drain()
    assert w.store.incidents[incident.id].state is S.RESOLVED and w.executor.runs == 1
    assert w.notifier.notices[-1] == Resumed(user="U0LEAD", waiting=1)


async def test_while_paused_tier1_waits_and_runs_by_itself_once_resumed(world):
    w = world(tier=1)
    await w.healer.pause("U0LEAD", "freeze")
    incident = await w.open(w.alert())
    assert incident.state is S.AWAITING_APPROVAL, "tier 1 waits while paused"
    assert w.executor.runs == 0
    assert "1 approved plan(s)" in await w.healer.resume("U0LEAD")
    await w.healer.drain()
    assert w.store.incidents[incident.id].state is S.RESOLVED and w.executor.runs == 1
    assert Approved(user="grace", automatic=True) in w.notifier.thread[incident.id]


async def test_an_approval_given_while_paused_is_checked_again_when_resumed(world):
    w = world()
    await w.healer.pause("U0LEAD", "freeze")
    incident = await w.open(w.alert())
    await approve(w, incident)
    w.store.incidents[incident.id] = w.store.incidents[incident.id].model_copy(
        update={"firing_count": 0}
    )  # the alert resolved while GRACE waited
    await w.healer.resume("U0LEAD")
    await w.healer.drain()
    assert w.store.incidents[incident.id].state is S.AUTO_RESOLVED and w.executor.runs == 0


async def test_a_plan_approved_before_the_pause_waits_and_runs_on_resume(world):
    w = world()
    incident = await w.open(w.alert())
    w.store.pause = Pause(by="U0LEAD", at=w.clock.now())  # pulled between approval and start
    w.store.incidents[incident.id] = w.store.incidents[incident.id].model_copy(
        update={"state": S.APPROVED}
    )
    assert await w.healer.execution.run(incident.id) is None
    assert w.executor.runs == 0 and "Held" in w.notifier.kinds(incident.id)
    assert "1 approved plan(s)" in await w.healer.resume("U0LEAD")
    await w.healer.drain()
    assert w.store.incidents[incident.id].state is S.RESOLVED


async def test_a_pause_mid_plan_lets_the_running_step_finish_then_rolls_back(world):
    w = world(steps=2)
    w.executor.step_gate = asyncio.Event()
    incident = await w.open(w.alert())
    await click_approve(w, incident)
    async with asyncio.timeout(2):
        await w.executor.step_started.wait()
    await w.healer.pause("U0LEAD", "stop everything")
    w.executor.step_gate.set()  # the running step finishes its call
    await w.healer.drain()
    final = w.store.incidents[incident.id]
    assert w.executor.runs == 1, "the second step never started"
    assert final.state is S.ROLLED_BACK and "paused by U0LEAD before `fix`" in final.reason
    assert w.executor.restores == 1 and w.executor.state == {"value": "broken"}


async def test_an_alert_that_cleared_after_approval_does_not_run(world):
    w = world()
    incident = await w.open(w.alert())
    w.store.incidents[incident.id] = w.store.incidents[incident.id].model_copy(
        update={"state": S.APPROVED, "firing_count": 0}
    )
    await w.healer.execution.run(incident.id)
    assert w.store.incidents[incident.id].state is S.AUTO_RESOLVED
    assert w.executor.runs == 0


async def test_approvers_are_reminded_once_then_the_plan_expires(world):
    w = world()
    incident = await w.open(w.alert())
    assert incident.deadline is not None and incident.remind_at < incident.deadline
    await w.healer.tick()
    assert w.notifier.kinds(incident.id) == ["Planned"], "nothing is due yet"
    w.clock.current = incident.remind_at
    await w.healer.tick()
    await w.healer.tick()
    assert w.notifier.kinds(incident.id).count("Reminder") == 1
    reminder = w.notifier.thread[incident.id][-1]
    assert set(reminder.approvers) == {"U0ONCALL", "U0SRE", "S0ONCALL"}
    w.clock.current = incident.deadline
    await w.healer.tick()
    final = w.store.incidents[incident.id]
    assert final.state is S.EXPIRED and "No decision within 30 min" in final.reason
    assert w.notifier.kinds(incident.id)[-1] == "Expired"
    assert w.notifier.cards[incident.id][-1].state is S.EXPIRED
    assert (await approve(w, incident)).state is S.EXPIRED
    assert "already expired" in w.notifier.private[-1][2]
    assert w.executor.runs == 0
