"""Real SQLite files in tmp_path, a clock the test controls, and model factories."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.models import (
    Alert,
    Diagnosis,
    Incident,
    Plan,
    PlannedBenchmark,
    PlannedCheck,
    PlannedStep,
    Target,
)
from storage.store import SqliteStore

T0 = datetime(2025, 3, 1, 12, 0, 0, 250_000, tzinfo=UTC)


class FakeClock:
    """Time moves only when a test says so, so stored times are predictable."""

    def __init__(self, start: datetime = T0) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        self._now += timedelta(seconds=seconds)
        return self._now


async def open_incident(store: SqliteStore, alert: Alert, delivery_key: str) -> Incident:
    """Ingest one alert that must open a new incident, and return that incident."""
    [intake] = await store.ingest_alerts([alert], delivery_key)
    assert intake.opened and intake.incident is not None
    return intake.incident


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "grace.db"


@pytest.fixture
async def store(db_path: Path, clock: FakeClock) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore.open(db_path, clock)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def make_alert() -> Callable[..., Alert]:
    counter = iter(range(1, 1_000_000))

    def build(**overrides: Any) -> Alert:
        n = next(counter)
        fields: dict[str, Any] = {
            "source": "alertmanager",
            "source_key": f"key-{n}",
            "name": "DiskAlmostFull",
            "severity": "critical",
            # Each alert its own group unless a test says otherwise.
            "labels": {"instance": f"db-{n}", "mountpoint": "/var/lib/app"},
            "annotations": {"summary": "disk 95% full"},
            "text": "Disk on db-1 is *95%* full <!channel>",
            "channel": "C0ALERTS",
            "reporter": None,
            "received_at": T0,
        }
        fields.update(overrides)
        return Alert(**fields)

    return build


@pytest.fixture
def diagnosis() -> Diagnosis:
    return Diagnosis(
        pattern_id="disk-full",
        problem="disk almost full",
        explanation="the mountpoint passed 90% and log files are the largest",
    )


@pytest.fixture
def plan() -> Plan:
    return Plan(
        playbook_id="rotate-logs",
        title="Rotate and compress logs",
        tier=2,
        target=Target(executor="files", name="/var/log/app"),
        steps=(PlannedStep(action="rotate", params={"keep": 5, "compress": True}, timeout_s=30),),
        checks=(PlannedCheck(check="disk_free", params={"min_percent": 20}),),
        benchmarks=(PlannedBenchmark(benchmark="write_1mb", params={}, tolerance=0.25),),
        required_approvals=1,
    )
