"""The kill switch survives restarts and every pull of it is audited."""

from __future__ import annotations

from pathlib import Path

from engine.models import Pause
from storage.store import SqliteStore
from tests.storage.conftest import FakeClock


async def test_a_pause_survives_a_restart_and_both_pulls_are_audited(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "grace.db"
    store = await SqliteStore.open(path, clock)
    assert await store.paused() is None
    pause = Pause(by="U0LEAD", reason="db migration", at=clock.now())
    await store.set_pause(pause, actor="U0LEAD")
    await store.close()

    store = await SqliteStore.open(path, clock)
    try:
        assert await store.paused() == pause
        await store.set_pause(None, actor="U0LEAD2")
        assert await store.paused() is None
        entries = await store.audit_entries()
        assert [(e.actor, e.action) for e in entries] == [
            ("U0LEAD", "grace.paused"),
            ("U0LEAD2", "grace.resumed"),
        ]
        assert entries[0].detail == {"reason": "db migration"}
        assert (await store.verify_audit()).ok
    finally:
        await store.close()
