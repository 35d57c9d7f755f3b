"""A running GRACE is a replica: it heartbeats under its name, ticks under the
scheduler's lease, and lets the lease go when it stops."""

from __future__ import annotations

import asyncio
import sqlite3

from engine.clock import SystemClock
from storage.factory import open_store
from tests.e2e.conftest import MakeHarness


async def test_a_running_grace_beats_and_holds_the_scheduler_lease_until_it_stops(
    make_harness: MakeHarness,
) -> None:
    h = await make_harness(replica="grace-a", replica_ttl_s=30.0)
    db = h.grace.settings.db
    conn = sqlite3.connect(db)
    try:
        [(name, started, beat)] = conn.execute(
            "SELECT name, started_at, heartbeat_at FROM replicas"
        ).fetchall()
    finally:
        conn.close()
    assert name == "grace-a" and started <= beat, "beating before anything ran"

    other = await open_store(db, SystemClock(), replica="grace-b")
    try:
        async with asyncio.timeout(10):
            while not h.grace.scheduler.holding:  # noqa: ASYNC110 (polled, with a deadline)
                await asyncio.sleep(0.01)
        assert not await other.hold_lease("scheduler", "grace-b", 15), "grace-a ticks"
        await h.grace.scheduler.stop()
        assert await other.hold_lease("scheduler", "grace-b", 15), "let go at the stop"
    finally:
        await other.close()
