"""Period statistics from the incidents, approvals and heals stored: counted, timed, compared."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.models import Approval, Decision, Incident, Outcome
from engine.models import IncidentState as S
from engine.stats import percentile
from storage.store import SqliteStore
from tests.storage.conftest import FakeClock, open_incident

TIER1_HEAL = [S.DIAGNOSED, S.APPROVED, S.EXECUTING, S.VERIFYING, S.RESOLVED]


async def _walk(store: SqliteStore, clock: FakeClock, incident: Incident, states, seconds=10):
    stored = await store.get_incident(incident.id)
    assert stored is not None
    current = stored.state
    for state in states:
        clock.advance(seconds)
        moved = await store.transition(incident.id, current, state, actor="grace")
        assert moved is not None, (current, state)
        current = state


async def _outcome(store: SqliteStore, clock: FakeClock, incident: Incident, ok: bool, s: float):
    state = S.RESOLVED if ok else S.ROLLED_BACK
    await store.record_outcome(
        Outcome(
            incident_id=incident.id,
            playbook_id="wal-checkpoint",
            success=ok,
            seconds=s,
            final_state=state,
            at=clock.now(),
        )
    )


async def _decide(store: SqliteStore, clock: FakeClock, incident: Incident, decision: Decision):
    approval = Approval(
        incident_id=incident.id, user="U0ONCALL", plan_hash="p", decision=decision, at=clock.now()
    )
    assert await store.add_approval(approval)


async def test_a_period_counts_each_ending_times_the_heals_and_compares_with_the_one_before(
    store: SqliteStore, clock: FakeClock, make_alert
):
    # The week before: one incident healed alone.
    earlier = await open_incident(store, make_alert(name="SQLiteWALTooLarge"), "d0")
    await _walk(store, clock, earlier, TIER1_HEAL)
    await _outcome(store, clock, earlier, True, 40.0)
    clock.advance(8 * 86400)

    healed = await open_incident(store, make_alert(name="SQLiteWALTooLarge"), "d1")
    await _walk(store, clock, healed, TIER1_HEAL, seconds=6)  # resolved after 30 s
    await _outcome(store, clock, healed, True, 24.0)

    approved = await open_incident(store, make_alert(name="SQLiteWALTooLarge"), "d2")
    await _walk(store, clock, approved, [S.DIAGNOSED, S.AWAITING_APPROVAL], seconds=5)
    clock.advance(110)  # approved 120 s after it opened
    await _decide(store, clock, approved, Decision.APPROVE)
    await _walk(store, clock, approved, [S.APPROVED, S.EXECUTING, S.VERIFYING, S.ROLLED_BACK])
    await _outcome(store, clock, approved, False, 30.0)

    rejected = await open_incident(store, make_alert(name="DiskAlmostFull"), "d3")
    await _walk(store, clock, rejected, [S.DIAGNOSED, S.AWAITING_APPROVAL])
    await _decide(store, clock, rejected, Decision.REJECT)
    await _walk(store, clock, rejected, [S.REJECTED])
    expired = await open_incident(store, make_alert(name="DiskAlmostFull"), "d4")
    await _walk(store, clock, expired, [S.DIAGNOSED, S.AWAITING_APPROVAL, S.EXPIRED])
    unknown = await open_incident(store, make_alert(name="CPUThrottling"), "d5")
    await _walk(store, clock, unknown, [S.NEEDS_HUMAN])

    report = await store.stats(until=clock.now() + timedelta(seconds=1), days=7)
    now, before = report.current, report.previous
    assert (now.incidents, now.resolved, now.healed_alone, now.approved) == (5, 1, 1, 1)
    assert (now.rejected, now.expired, now.needed_human) == (1, 1, 1)
    assert (now.heals, now.heal_successes, now.success_rate) == (2, 1, 0.5)
    assert now.resolve_p50_s == pytest.approx(30.0) and now.approve_p50_s == pytest.approx(120.0)
    assert now.top_alerts == (("DiskAlmostFull", 2), ("SQLiteWALTooLarge", 2), ("CPUThrottling", 1))
    [wal] = now.playbooks
    assert (wal.playbook_id, wal.attempts, wal.successes, wal.median_seconds) == (
        "wal-checkpoint",
        2,
        1,
        27.0,
    )
    assert (before.incidents, before.healed_alone, before.heals, before.success_rate) == (
        1,
        1,
        1,
        1.0,
    )
    assert now.since == before.until and now.until - now.since == timedelta(days=7)


async def test_an_empty_database_has_no_rates_rather_than_a_division_by_zero(store, clock):
    report = await store.stats(until=clock.now(), days=30)
    for period in (report.current, report.previous):
        assert (period.incidents, period.heals, period.playbooks, period.top_alerts) == (
            0,
            0,
            (),
            (),
        )
        assert period.success_rate is None
        assert (period.resolve_p50_s, period.approve_p90_s) == (None, None)


def test_percentiles_take_the_nearest_rank():
    assert percentile([], 0.5) is None
    assert percentile([5.0], 0.9) == 5.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.0
    assert percentile(list(map(float, range(1, 11))), 0.9) == 9.0
