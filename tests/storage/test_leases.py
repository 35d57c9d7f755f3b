"""Leases, heartbeats and runners as stored: the rows behind the replicas' ports
(tests/storage/contract/test_replicas.py holds the ports themselves)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from engine.models import Alert, IncidentState, Plan
from storage.db import time_text
from storage.store import SqliteStore
from tests.storage.conftest import FakeClock, open_incident

S = IncidentState


def rows(db_path: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db_path)
    try:
        return [tuple(row) for row in conn.execute(sql)]
    finally:
        conn.close()


async def test_a_lease_keeps_when_its_holder_took_it_and_a_beat_when_its_replica_started(
    db_path: Path, clock: FakeClock
) -> None:
    async with await SqliteStore.open(db_path, clock, replica="a") as store:
        taken = clock.now()
        assert await store.hold_lease("scheduler", "a", 15)
        clock.advance(10)
        assert await store.hold_lease("scheduler", "a", 15)
        until = clock.now() + timedelta(seconds=15)
        lease = "SELECT name, holder, acquired_at, expires_at FROM leases"
        assert rows(db_path, lease) == [("scheduler", "a", time_text(taken), time_text(until))]
        # Taken over once expired: the new holder's own time.
        clock.advance(15)
        assert await store.hold_lease("scheduler", "b", 15)
        now = clock.now()
        assert rows(db_path, lease) == [
            ("scheduler", "b", time_text(now), time_text(now + timedelta(seconds=15)))
        ]

        started = clock.now()
        await store.heartbeat("a", started)
        clock.advance(5)
        await store.heartbeat("a", started)
        beats = "SELECT name, started_at, heartbeat_at FROM replicas"
        assert rows(db_path, beats) == [("a", time_text(started), time_text(clock.now()))]
        restarted = clock.now()
        await store.heartbeat("a", restarted)
        assert rows(db_path, beats) == [("a", time_text(restarted), time_text(restarted))]


async def test_the_move_into_each_running_state_records_the_runner(
    db_path: Path, clock: FakeClock, make_alert: Callable[..., Alert], plan: Plan
) -> None:
    async with await SqliteStore.open(db_path, clock, replica="a") as a:
        incident = await open_incident(a, make_alert(), "d-1")
        runner = f"SELECT run_by FROM incidents WHERE id = {incident.id}"
        await a.transition(incident.id, S.OPEN, S.DIAGNOSED, actor="grace", plan=plan)
        assert rows(db_path, runner) == [(None,)]
        await a.transition(incident.id, S.DIAGNOSED, S.APPROVED, actor="grace")
        assert rows(db_path, runner) == [("a",)]
        async with await SqliteStore.open(db_path, clock, replica="b") as b:
            await b.transition(incident.id, S.APPROVED, S.EXECUTING, actor="grace")
            assert rows(db_path, runner) == [("b",)]
            await b.transition(incident.id, S.EXECUTING, S.SAFE_HOLD, actor="grace")
            assert rows(db_path, runner) == [("b",)], "who ran it last is kept"


async def test_a_run_stored_before_replicas_has_no_runner_and_is_orphaned(
    db_path: Path, clock: FakeClock, make_alert: Callable[..., Alert], plan: Plan
) -> None:
    """Migration 019 adds the runner column empty: a heal running at the upgrade has no
    runner, so whichever replica asks first ends it, even one whose peers all beat."""
    async with await SqliteStore.open(db_path, clock, replica="a") as store:
        await store.heartbeat("a", clock.now())
        incident = await open_incident(store, make_alert(), "d-1")
        path = [(S.OPEN, S.DIAGNOSED), (S.DIAGNOSED, S.APPROVED), (S.APPROVED, S.EXECUTING)]
        for expected, new in path:
            await store.transition(incident.id, expected, new, actor="grace", plan=plan)
        assert await store.orphaned_runs("b", 30, own=False) == []
        conn = sqlite3.connect(db_path)
        try:
            with conn:
                conn.execute("UPDATE incidents SET run_by = NULL")  # as migration 019 left it
        finally:
            conn.close()
        [orphan] = await store.orphaned_runs("b", 30, own=False)
        assert orphan.id == incident.id and orphan.state is S.EXECUTING
