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


async def test_in_calm_a_card_is_queued(
    store: SqliteStore, clock: FakeClock, make_alert: Callable[..., Alert]
) -> None:
    [a] = await incidents(store, make_alert, 1)
    assert await carded(store, a, priority=11, needs_someone=False, rule=calm(clock))
    assert await store.card_queued(a.id) and await store.rolled_up_incidents() == {}


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

    await store.begin_send(head.id)
    await store.mark_sent(head.id, "5.5")
    assert (await store.rollup(rollup.id)).ts == "5.5", "later writes update it in place"


async def test_a_card_already_tried_is_not_rolled_up(
    store: SqliteStore, clock: FakeClock, make_alert: Callable[..., Alert]
) -> None:
    a, b = await incidents(store, make_alert, 2)
    assert await carded(store, a, priority=11, needs_someone=False, rule=calm(clock))
    [card] = await store.outbox_heads(clock.now())
    await store.begin_send(card.id)  # Slack may have it: it stays a card
    assert not await carded(store, b, priority=11, needs_someone=False, rule=calm(clock, -1))
    assert (
        a.id not in await store.rolled_up_incidents() and b.id in await store.rolled_up_incidents()
    )


async def test_someone_who_must_act_gets_a_card_storm_or_not(
    store: SqliteStore, clock: FakeClock, make_alert: Callable[..., Alert]
) -> None:
    a, b = await incidents(store, make_alert, 2)
    assert not await carded(store, a, priority=11, needs_someone=False, rule=calm(clock, -1))
    assert await carded(store, b, priority=1, needs_someone=True, rule=stormy(clock, -1))
    assert await store.card_queued(b.id)


async def test_a_storm_holds_while_incidents_keep_coming_then_a_new_rollup_starts(
    store: SqliteStore, clock: FakeClock, make_alert: Callable[..., Alert]
) -> None:
    a, b, c, d = await incidents(store, make_alert, 4)
    assert not await carded(store, a, priority=11, needs_someone=False, rule=calm(clock, -1))
    first = await store.rollup(1)
    for item in await store.outbox_heads(clock.now()):
        await store.mark_sent(item.id, "1.1")  # the backlog is gone
    clock.advance(20)
    assert not await carded(store, b, priority=11, needs_someone=False, rule=stormy(clock))
    clock.advance(31)
    assert await carded(store, c, priority=11, needs_someone=False, rule=stormy(clock))
    for item in await store.outbox_heads(clock.now()):
        await store.mark_sent(item.id, "2.2")
    clock.advance(11 * 60)
    assert not await carded(store, d, priority=11, needs_someone=False, rule=calm(clock, -1))
    assert [m.id for m in (await store.rollup(first.id)).members] == [a.id, b.id]
    assert [m.id for m in (await store.rollup(first.id + 1)).members] == [d.id]


async def test_a_promoted_incident_gets_its_card_then_its_story_once(
    store: SqliteStore, clock: FakeClock, make_alert: Callable[..., Alert]
) -> None:
    a, b = await incidents(store, make_alert, 2)
    for i in (a, b):
        await carded(store, i, priority=11, needs_someone=False, rule=calm(clock, -1))
    [rollup_write] = await store.outbox_heads(clock.now())
    await store.mark_sent(rollup_write.id, "1.1")

    assert await store.promote(b.id, priority=1, story_priority=21, story_text="so far")
    assert not await store.promote(b.id, priority=1, story_priority=21, story_text="again")
    assert (
        b.id not in await store.rolled_up_incidents() and a.id in await store.rolled_up_incidents()
    )
    heads = await store.outbox_heads(clock.now())
    assert [(h.kind, h.incident_id) for h in heads] == [("rollup", None), ("post_card", b.id)]
    rollup = await store.rollup(rollup_write.payload["rollup"])
    assert rollup.carded == frozenset({b.id}) and len(rollup.members) == 2
    await store.mark_sent(heads[1].id, "2.2")
    [story] = [h for h in await store.outbox_heads(clock.now()) if h.kind == "thread"]
    assert story.payload == {"text": "so far"} and story.priority == 21


async def test_a_rollup_line_is_refreshed_by_one_coalesced_write(
    store: SqliteStore, clock: FakeClock, make_alert: Callable[..., Alert]
) -> None:
    a, b = await incidents(store, make_alert, 2)
    await carded(store, a, priority=11, needs_someone=False, rule=calm(clock, -1))
    await carded(store, b, priority=11, needs_someone=True, rule=calm(clock, -1))
    [first] = [h for h in await store.outbox_heads(clock.now()) if h.kind == "rollup"]
    await store.begin_send(first.id)
    assert await store.refresh_rollup_of(a.id)
    assert await store.refresh_rollup_of(a.id)
    assert not await store.refresh_rollup_of(b.id), "b has a card: the card tells its changes"
    await store.mark_sent(first.id, "3.3")
    rollups = [h for h in await store.outbox_heads(clock.now()) if h.kind == "rollup"]
    assert len(rollups) == 1 and rollups[0].id > first.id
    assert await store.outbox_pending() == 2, "b's card and one rollup update"
