"""The contract of the outbox shared by replicas: claims that two workers never
share, a claim that runs out comes back in doubt, a claimer that lost its claim
changes nothing, each lane's pace holds for every claimer together, and a
stream goes out in order whoever sends it.

`store` and `replica` are two GRACEs on one database; each claims as its own
worker (`A`, `B`), as bot/outbox.py's workers do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import pytest

from engine.models import Alert
from engine.records import OutboxItem
from engine.storage_ports import GraceStore
from tests.storage.contract.conftest import ContractClock, claim_all, incidents

A, B, C = "grace-1#a", "grace-2#b", "grace-3#c"


async def settle(store: GraceStore, claimer: str, items: list[OutboxItem]) -> None:
    for item in items:
        await store.mark_sent(item.id, f"ts-{item.id}", claimer=claimer)


async def test_two_claimers_at_once_never_get_the_same_row(
    store: GraceStore,
    replica: GraceStore,
    clock: ContractClock,
    make_alert: Callable[..., Alert],
) -> None:
    """Rows in three lanes, in many streams each (every incident's card and story,
    and each channel's notices); both GRACEs claim at the same moment, round after
    round, until everything is sent: every row once, by one of them."""
    queued: set[int] = set()
    for channel in ("C1", "C2", "C3"):
        for incident in await incidents(store, make_alert, 4, channel):
            card = await store.enqueue(channel, "post_card", {}, incident_id=incident.id)
            line = await store.enqueue(channel, "thread", {"text": "x"}, incident_id=incident.id)
            queued |= {card or 0, line or 0}
        for n in range(3):
            queued.add(await replica.enqueue(channel, "notice", {"text": str(n)}) or 0)
    claimed: list[int] = []
    for _ in range(len(queued)):
        mine, theirs = await asyncio.gather(
            claim_all(store, clock.now(), A), claim_all(replica, clock.now(), B)
        )
        assert not {i.id for i in mine} & {i.id for i in theirs}, "one row, two claimers"
        assert len({i.lane for i in mine}) == len(mine), "one row a lane a claim"
        claimed += [i.id for i in (*mine, *theirs)]
        await asyncio.gather(settle(store, A, mine), settle(replica, B, theirs))
        if not await store.outbox_pending():
            break
    assert sorted(claimed) == sorted(queued), "every row claimed, and only once"


async def test_a_claim_holds_its_row_until_it_runs_out_then_it_comes_back_in_doubt(
    store: GraceStore, replica: GraceStore, clock: ContractClock
) -> None:
    row = await store.enqueue("C1", "thread", {"text": "x"})
    other = await store.enqueue("C2", "thread", {"text": "y"})
    mine = await store.claim_outbox(A, clock.now(), rate=1, burst=1, lease_s=30, limit=1)
    assert [(i.id, i.sending) for i in mine] == [(row, False)], "the most urgent lane first"
    lease_end = clock.now() + timedelta(seconds=30)
    [theirs] = await claim_all(replica, clock.now(), B)
    assert theirs.id == other, "a held row is skipped, not waited for"
    await replica.mark_sent(other or 0, "2.2", claimer=B)
    assert await claim_all(replica, clock.now(), B) == []
    assert await replica.outbox_next_due(clock.now(), rate=1, burst=1) == lease_end
    clock.advance(29.9)
    assert await claim_all(replica, clock.now(), B) == []
    clock.advance(0.1)
    [again] = await claim_all(replica, clock.now(), B)
    assert (again.id, again.sending) == (row, True), "its sender died: look it up first"
    await replica.mark_sent(row or 0, "1.1", claimer=B)
    assert await store.sent_ts(row or 0) == "1.1" and await store.outbox_pending() == 0


async def test_a_claimer_that_lost_its_claim_changes_nothing(
    store: GraceStore, replica: GraceStore, clock: ContractClock
) -> None:
    row = await store.enqueue("C1", "thread", {"text": "x"})
    assert row is not None
    await claim_all(store, clock.now(), A, lease_s=10)
    clock.advance(10)
    [taken] = await claim_all(replica, clock.now(), B, lease_s=10)
    assert (taken.id, taken.sending) == (row, True)
    # A's answers come late: the row is B's now.
    await store.mark_sent(row, "stale", claimer=A)
    await store.retry_later(row, clock.now(), "stale", claimer=A)
    await store.drop(row, "stale", claimer=A)
    await store.mark_sent(row, "nobody's", claimer=None)
    assert await store.sent_ts(row) is None and await store.outbox_pending() == 1
    assert await claim_all(store, clock.now(), C) == [], "B's claim still holds"
    # B: Slack's answer lost, so the row stays in doubt, free for any worker.
    await replica.retry_later(row, clock.now(), "timeout", maybe_delivered=True, claimer=B)
    await store.retry_later(row, clock.now(), "stale", claimer=A)  # would make it 'pending'
    [again] = await claim_all(store, clock.now(), C)
    assert (again.id, again.sending, again.attempts) == (row, True, 1), "still looked up first"
    await store.mark_sent(row, "3.3", claimer=C)
    await replica.mark_sent(row, "late", claimer=B)
    await store.mark_sent(row, "late", claimer=A)
    assert await replica.sent_ts(row) == "3.3"
    with pytest.raises(LookupError):
        await store.mark_sent(10_000, None, claimer=A)


async def test_a_lanes_pace_holds_for_every_claimer_together(
    store: GraceStore,
    replica: GraceStore,
    clock: ContractClock,
    make_alert: Callable[..., Alert],
) -> None:
    """Two lanes with more to say than their pace lets out, in many streams each;
    both GRACEs claim every tenth of a second for ten seconds. Each lane sends
    at most burst + rate * t by any time t, both GRACEs' claims together (a pace
    each GRACE kept for itself would let twice as much out), and gets that much:
    one lane's spending holds up no other lane."""
    rate, burst, tick, ticks = 2.0, 3, 0.1, 100
    for channel in ("C1", "C2"):
        for incident in await incidents(store, make_alert, 5, channel):
            for n in range(6):
                await store.enqueue(channel, "thread", {"text": str(n)}, incident_id=incident.id)

    async def claim(on: GraceStore, claimer: str) -> list[OutboxItem]:
        return await on.claim_outbox(
            claimer, clock.now(), rate=rate, burst=burst, lease_s=60, limit=10
        )

    sent = {"C1": 0, "C2": 0}
    for n in range(ticks + 1):
        mine, theirs = await asyncio.gather(claim(store, A), claim(replica, B))
        for item in (*mine, *theirs):
            sent[item.lane] += 1
        await asyncio.gather(settle(store, A, mine), settle(replica, B, theirs))
        allowed = burst + rate * n * tick + 1e-9
        assert max(sent.values()) <= allowed, f"{sent} by {n * tick:.1f} s"
        clock.advance(tick)
    expected = burst + rate * ticks * tick
    assert all(expected - 1 <= count <= expected for count in sent.values()), sent


async def test_the_next_due_waits_for_the_lanes_next_token_and_a_429s_hold(
    store: GraceStore,
    replica: GraceStore,
    clock: ContractClock,
    make_alert: Callable[..., Alert],
) -> None:
    start = clock.now()
    first = await store.enqueue("C1", "notice", {"text": "1"})
    second = await store.enqueue("C1", "notice", {"text": "2"})
    elsewhere = await store.enqueue("C2", "notice", {"text": "other"})
    items = await store.claim_outbox(A, start, rate=0.5, burst=1, lease_s=60, limit=10)
    assert [i.id for i in items] == [first, elsewhere]
    await settle(store, A, items)
    assert await replica.claim_outbox(B, start, rate=0.5, burst=1, lease_s=60, limit=10) == []
    due = await replica.outbox_next_due(start, rate=0.5, burst=1)
    assert due == start + timedelta(seconds=2), "C1's next token, 1 / rate on"
    assert await replica.outbox_next_due(start) is None, "due now, but for the pace"
    clock.advance(2)
    [item] = await replica.claim_outbox(B, clock.now(), rate=0.5, burst=1, lease_s=60, limit=10)
    assert item.id == second
    # Slack says 429 to B: the whole lane waits Retry-After, whoever claims next,
    # its other streams too.
    [incident] = await incidents(store, make_alert, 1, "C1")
    third = await store.enqueue("C1", "thread", {"text": "3"}, incident_id=incident.id)
    retry_at = clock.now() + timedelta(seconds=30)
    await replica.retry_later(item.id, retry_at, "ratelimited", claimer=B, hold_lane=True)
    also = await store.enqueue("C2", "notice", {"text": "other 2"})
    clock.advance(10)
    [other_lane] = await claim_all(store, clock.now(), A)
    assert other_lane.id == also, "only C1 is held"
    await settle(store, A, [other_lane])
    assert await store.outbox_next_due(clock.now()) == retry_at
    clock.advance(20)
    [again] = await claim_all(store, clock.now(), A)
    assert (again.id, again.sending) == (second, False), "Slack took nothing: no lookup"
    await settle(store, A, [again])
    assert [i.id for i in await claim_all(store, clock.now(), A)] == [third]


async def test_a_stream_goes_out_in_order_whoever_claims(
    store: GraceStore,
    replica: GraceStore,
    clock: ContractClock,
    make_alert: Callable[..., Alert],
) -> None:
    [incident] = await incidents(store, make_alert, 1)
    card = await store.enqueue("C1", "post_card", {}, incident_id=incident.id)
    told = [card] + [
        await store.enqueue("C1", "thread", {"text": str(n)}, incident_id=incident.id, priority=p)
        for n, p in enumerate((30, 20, 25, 1))
    ]
    order: list[int] = []
    stores = ((store, A), (replica, B))
    for turn in range(len(told)):
        (sender, claimer), (other, rival) = stores[turn % 2], stores[(turn + 1) % 2]
        [head] = await claim_all(sender, clock.now(), claimer)
        assert await claim_all(other, clock.now(), rival) == [], "not sent past its claimed head"
        order.append(head.id)
        await sender.mark_sent(head.id, f"1.{turn}", claimer=claimer)
    assert order == told, "as told, whatever the priorities"
    assert await store.outbox_pending() == 0


async def test_a_lane_gets_no_token_back_for_the_time_a_call_took(
    store: GraceStore, replica: GraceStore, clock: ContractClock
) -> None:
    """Slack counts a write when it arrives, somewhere in the call: the lane's pace
    starts again from the answer, so a slow call never lets the next one in early."""
    first = await store.enqueue("C1", "notice", {"text": "1"})
    second = await store.enqueue("C1", "notice", {"text": "2"})
    [item] = await store.claim_outbox(A, clock.now(), rate=1, burst=1, lease_s=60, limit=1)
    assert item.id == first
    clock.advance(5)  # the call takes five seconds
    await store.mark_sent(item.id, "1.1", claimer=A)
    answered = clock.now()
    assert await replica.outbox_next_due(answered, rate=1, burst=1) == answered + timedelta(
        seconds=1
    )
    clock.advance(0.9)
    assert await replica.claim_outbox(B, clock.now(), rate=1, burst=1, lease_s=60, limit=1) == []
    clock.advance(0.1)
    [item] = await replica.claim_outbox(B, clock.now(), rate=1, burst=1, lease_s=60, limit=1)
    assert item.id == second
