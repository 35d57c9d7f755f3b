"""The contract of replicas sharing a store: leases one replica holds at a time,
heartbeats, and the runs of a replica that died found for the others to end.

`store` writes for replica STORE, `replica` for REPLICA (tests/storage/contract/conftest.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from engine.models import Alert, Incident, IncidentState, Plan
from engine.storage_ports import GraceStore
from tests.storage.contract.conftest import (
    REPLICA,
    STORE,
    ContractClock,
    Database,
    open_incident,
)

S = IncidentState
TTL = 30.0
RUNNING = (S.APPROVED, S.EXECUTING, S.VERIFYING)


async def test_a_lease_is_one_holders_until_it_expires_or_is_let_go(
    store: GraceStore, replica: GraceStore, clock: ContractClock
) -> None:
    assert await store.hold_lease("scheduler", STORE, TTL)
    assert not await replica.hold_lease("scheduler", REPLICA, TTL), "held by the other"
    # Renewing keeps it past its first expiry.
    clock.advance(TTL - 1)
    assert await store.hold_lease("scheduler", STORE, TTL)
    clock.advance(TTL - 1)
    assert not await replica.hold_lease("scheduler", REPLICA, TTL), "renewed, still held"
    # Another lease is another name: held apart.
    assert await replica.hold_lease("weekly", REPLICA, TTL)
    assert not await store.hold_lease("weekly", STORE, TTL)
    # Not renewed: once it expired, the other takes it, and the first holder is refused.
    clock.advance(1)
    assert await replica.hold_lease("scheduler", REPLICA, TTL)
    assert not await store.hold_lease("scheduler", STORE, TTL)
    # A release by whoever does not hold it changes nothing; the holder's frees it at once.
    await store.release_lease("scheduler", STORE)
    assert not await store.hold_lease("scheduler", STORE, TTL)
    await replica.release_lease("scheduler", REPLICA)
    assert await store.hold_lease("scheduler", STORE, TTL)
    await store.release_lease("never-held", STORE)


async def test_a_lease_is_refused_a_ttl_that_is_not_positive(store: GraceStore) -> None:
    with pytest.raises(ValueError, match="TTL"):
        await store.hold_lease("scheduler", STORE, 0)


async def test_of_two_replicas_claiming_a_lease_at_once_one_wins(
    store: GraceStore, replica: GraceStore, clock: ContractClock
) -> None:
    for n in range(10):
        name = f"lease-{n}"
        won = await asyncio.gather(
            store.hold_lease(name, STORE, TTL), replica.hold_lease(name, REPLICA, TTL)
        )
        assert sorted(won) == [False, True], name
        # And when it expires, raced for again: still one.
        clock.advance(TTL)
        again = await asyncio.gather(
            replica.hold_lease(name, REPLICA, TTL), store.hold_lease(name, STORE, TTL)
        )
        assert sorted(again) == [False, True], name


async def running(store: GraceStore, alert: Alert, key: str, plan: Plan, to: S) -> Incident:
    """An incident moved by `store` (so run by its replica) on to `to`."""
    incident = await open_incident(store, alert, key)
    path = [(S.OPEN, S.DIAGNOSED), (S.DIAGNOSED, S.APPROVED), (S.APPROVED, S.EXECUTING)]
    path += [(S.EXECUTING, S.VERIFYING)]
    for expected, new in path:
        carried = plan if new is S.DIAGNOSED else None
        moved = await store.transition(incident.id, expected, new, actor="grace", plan=carried)
        assert moved is not None
        if new is to:
            return moved
    raise AssertionError(f"{to} is not a running state")


def ids(incidents: list[Incident]) -> list[int]:
    return [i.id for i in incidents]


async def test_a_run_is_orphaned_when_its_replica_stops_beating(
    store: GraceStore,
    replica: GraceStore,
    clock: ContractClock,
    make_alert: Callable[..., Alert],
    plan: Plan,
) -> None:
    started = clock.now()
    await store.heartbeat(STORE, started)
    await replica.heartbeat(REPLICA, started)
    mine = await running(store, make_alert(), "d-1", plan, S.EXECUTING)
    theirs = [
        await running(replica, make_alert(), f"d-{n}", plan, state)
        for n, state in enumerate(RUNNING, 2)
    ]
    # An incident not running is nobody's run, whoever moved it last.
    waiting = await open_incident(replica, make_alert(), "d-9")
    await replica.transition(waiting.id, S.OPEN, S.NEEDS_HUMAN, actor="grace")

    # Both alive: nothing is orphaned, except, asked at a start, a replica's own runs.
    assert await replica.orphaned_runs(REPLICA, TTL, own=False) == []
    assert await store.orphaned_runs(STORE, TTL, own=False) == []
    assert ids(await store.orphaned_runs(STORE, TTL, own=True)) == [mine.id]
    assert ids(await replica.orphaned_runs(REPLICA, TTL, own=True)) == ids(theirs)
    assert [i.state for i in theirs] == list(RUNNING)

    # REPLICA keeps beating, STORE stops: once its last beat is older than the TTL, its
    # run is orphaned for the others, and the live one's never is.
    clock.advance(TTL)
    await replica.heartbeat(REPLICA, started)
    assert await replica.orphaned_runs(REPLICA, TTL, own=False) == [], "a beat TTL old is alive"
    clock.advance(1)
    await replica.heartbeat(REPLICA, started)
    orphans = await replica.orphaned_runs(REPLICA, TTL, own=False)
    assert orphans == [await replica.get_incident(mine.id)]
    # Any store answers the same for the same replica...
    assert await store.orphaned_runs(REPLICA, TTL, own=False) == orphans
    # ...and a replica's own runs are its own while it lives, however old its last beat.
    assert await store.orphaned_runs(STORE, TTL, own=False) == []

    # STORE's replica beats again (a new process of that name): its run is its own again.
    await store.heartbeat(STORE, clock.now())
    assert await replica.orphaned_runs(REPLICA, TTL, own=False) == []

    # Ended, a run is nobody's to take over.
    await replica.transition(mine.id, S.EXECUTING, S.INTERRUPTED, actor="grace")
    assert await replica.orphaned_runs(REPLICA, TTL, own=True) == theirs


async def test_a_run_of_a_replica_that_never_beat_is_orphaned(
    store: GraceStore,
    replica: GraceStore,
    clock: ContractClock,
    make_alert: Callable[..., Alert],
    plan: Plan,
) -> None:
    await replica.heartbeat(REPLICA, clock.now())
    silent = await running(store, make_alert(), "d-1", plan, S.APPROVED)
    assert ids(await replica.orphaned_runs(REPLICA, TTL, own=False)) == [silent.id]


async def test_the_replica_that_moves_a_run_on_runs_it(
    store: GraceStore,
    replica: GraceStore,
    clock: ContractClock,
    make_alert: Callable[..., Alert],
    plan: Plan,
) -> None:
    """Approved by one replica, carried out by another (a resume after a pause, say):
    the run is the second's from its move on."""
    await store.heartbeat(STORE, clock.now())
    await replica.heartbeat(REPLICA, clock.now())
    approved = await running(store, make_alert(), "d-1", plan, S.APPROVED)
    assert ids(await store.orphaned_runs(STORE, TTL, own=True)) == [approved.id]
    await replica.transition(approved.id, S.APPROVED, S.EXECUTING, actor="grace")
    assert await store.orphaned_runs(STORE, TTL, own=True) == []
    assert ids(await replica.orphaned_runs(REPLICA, TTL, own=True)) == [approved.id]


async def test_a_heartbeat_and_a_lease_survive_a_restart_of_the_store(
    store: GraceStore,
    replica: GraceStore,
    clock: ContractClock,
    database: Database,
    make_alert: Callable[..., Alert],
    plan: Plan,
) -> None:
    """Both are in the database, not in a process: a store opened again sees them."""
    await store.heartbeat(STORE, clock.now())
    assert await store.hold_lease("scheduler", STORE, TTL)
    run = await running(store, make_alert(), "d-1", plan, S.EXECUTING)
    await store.close()
    database.opened.remove(store)
    again = await database.open(REPLICA)
    assert not await again.hold_lease("scheduler", REPLICA, TTL)
    assert await again.orphaned_runs(REPLICA, TTL, own=False) == []
    clock.advance(TTL + 1)
    assert ids(await again.orphaned_runs(REPLICA, TTL, own=False)) == [run.id]
    assert await again.hold_lease("scheduler", REPLICA, TTL)
