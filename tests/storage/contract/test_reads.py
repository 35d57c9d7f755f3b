"""The contract of what people read: `/grace status`, `incidents`, an incident's
story, `stats`, and App Home's viewers, answers and rows."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from engine.models import (
    Alert,
    Approval,
    Decision,
    IncidentState,
    Pause,
    Plan,
    Snapshot,
    StepResult,
)
from engine.records import Backlog, Page
from engine.storage_ports import GraceStore
from tests.storage.contract.conftest import ContractClock, incidents, open_incident

S = IncidentState


async def waiting_for_approval(
    store: GraceStore, alert: Alert, key: str, plan: Plan, clock: ContractClock, hours: int
) -> int:
    incident = await open_incident(store, alert, key)
    await store.transition(incident.id, S.OPEN, S.DIAGNOSED, actor="grace", plan=plan)
    deadline = clock.now() + timedelta(hours=hours)
    await store.transition(
        incident.id, S.DIAGNOSED, S.AWAITING_APPROVAL, actor="grace", deadline=deadline
    )
    return incident.id


async def test_status_counts_open_incidents_lists_approvals_and_the_backlog(
    store: GraceStore, clock: ContractClock, make_alert: Callable[..., Alert], plan: Plan
) -> None:
    later = await waiting_for_approval(store, make_alert(), "d-1", plan, clock, hours=2)
    sooner = await waiting_for_approval(store, make_alert(), "d-2", plan, clock, hours=1)
    [ended, _open] = await incidents(store, make_alert, 2)
    await store.transition(ended.id, S.OPEN, S.AUTO_RESOLVED, actor="grace")
    await store.add_approval(
        Approval(
            incident_id=later,
            user="U1",
            plan_hash=plan.hash,
            decision=Decision.APPROVE,
            at=clock.now(),
        )
    )
    await store.enqueue("C1", "thread", {"text": "one"})
    await store.enqueue("C1", "thread", {"text": "two"})
    rows = await store.status_rows(1)
    assert rows.open_counts == {S.AWAITING_APPROVAL: 2, S.OPEN: 1}
    assert rows.pending.total == 2
    [first] = rows.pending.items
    assert (first.incident.id, first.approved_by) == (sooner, ())
    assert (await store.status_rows()).pending.items[1].approved_by == ("U1",)
    assert rows.backlog == (Backlog("C1", "C1", 2, clock.now()),)


async def test_incident_pages_are_newest_first_with_their_total(
    store: GraceStore, make_alert: Callable[..., Alert]
) -> None:
    a, b, c = await incidents(store, make_alert, 3)
    await store.transition(b.id, S.OPEN, S.AUTO_RESOLVED, actor="grace")
    page = await store.incident_page(open_only=False, limit=2)
    assert ([i.id for i in page.items], page.total) == ([c.id, b.id], 3)
    page = await store.incident_page(open_only=True)
    assert ([i.id for i in page.items], page.total) == ([c.id, a.id], 2)


async def test_an_incidents_story_is_everything_in_the_order_it_happened(
    store: GraceStore, clock: ContractClock, make_alert: Callable[..., Alert], plan: Plan
) -> None:
    assert await store.incident_story(10_000) is None
    incident = await open_incident(store, make_alert(), "d-1")
    for expected, new in [(S.OPEN, S.DIAGNOSED), (S.DIAGNOSED, S.APPROVED)]:
        carried = plan if new is S.DIAGNOSED else None
        await store.transition(incident.id, expected, new, actor="grace", plan=carried)
        clock.advance(1)
    await store.transition(incident.id, S.APPROVED, S.EXECUTING, actor="grace")
    snapshot = Snapshot(
        incident_id=incident.id,
        target=plan.target,
        location="/snapshots/1",
        size_bytes=10,
        taken_at=clock.now(),
    )
    await store.add_snapshot(snapshot)
    step = StepResult(action="rotate", ok=True, detail="rotated 3", seconds=0.5)
    await store.add_action(incident.id, step)
    story = await store.incident_story(incident.id)
    assert story is not None and story.incident == await store.get_incident(incident.id)
    assert story.members == 1
    assert [c.state for c in story.states] == [S.DIAGNOSED, S.APPROVED, S.EXECUTING]
    assert story.snapshots == (snapshot,)
    assert [s.result for s in story.steps] == [step]
    assert story.verifications == () and story.outcome is None and story.approvals == ()


async def test_stats_count_the_days_asked(
    store: GraceStore, clock: ContractClock, make_alert: Callable[..., Alert]
) -> None:
    [a, _] = await incidents(store, make_alert, 2)
    await store.transition(a.id, S.OPEN, S.NEEDS_HUMAN, actor="grace")
    report = await store.stats(until=clock.now() + timedelta(seconds=1), days=7)
    assert report.current.incidents == 2 and report.current.needed_human == 1
    assert report.previous.incidents == 0


async def test_a_homes_viewers_and_answers_are_kept(store: GraceStore, replica: GraceStore) -> None:
    assert not await store.home_notice("U1", "never opened")
    await store.home_opened("U1", "D1")
    await replica.home_opened("U1", "D2")
    assert await store.home_notice("U1", "Approved.")
    [viewer] = await replica.home_viewers()
    assert (viewer.user, viewer.channel, viewer.notice) == ("U1", "D2", "Approved.")


async def test_home_rows_agree_with_each_other(
    store: GraceStore, clock: ContractClock, make_alert: Callable[..., Alert], plan: Plan
) -> None:
    waiting = await waiting_for_approval(store, make_alert(), "d-1", plan, clock, hours=1)
    [other] = await incidents(store, make_alert, 1)
    pause = Pause(by="U0LEAD", at=clock.now())
    await store.set_pause(pause, actor="U0LEAD")
    week = (clock.now() - timedelta(days=1), clock.now() + timedelta(days=1))
    rows = await store.home_rows(week, pending_limit=10, open_limit=1)
    assert rows.pause == pause
    assert [p.incident.id for p in rows.pending.items] == [waiting] and rows.pending.total == 1
    assert [i.id for i in rows.open.items] == [other.id] and rows.open.total == 2
    assert rows.week.opened == 2 and rows.week.start == week[0]
    assert isinstance(rows.open, Page)
