"""The contract of the inbox: a delivery key is taken once, by one replica, and
a delivery is handled once, found again after a restart until it is."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from engine.storage_ports import GraceStore
from tests.storage.contract.conftest import ContractClock, Database


async def test_a_delivery_is_taken_once_whichever_replica_slack_reaches(
    store: GraceStore, replica: GraceStore
) -> None:
    taken = await asyncio.gather(
        store.accept_delivery("event:Ev1", "message", {"text": "db locked"}),
        replica.accept_delivery("event:Ev1", "message", {"text": "db locked"}),
    )
    [accepted] = [t for t in taken if t is not None]
    assert taken.count(None) == 1
    [pending] = await replica.unhandled_deliveries()
    assert (pending.id, pending.kind, pending.payload) == (
        accepted,
        "message",
        {"text": "db locked"},
    )


async def test_a_handled_delivery_is_done_but_its_key_still_guards(store: GraceStore) -> None:
    a = await store.accept_delivery("action:1.1:U1", "decision", {"n": 1})
    b = await store.accept_delivery("action:1.2:U1", "decision", {"n": 2})
    assert a is not None and b is not None and a < b
    await store.delivery_handled(a)
    await store.delivery_handled(a)  # a second report changes nothing
    assert [d.id for d in await store.unhandled_deliveries()] == [b]
    assert await store.accept_delivery("action:1.1:U1", "decision", {"n": 1}) is None


async def test_old_handled_keys_are_forgotten_and_unhandled_ones_never(
    store: GraceStore, clock: ContractClock
) -> None:
    handled = await store.accept_delivery("command:T1", "command", {})
    pending = await store.accept_delivery("command:T2", "command", {})
    assert handled is not None and pending is not None
    await store.delivery_handled(handled)
    await store.forget_deliveries(clock.now() - timedelta(seconds=1))
    assert await store.accept_delivery("command:T1", "command", {}) is None, "not old enough"
    await store.forget_deliveries(clock.now() + timedelta(seconds=1))
    assert await store.accept_delivery("command:T1", "command", {}) is not None
    assert pending in [d.id for d in await store.unhandled_deliveries()]


async def test_an_unhandled_delivery_survives_a_restart(database: Database) -> None:
    store = await database.open()
    first = await store.accept_delivery("event:Ev8", "message", {"k": "v"})
    second = await store.accept_delivery("event:Ev9", "command", {"n": [1, 2]})
    await database.close_all()
    store = await database.open()
    pending = await store.unhandled_deliveries()
    assert [(d.id, d.kind, d.payload) for d in pending] == [
        (first, "message", {"k": "v"}),
        (second, "command", {"n": [1, 2]}),
    ]


async def test_a_replica_finds_the_unhandled_deliveries_accepted_before_a_time(
    store: GraceStore, replica: GraceStore, clock: ContractClock
) -> None:
    old = await store.accept_delivery("event:Ev7", "message", {"n": 7})
    clock.advance(31)
    cutoff = clock.now() - timedelta(seconds=30)
    new = await store.accept_delivery("event:Ev8", "message", {"n": 8})
    assert [d.id for d in await replica.unhandled_deliveries(cutoff)] == [old]
    assert [d.id for d in await replica.unhandled_deliveries()] == [old, new]
    assert old is not None
    await replica.delivery_handled(old)
    assert await replica.unhandled_deliveries(cutoff) == []
