"""The contract of the weekly report: a period is claimed once, by one replica,
its message and then its chart queued with the claim; its numbers read at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

from engine.autonomy import TierChange
from engine.models import Alert
from engine.models import IncidentState as S
from engine.storage_ports import GraceStore
from engine.weekly import Period
from tests.storage.contract.conftest import ContractClock, open_incident

MESSAGE = {"text": "GRACE's report"}
CHART = {"filename": "c.png", "title": "t", "png": "AA=="}


def week(clock: ContractClock) -> Period:
    return Period(start=clock.now() - timedelta(days=7), end=clock.now())


async def test_a_period_is_claimed_once_its_message_then_its_chart(
    store: GraceStore, replica: GraceStore, clock: ContractClock
) -> None:
    period = week(clock)
    assert not await store.report_claimed(period)
    claims = await asyncio.gather(
        store.claim_report(period, "C0REPORTS", MESSAGE, CHART),
        replica.claim_report(period, "C0REPORTS", MESSAGE, CHART),
    )
    assert sorted(claims) == [False, True]
    assert await store.report_claimed(period) and await replica.report_claimed(period)
    assert await store.outbox_pending() == 2, "the loser queued nothing"
    [message] = await store.outbox_heads(clock.now())
    assert (message.kind, message.channel, message.payload) == ("notice", "C0REPORTS", MESSAGE)
    await store.mark_sent(message.id, "1700000000.000100")
    [chart] = await store.outbox_heads(clock.now())
    assert (chart.kind, chart.payload) == ("upload", {**CHART, "after": message.id})
    assert await store.sent_ts(message.id) == "1700000000.000100"
    later = Period(start=period.end, end=period.end + timedelta(days=7))
    assert not await store.report_claimed(later)
    assert await replica.claim_report(later, "C0REPORTS", MESSAGE, CHART)


async def test_a_chart_waits_for_its_message(store: GraceStore, clock: ContractClock) -> None:
    assert await store.claim_report(week(clock), "C0REPORTS", MESSAGE, CHART)
    [message] = await store.outbox_heads(clock.now())
    await store.retry_later(message.id, clock.now() + timedelta(seconds=30), "ratelimited")
    assert await store.outbox_heads(clock.now()) == []


async def test_the_report_reads_its_period_only(
    store: GraceStore, clock: ContractClock, make_alert: Callable[..., Alert]
) -> None:
    start = clock.now()
    for n in range(3):
        unknown = await open_incident(store, make_alert(name="CPUThrottling"), f"cpu{n}")
        await store.transition(unknown.id, S.OPEN, S.NEEDS_HUMAN, actor="grace")
    once = await open_incident(store, make_alert(name="OddOnce"), "odd")
    await store.transition(once.id, S.OPEN, S.NEEDS_HUMAN, actor="grace")
    change = TierChange(
        playbook_id="rotate-logs", tier=2, base_tier=1, by="grace", reason="3/6", at=clock.now()
    )
    await store.change_tier(change)
    clock.advance(2 * 3600)
    period = Period(start=start, end=clock.now())
    hour = start + timedelta(hours=1)
    days = [Period(start=start, end=hour), Period(start=hour, end=clock.now())]
    report = await store.weekly_report(period, "UTC", days)
    assert report.toil == (("CPUThrottling", 3),)
    assert report.tier_changes == (change,)
    assert report.stats.current.incidents == 4 and report.stats.current.needed_human == 4
    assert [d.incidents for d in report.days] == [4, 0]
    earlier = Period(start=start - timedelta(days=7), end=start)
    before = await store.weekly_report(earlier, "UTC", [earlier])
    assert before.toil == () and before.tier_changes == ()
    assert before.stats.current.incidents == 0
    assert await store.playbook_tiers() == {"rotate-logs": change}


async def test_installed_at_is_one_fixed_instant(store: GraceStore) -> None:
    installed = await store.installed_at()
    assert installed.tzinfo is not None
    assert installed == await store.installed_at(), "it does not move"
