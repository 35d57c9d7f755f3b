"""The inbox of Slack deliveries: committed once per key, handled once, kept a while."""

from __future__ import annotations

from datetime import timedelta

from storage.store import SqliteStore


async def test_a_delivery_is_accepted_once_per_key(store: SqliteStore):
    first = await store.accept_delivery("event:Ev1", "message", {"text": "db locked"})
    again = await store.accept_delivery("event:Ev1", "message", {"text": "db locked"})
    assert first is not None and again is None
    [pending] = await store.unhandled_deliveries()
    assert (pending.id, pending.kind, pending.payload) == (first, "message", {"text": "db locked"})


async def test_handled_deliveries_are_no_longer_pending_but_keep_their_key(store: SqliteStore):
    a = await store.accept_delivery("action:1.1:U1", "decision", {"n": 1})
    b = await store.accept_delivery("action:1.2:U1", "decision", {"n": 2})
    assert a is not None and b is not None
    await store.delivery_handled(a)
    await store.delivery_handled(a)  # a second report changes nothing
    assert [d.id for d in await store.unhandled_deliveries()] == [b]
    assert await store.accept_delivery("action:1.1:U1", "decision", {"n": 1}) is None


async def test_old_handled_keys_are_forgotten_and_pending_ones_never(store: SqliteStore, clock):
    handled = await store.accept_delivery("command:T1", "command", {})
    pending = await store.accept_delivery("command:T2", "command", {})
    assert handled is not None and pending is not None
    await store.delivery_handled(handled)
    await store.forget_deliveries(clock.now() + timedelta(seconds=1))
    # A forgotten key may be accepted again; a pending delivery is still there.
    assert await store.accept_delivery("command:T1", "command", {}) is not None
    assert pending in [d.id for d in await store.unhandled_deliveries()]


async def test_an_accepted_delivery_survives_a_reopen(tmp_path, clock):
    path = tmp_path / "grace.db"
    async with await SqliteStore.open(path, clock) as store:
        await store.accept_delivery("event:Ev9", "message", {"k": "v"})
    async with await SqliteStore.open(path, clock) as store:
        [pending] = await store.unhandled_deliveries()
        assert pending.payload == {"k": "v"}
