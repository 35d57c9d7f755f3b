"""The contract of `Store`'s incidents: intake once per delivery, compare-and-set
moves that one writer wins, approvals and reminders once, holds and the pause."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from datetime import timedelta

import pytest

from engine.models import (
    Alert,
    AlertStatus,
    Approval,
    Decision,
    Diagnosis,
    IncidentState,
    Pause,
    Plan,
    Target,
)
from engine.storage_ports import GraceStore
from tests.storage.conftest import T0
from tests.storage.contract.conftest import ContractClock, Database, open_incident

S = IncidentState


def test_a_store_has_every_port_method_as_the_port_names_it(store: GraceStore) -> None:
    """What mypy checks statically, at run time: names, parameters and defaults, so a
    caller's keyword arguments work on every store."""
    methods = {
        name
        for cls in GraceStore.__mro__
        for name, value in vars(cls).items()
        if inspect.iscoroutinefunction(value)
    }
    assert {"enqueue", "transition", "claim_report", "accept_delivery", "close"} <= methods
    for name in methods:
        port = inspect.signature(getattr(GraceStore, name)).parameters
        have = getattr(store, name)
        assert inspect.iscoroutinefunction(have), name
        own = inspect.signature(have).parameters
        assert [(p.name, p.kind, p.default) for p in own.values()] == [
            (p.name, p.kind, p.default) for p in list(port.values())[1:]
        ], name


async def test_a_delivery_key_is_taken_once_and_an_alert_stored_once(
    store: GraceStore, replica: GraceStore, make_alert: Callable[..., Alert]
) -> None:
    alert = make_alert()
    first, again = await asyncio.gather(
        store.ingest_alerts([alert], "delivery-1"), replica.ingest_alerts([alert], "delivery-1")
    )
    assert sorted([len(first), len(again)]) == [0, 1], "one replica stored it"
    [intake] = first or again
    assert intake.opened and intake.incident is not None
    # The same alert in another delivery is not stored again.
    [repeat] = await store.ingest_alerts([alert], "delivery-2")
    assert repeat.incident is None and not repeat.opened
    assert await store.get_incident(intake.incident.id) == intake.incident


async def test_alerts_of_one_group_join_its_active_incident(
    store: GraceStore, make_alert: Callable[..., Alert]
) -> None:
    labels = {"instance": "db-7", "mountpoint": "/var/lib/app"}
    one = await open_incident(store, make_alert(labels=labels), "d-1")
    [joined] = await store.ingest_alerts([make_alert(labels=labels)], "d-2")
    assert not joined.opened and joined.incident is not None
    assert joined.incident.id == one.id and joined.incident.alert_count == 2
    resolved = make_alert(labels=labels, status=AlertStatus.RESOLVED)
    [cleared] = await store.ingest_alerts([resolved], "d-3")
    assert cleared.incident is not None and cleared.incident.id == one.id


async def test_a_move_is_a_compare_and_set_that_one_replica_wins(
    store: GraceStore, replica: GraceStore, make_alert: Callable[..., Alert]
) -> None:
    for n in range(5):
        incident = await open_incident(store, make_alert(), f"d-{n}")
        results = await asyncio.gather(
            store.transition(incident.id, S.OPEN, S.DIAGNOSED, actor="replica-1"),
            replica.transition(incident.id, S.OPEN, S.NEEDS_HUMAN, actor="replica-2"),
        )
        [winner] = [r for r in results if r is not None]
        assert (await replica.get_incident(incident.id)) == winner
        entries = await store.audit_entries(incident.id)
        assert [e.action for e in entries] == ["alerts.received", f"incident.{winner.state.value}"]


async def test_a_stale_move_writes_nothing_and_an_illegal_one_is_refused(
    store: GraceStore, make_alert: Callable[..., Alert], clock: ContractClock
) -> None:
    incident = await open_incident(store, make_alert(), "d-1")
    assert await store.transition(incident.id, S.OPEN, S.NEEDS_HUMAN, actor="grace")
    before = await store.audit_entries()
    assert await store.transition(incident.id, S.OPEN, S.DIAGNOSED, actor="grace") is None
    assert await store.transition(10_000, S.OPEN, S.DIAGNOSED, actor="grace") is None
    with pytest.raises(ValueError, match="open -> executing"):
        await store.transition(incident.id, S.OPEN, S.EXECUTING, actor="grace")
    with pytest.raises(ValueError):
        await store.transition(incident.id, S.RESOLVED, S.OPEN, actor="grace")
    assert await store.audit_entries() == before
    current = await store.get_incident(incident.id)
    assert current is not None and current.state is S.NEEDS_HUMAN


async def test_a_move_keeps_what_it_carries(
    store: GraceStore,
    make_alert: Callable[..., Alert],
    clock: ContractClock,
    diagnosis: Diagnosis,
    plan: Plan,
) -> None:
    incident = await open_incident(store, make_alert(), "d-1")
    clock.advance(5)
    diagnosed = await store.transition(
        incident.id, S.OPEN, S.DIAGNOSED, actor="grace", diagnosis=diagnosis
    )
    assert diagnosed is not None and diagnosed.state is S.DIAGNOSED
    assert (diagnosed.diagnosis, diagnosed.plan) == (diagnosis, None)
    assert diagnosed.updated_at == clock.now() != incident.created_at
    deadline, remind = clock.now() + timedelta(hours=1), clock.now() + timedelta(minutes=30)
    waiting = await store.transition(
        incident.id,
        S.DIAGNOSED,
        S.AWAITING_APPROVAL,
        actor="grace",
        plan=plan,
        deadline=deadline,
        remind_at=remind,
    )
    assert waiting is not None
    assert (waiting.diagnosis, waiting.plan) == (diagnosis, plan), "fields not given are kept"
    assert waiting.plan is not None and waiting.plan.hash == plan.hash
    assert waiting.alert == incident.alert
    assert (waiting.deadline, waiting.remind_at, waiting.reminded) == (deadline, remind, False)
    assert waiting.updated_at == clock.now()
    assert await store.get_incident(incident.id) == waiting
    assert [i.id for i in await store.incidents_in([S.AWAITING_APPROVAL])] == [incident.id]
    assert await store.due_for_reminder(remind - timedelta(seconds=1)) == []
    assert [i.id for i in await store.due_for_reminder(remind)] == [incident.id]
    assert [i.id for i in await store.due_to_expire(deadline)] == [incident.id]


async def test_a_reminder_is_claimed_once(
    store: GraceStore,
    replica: GraceStore,
    make_alert: Callable[..., Alert],
    clock: ContractClock,
    plan: Plan,
) -> None:
    incident = await open_incident(store, make_alert(), "d-1")
    await store.transition(incident.id, S.OPEN, S.DIAGNOSED, actor="grace", plan=plan)
    remind = clock.now() + timedelta(minutes=30)
    await store.transition(
        incident.id, S.DIAGNOSED, S.AWAITING_APPROVAL, actor="grace", remind_at=remind
    )
    claims = await asyncio.gather(
        store.mark_reminded(incident.id), replica.mark_reminded(incident.id)
    )
    assert sorted(claims) == [False, True]
    assert await store.due_for_reminder(remind) == []


async def test_a_person_decides_once_and_decisions_keep_their_order(
    store: GraceStore, replica: GraceStore, make_alert: Callable[..., Alert], plan: Plan
) -> None:
    incident = await open_incident(store, make_alert(), "d-1")
    first = Approval(
        incident_id=incident.id, user="U1", plan_hash=plan.hash, decision=Decision.APPROVE, at=T0
    )
    changed_mind = first.model_copy(update={"decision": Decision.REJECT, "reason": "no"})
    results = await asyncio.gather(store.add_approval(first), replica.add_approval(changed_mind))
    assert sorted(results) == [False, True]
    [kept] = await store.approvals(incident.id)
    second = first.model_copy(update={"user": "U2", "reason": "looks right"})
    assert await store.add_approval(second)
    assert await replica.approvals(incident.id) == [kept, second]


async def test_a_failed_rollback_holds_its_target_until_cleared(
    store: GraceStore, make_alert: Callable[..., Alert], plan: Plan
) -> None:
    incident = await open_incident(store, make_alert(), "d-1")
    path = [(S.OPEN, S.DIAGNOSED), (S.DIAGNOSED, S.APPROVED), (S.APPROVED, S.EXECUTING)]
    for expected, new in path:
        carried = plan if new is S.DIAGNOSED else None
        assert await store.transition(incident.id, expected, new, actor="grace", plan=carried)
    held = await store.transition(
        incident.id, S.EXECUTING, S.SAFE_HOLD, actor="grace", reason="rollback failed"
    )
    assert held is not None
    hold = await store.target_hold(plan.target)
    assert hold is not None and (hold.target, hold.incident_id) == (plan.target, incident.id)
    assert await store.holds() == [hold]
    assert await store.target_hold(Target(executor="files", name="/elsewhere")) is None
    assert await store.clear_holds(plan.target.name, actor="U0LEAD") == [hold]
    assert await store.holds() == []
    assert await store.clear_holds(plan.target.name, actor="U0LEAD") == []


async def test_the_pause_is_stored_and_seen_by_every_replica(
    store: GraceStore, replica: GraceStore, clock: ContractClock, database: Database
) -> None:
    assert await store.paused() is None
    pause = Pause(by="U0LEAD", reason="maintenance", at=clock.now())
    await store.set_pause(pause, actor="U0LEAD")
    assert await replica.paused() == pause
    await store.close()
    database.opened.remove(store)
    again = await database.open()
    assert await again.paused() == pause
    await replica.set_pause(None, actor="U0LEAD")
    assert await again.paused() is None
    actions = [e.action for e in await again.audit_entries()]
    assert actions == ["grace.paused", "grace.resumed"]
