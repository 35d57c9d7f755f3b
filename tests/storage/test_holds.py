"""Targets in safe hold and what snapshots remember, on a real SQLite file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from engine.models import Alert, Incident, IncidentState, Plan, Snapshot, Target
from storage.store import SqliteStore
from tests.storage.conftest import T0, FakeClock, open_incident

S = IncidentState


async def run_to(
    store: SqliteStore, alert: Alert, plan: Plan, key: str, *states: IncidentState
) -> Incident:
    """Open an incident with `plan` and walk it through `states`."""
    incident = await open_incident(store, alert, key)
    current = S.OPEN
    path = [S.DIAGNOSED, S.APPROVED, *states]
    for state in path:
        moved = await store.transition(
            incident.id,
            current,
            state,
            actor="grace",
            plan=plan if state is S.DIAGNOSED else None,
            reason=f"now {state.value}",
        )
        assert moved is not None
        incident, current = moved, state
    return incident


async def test_snapshots_keep_what_a_file_cannot_hold(
    store: SqliteStore, make_alert: Callable[..., Alert]
) -> None:
    incident = await open_incident(store, make_alert(), "d-1")
    snap = Snapshot(
        incident_id=incident.id,
        target=Target(executor="service", name="api"),
        location="/var/lib/grace/snapshots/api-config.yml",
        size_bytes=812,
        taken_at=T0,
        state={"admin_level": "debug", "nested": {"min": 1, "max": 4}},
    )
    await store.add_snapshot(snap)

    assert await store.snapshots(incident.id) == [snap]


async def test_safe_hold_holds_the_target_in_the_same_write(
    store: SqliteStore, make_alert: Callable[..., Alert], plan: Plan, db_path: Path
) -> None:
    held = await run_to(store, make_alert(), plan, "d-1", S.EXECUTING, S.SAFE_HOLD)

    hold = await store.target_hold(plan.target)
    assert hold is not None
    assert (hold.target, hold.incident_id, hold.reason) == (plan.target, held.id, "now safe_hold")
    assert await store.holds() == [hold]
    assert await store.target_hold(Target(executor="files", name="/var/log/other")) is None
    actions = [e.action for e in await store.audit_entries(held.id)]
    assert actions[-2:] == ["incident.safe_hold", "target.held"]

    await store.close()
    reopened = await SqliteStore.open(db_path, FakeClock())
    try:
        assert await reopened.holds() == [hold]
    finally:
        await reopened.close()


async def test_only_a_run_that_may_have_touched_the_target_holds_it_when_interrupted(
    store: SqliteStore, make_alert: Callable[..., Alert], plan: Plan
) -> None:
    await run_to(store, make_alert(), plan, "d-1", S.INTERRUPTED)
    assert await store.holds() == []

    touched = await run_to(store, make_alert(), plan, "d-2", S.EXECUTING, S.INTERRUPTED)
    assert [h.incident_id for h in await store.holds()] == [touched.id]


async def test_a_person_clears_a_hold_and_it_is_audited(
    store: SqliteStore, make_alert: Callable[..., Alert], plan: Plan, clock: FakeClock
) -> None:
    first = await run_to(store, make_alert(), plan, "d-1", S.EXECUTING, S.SAFE_HOLD)
    second = await run_to(store, make_alert(), plan, "d-2", S.EXECUTING, S.VERIFYING, S.SAFE_HOLD)
    clock.advance(60)

    lifted = await store.clear_holds(plan.target.name, actor="U0LEAD")

    assert [h.incident_id for h in lifted] == [first.id, second.id]
    assert await store.holds() == []
    assert await store.target_hold(plan.target) is None
    assert await store.clear_holds(plan.target.name, actor="U0LEAD") == []
    cleared = [e for e in await store.audit_entries() if e.action == "target.cleared"]
    assert [(e.actor, e.incident_id) for e in cleared] == [
        ("U0LEAD", first.id),
        ("U0LEAD", second.id),
    ]
    assert (await store.verify_audit()).ok


async def test_a_cleared_incident_releases_its_alert_group(
    store: SqliteStore, make_alert: Callable[..., Alert], plan: Plan
) -> None:
    group = {"labels": {"instance": "db-1", "mountpoint": "/var/lib/app"}}
    held = await run_to(store, make_alert(**group), plan, "d-1", S.EXECUTING, S.SAFE_HOLD)
    [joined] = await store.ingest_alerts([make_alert(**group)], "d-2")
    assert joined.incident is not None and joined.incident.id == held.id and not joined.opened

    cleared = await store.transition(held.id, S.SAFE_HOLD, S.CLEARED, actor="U0LEAD")

    assert cleared is not None and cleared.state is S.CLEARED
    [fresh] = await store.ingest_alerts([make_alert(**group)], "d-3")
    assert fresh.opened and fresh.incident is not None and fresh.incident.id != held.id
