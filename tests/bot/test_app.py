"""The process wiring in bot/app.py: what runs beside the requests."""

from __future__ import annotations

import os
from datetime import timedelta

from bot.app import chores
from engine.executors.files import FilesExecutor
from engine.models import Target, TargetHold
from tests.engine.fakes import FakeExecutor, FixedClock, MemoryStore


def left(path: str) -> bool:
    return os.path.lexists(path)


async def test_the_quarantine_chore_purges_every_quarantining_executor_but_held_incidents(
    tmp_path,
):
    clock = FixedClock()
    store = MemoryStore(clock)
    files = FilesExecutor(tmp_path / "grace", clock, quarantine_days=1)
    target = Target(executor="files", name=str(tmp_path / "srv"))
    held = await files.snapshot(target, incident_id=3)
    done = await files.snapshot(target, incident_id=4)
    store.held.append(TargetHold(target=target, incident_id=3, reason="t", held_at=clock.now()))
    clock.current += timedelta(days=2)
    # The fake executor has no quarantine: the chore passes it by.
    [purge] = chores({"files": files, "fake": FakeExecutor()}, store)

    await purge()

    assert left(held.location) and not left(done.location)
