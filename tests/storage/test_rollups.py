"""Storms, storage side: a lane sends its most urgent stream head, a stream keeps its
order, and a card that would wait too long becomes a line of the channel's rollup."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from engine.models import Alert, Incident
from engine.records import StormRule
from storage.store import SqliteStore
from tests.storage.conftest import FakeClock, open_incident
from tests.storage.contract.conftest import CLAIMER, claim_all


async def _head_ids(store: SqliteStore, clock: FakeClock) -> list[int]:
    return [item.id for item in await store.outbox_heads(clock.now())]


def calm(clock: FakeClock, max_ahead: int = 5) -> StormRule:
    """No rollup holds the channel: only the backlog decides; one is joined for 10 min."""
    never = clock.now() + timedelta(days=1)
    return StormRule(max_ahead, never, clock.now() - timedelta(minutes=10), 10)


# A max_ahead of -1: even an empty queue is too long a wait, so a rollup at once.


def stormy(clock: FakeClock, max_ahead: int = 5) -> StormRule:
    """Rollups that took an incident in the last 30 s hold, in the last 10 min are joined."""
    return StormRule(
        max_ahead, clock.now() - timedelta(seconds=30), clock.now() - timedelta(minutes=10), 10
    )


async def carded(store: SqliteStore, incident: Incident, **how: Any) -> bool:
    """Placed as a card of its own (else as a rollup line)."""
    return (await store.place_card(incident, **how)).rollup is None


async def incidents(
    store: SqliteStore, make_alert: Callable[..., Alert], n: int, channel: str = "C1"
) -> list[Incident]:
    return [await open_incident(store, make_alert(channel=channel), f"d-{k}") for k in range(n)]


async def test_a_lane_sends_the_most_urgent_head_and_a_thread_never_overtakes_its_card(
    store: SqliteStore, clock: FakeClock, make_alert: Callable[..., Alert]
) -> None:
    a, b = await incidents(store, make_alert, 2)
    a_card = await store.enqueue("C1", "post_card", {}, incident_id=a.id, priority=11)
    a_one = await store.enqueue("C1", "thread", {"text": "1"}, incident_id=a.id, priority=21)
    a_two = await store.enqueue("C1", "thread", {"text": "2"}, incident_id=a.id, priority=20)
    b_card = await store.enqueue("C1", "post_card", {}, incident_id=b.id, priority=0)
    notice = await store.enqueue("C1", "notice", {"text": "paused"}, priority=0)

    assert await _head_ids(store, clock) == [b_card, notice, a_card]
    await store.mark_sent(b_card, "1.1")
    await store.mark_sent(a_card, "1.2")
    assert await _head_ids(store, clock) == [notice, a_one], "its thread, in the order told"
    await store.mark_sent(a_one, None)
    assert await _head_ids(store, clock) == [notice, a_two]


async def test_a_card_update_waits_for_its_card_but_not_for_its_thread(
    store: SqliteStore, clock: FakeClock, make_alert: Callable[..., Alert]
) -> None:
    [a] = await incidents(store, make_alert, 1)
    card = await store.enqueue("C1", "post_card", {}, incident_id=a.id, priority=10)
    told = await store.enqueue("C1", "thread", {"text": "t"}, incident_id=a.id, priority=20)
    update = await store.enqueue(
        "C1", "update_card", {}, incident_id=a.id, coalesce_key=f"card:{a.id}", priority=10
    )
    assert await _head_ids(store, clock) == [card]
    assert await store.outbox_next_due(clock.now()) is None, "nothing later is due either"
    await store.mark_sent(card, "1.1")
    assert await _head_ids(store, clock) == [update, told]


async def test_a_card_that_would_wait_too_long_becomes_a_rollup_line(
    store: SqliteStore, clock: FakeClock, make_alert: Callable[..., Alert], db_path
) -> None:
    crowd = await incidents(store, make_alert, 40)
    await store.enqueue("C1", "thread", {"text": "x"}, incident_id=crowd[0].id, priority=21)
    placed = [
        await carded(store, i, priority=11, needs_someone=False, rule=stormy(clock, 3))
        for i in crowd
    ]
    assert placed == [True] * 4 + [False] * 36, "four cards, then the rest waits too long"
    fifth = await store.place_card(
        await open_incident(store, make_alert(channel="C1"), "d-x"),
        priority=11,
        needs_someone=False,
        rule=stormy(clock, 3),
    )
    assert fifth.rollup is not None and len(fifth.joined) == 1, "the four went with the fifth"
    crowd.append((await store.rollup(fifth.rollup)).members[-1])
    # The four queued cards join the rollup too, and their story lines wait in the records.
    assert await store.outbox_pending() == 2, "the rollup's post, and one coalesced update"
    [head, *_] = await store.outbox_heads(clock.now())
    assert head.kind == "rollup" and head.priority == 0
    rollup = await store.rollup(head.payload["rollup"])
    assert rollup is not None and rollup.ts is None and rollup.channel == "C1"
    assert [m.id for m in rollup.members] == [i.id for i in crowd]
    assert rollup.carded == frozenset()
    assert set(await store.rolled_up_incidents()) == {i.id for i in crowd}
    with sqlite3.connect(db_path) as db:
        kinds = db.execute("SELECT kind, state FROM outbox ORDER BY id LIMIT 5").fetchall()
    assert kinds == [("thread", "dropped")] + [("rolled_up_card", "dropped")] * 4

    assert [item.id for item in await claim_all(store, clock.now())] == [head.id]
    await store.mark_sent(head.id, "5.5", claimer=CLAIMER)
    assert (await store.rollup(rollup.id)).ts == "5.5", "later writes update it in place"


async def test_a_card_already_tried_is_not_rolled_up(
    store: SqliteStore, clock: FakeClock, make_alert: Callable[..., Alert]
) -> None:
    a, b = await incidents(store, make_alert, 2)
    assert await carded(store, a, priority=11, needs_someone=False, rule=calm(clock))
    [card] = await claim_all(store, clock.now())  # Slack may have it: it stays a card
    assert (card.kind, card.incident_id) == ("post_card", a.id)
    assert not await carded(store, b, priority=11, needs_someone=False, rule=calm(clock, -1))
    assert (
        a.id not in await store.rolled_up_incidents() and b.id in await store.rolled_up_incidents()
    )
