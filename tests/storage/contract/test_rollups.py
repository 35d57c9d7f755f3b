"""The contract of storms: a card that would wait too long becomes a line of its
channel's rollup, decided where it is queued; someone who must act still gets
a card; a promotion happens once; a rollup is redrawn by one coalesced write."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

from engine.models import Alert, Incident
from engine.records import StormRule
from engine.storage_ports import GraceStore
from tests.storage.contract.conftest import CLAIMER, ContractClock, claim_all, incidents


def calm(clock: ContractClock, max_ahead: int = 5) -> StormRule:
    """No rollup holds the channel: only the backlog decides; one is joined for 10 min.
    A max_ahead of -1: even an empty queue is too long a wait."""
    never = clock.now() + timedelta(days=1)
    return StormRule(max_ahead, never, clock.now() - timedelta(minutes=10), 10)


def stormy(clock: ContractClock, max_ahead: int = 5) -> StormRule:
    """Rollups that took an incident in the last 30 s hold, in the last 10 min are joined."""
    return StormRule(
        max_ahead, clock.now() - timedelta(seconds=30), clock.now() - timedelta(minutes=10), 10
    )


async def carded(store: GraceStore, incident: Incident, rule: StormRule, **how: object) -> bool:
    """Placed as a card of its own (else as a rollup line)."""
    needs = bool(how.get("needs_someone", False))
    placed = await store.place_card(incident, priority=11, needs_someone=needs, rule=rule)
    return placed.rollup is None


async def test_in_calm_a_card_is_queued(
    store: GraceStore, clock: ContractClock, make_alert: Callable[..., Alert]
) -> None:
    [a] = await incidents(store, make_alert, 1)
    placed = await store.place_card(a, priority=11, needs_someone=False, rule=calm(clock))
    assert placed.rollup is None and placed.joined == ()
    assert await store.card_queued(a.id) and await store.rolled_up_incidents() == {}
    [head] = await store.outbox_heads(clock.now())
    assert (head.kind, head.incident_id, head.priority) == ("post_card", a.id, 11)


async def test_a_card_that_would_wait_becomes_a_line_with_the_cards_queued_before_it(
    store: GraceStore, clock: ContractClock, make_alert: Callable[..., Alert]
) -> None:
    crowd = await incidents(store, make_alert, 6)
    placed = [await carded(store, i, stormy(clock, 3)) for i in crowd]
    assert placed == [True] * 4 + [False] * 2, "four cards, then the rest would wait too long"
    rolled = await store.rolled_up_incidents()
    assert set(rolled) == {i.id for i in crowd}, "the queued cards went with them"
    [rollup_id] = set(rolled.values())
    rollup = await store.rollup(rollup_id)
    assert rollup is not None and (rollup.channel, rollup.ts) == ("C1", None)
    assert [m.id for m in rollup.members] == [i.id for i in crowd]
    assert rollup.carded == frozenset()
    [head] = await store.outbox_heads(clock.now())
    assert (head.kind, head.priority, head.payload) == ("rollup", 0, {"rollup": rollup_id})
    assert await store.outbox_pending() == 2, "the rollup's post, and one coalesced update"
    # A thread line of an incident shown only as a line is not queued.
    told = await store.enqueue(
        "C1", "thread", {"text": "x"}, incident_id=crowd[0].id, unless_rolled_up=True
    )
    assert told is None
    assert [item.id for item in await claim_all(store, clock.now())] == [head.id]
    await store.mark_sent(head.id, "5.5", claimer=CLAIMER)
    assert (await store.rollup(rollup_id)) == rollup.__class__(
        rollup.id, rollup.channel, "5.5", rollup.members, rollup.carded
    )


async def test_someone_who_must_act_gets_a_card_storm_or_not(
    store: GraceStore, clock: ContractClock, make_alert: Callable[..., Alert]
) -> None:
    a, b = await incidents(store, make_alert, 2)
    assert not await carded(store, a, calm(clock, -1))
    assert await carded(store, b, stormy(clock, -1), needs_someone=True)
    assert await store.card_queued(b.id) and not await store.card_queued(a.id)


async def test_a_storm_holds_while_incidents_come_then_a_new_rollup_starts(
    store: GraceStore, clock: ContractClock, make_alert: Callable[..., Alert]
) -> None:
    a, b, c, d = await incidents(store, make_alert, 4)
    assert not await carded(store, a, calm(clock, -1))
    first = (await store.rolled_up_incidents())[a.id]
    for item in await store.outbox_heads(clock.now()):
        await store.mark_sent(item.id, "1.1")  # the backlog is gone
    clock.advance(20)
    assert not await carded(store, b, stormy(clock)), "held: the last joined 20 s ago"
    clock.advance(31)
    assert await carded(store, c, stormy(clock)), "31 s of calm: a card again"
    for item in await store.outbox_heads(clock.now()):
        await store.mark_sent(item.id, "2.2")
    clock.advance(11 * 60)
    assert not await carded(store, d, calm(clock, -1))
    second = (await store.rolled_up_incidents())[d.id]
    assert second != first
    old, new = await store.rollup(first), await store.rollup(second)
    assert old is not None and [m.id for m in old.members] == [a.id, b.id]
    assert new is not None and [m.id for m in new.members] == [d.id]


async def test_a_promotion_queues_the_card_then_its_story_once(
    store: GraceStore, replica: GraceStore, clock: ContractClock, make_alert: Callable[..., Alert]
) -> None:
    a, b = await incidents(store, make_alert, 2)
    for incident in (a, b):
        await carded(store, incident, calm(clock, -1))
    [rollup_write] = await store.outbox_heads(clock.now())
    await store.mark_sent(rollup_write.id, "1.1")
    promoted = await asyncio.gather(
        store.promote(b.id, priority=1, story_priority=21, story_text="so far"),
        replica.promote(b.id, priority=1, story_priority=21, story_text="again"),
    )
    assert sorted(promoted) == [False, True]
    assert await store.rolled_up_incidents() == {a.id: rollup_write.payload["rollup"]}
    heads = await store.outbox_heads(clock.now())
    assert [(h.kind, h.incident_id) for h in heads] == [("rollup", None), ("post_card", b.id)]
    rollup = await store.rollup(rollup_write.payload["rollup"])
    assert rollup is not None and rollup.carded == frozenset({b.id}) and len(rollup.members) == 2
    await store.mark_sent(heads[1].id, "2.2")
    [story] = [h for h in await store.outbox_heads(clock.now()) if h.kind == "thread"]
    told = "so far" if promoted[0] else "again"
    assert story.payload == {"text": told} and story.priority == 21, "the winner's story"
    assert not await store.promote(a.id + b.id + 100, priority=1, story_priority=21, story_text="")


async def test_a_rollup_line_is_redrawn_by_one_coalesced_write(
    store: GraceStore, clock: ContractClock, make_alert: Callable[..., Alert]
) -> None:
    a, b = await incidents(store, make_alert, 2)
    await carded(store, a, calm(clock, -1))
    await carded(store, b, calm(clock, -1), needs_someone=True)
    [first] = [h for h in await store.outbox_heads(clock.now()) if h.kind == "rollup"]
    assert [item.id for item in await claim_all(store, clock.now())] == [first.id]
    assert await store.refresh_rollup_of(a.id)
    assert await store.refresh_rollup_of(a.id)
    assert not await store.refresh_rollup_of(b.id), "b has a card: the card tells its changes"
    await store.mark_sent(first.id, "3.3", claimer=CLAIMER)
    rollups = [h for h in await store.outbox_heads(clock.now()) if h.kind == "rollup"]
    assert len(rollups) == 1 and rollups[0].id > first.id
    assert await store.outbox_pending() == 2, "b's card and one rollup update"
