"""The storage contract: the same tests for every store, through the ports only.

Each test takes `store` (and, to play a second replica, `replica`): a store
opened by `storage.factory.open_store`, typed as `GraceStore`, once per
implementation in STORES. A test here may use nothing but the ports
(engine/ports.py `Store`, engine/storage_ports.py): no SQL, no file, no
attribute of one store, so that it runs unchanged against the next one.

Adding a store is one entry in STORES and one branch in `_location` (for
PostgreSQL: a fresh database on the session's `pg_server` per test, its URL
as the location); every test then runs against it too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from engine.models import Alert, Incident
from engine.storage_ports import GraceStore
from storage.factory import open_store
from tests.storage.conftest import FakeClock

STORES = [pytest.param("sqlite", id="sqlite")]
"""Every store implementation the contract holds, by name."""


class ContractClock(FakeClock):
    """The tests' clock as the `Clock` port: waiting moves it, nothing sleeps."""

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)


@dataclass
class Database:
    """One throwaway database of one implementation; `open` is one more replica on it."""

    kind: str
    location: str | Path
    clock: ContractClock
    opened: list[GraceStore] = field(default_factory=list)

    async def open(self) -> GraceStore:
        store = await open_store(self.location, self.clock)
        self.opened.append(store)
        return store

    async def close_all(self) -> None:
        while self.opened:
            await self.opened.pop().close()


def _location(kind: str, tmp_path: Path) -> str | Path:
    if kind == "sqlite":
        return tmp_path / "grace.db"
    raise AssertionError(f"no test database for the {kind} store")


@pytest.fixture
def clock() -> ContractClock:
    return ContractClock()


@pytest.fixture(params=STORES)
async def database(
    request: pytest.FixtureRequest, tmp_path: Path, clock: ContractClock
) -> AsyncIterator[Database]:
    db = Database(request.param, _location(request.param, tmp_path), clock)
    try:
        yield db
    finally:
        await db.close_all()


@pytest.fixture
async def store(database: Database) -> GraceStore:
    return await database.open()


@pytest.fixture
async def replica(database: Database, store: GraceStore) -> GraceStore:
    """A second GRACE on the same database (opened after `store`)."""
    return await database.open()


async def open_incident(store: GraceStore, alert: Alert, delivery_key: str) -> Incident:
    """Ingest one alert that must open a new incident, and return that incident."""
    [intake] = await store.ingest_alerts([alert], delivery_key)
    assert intake.opened and intake.incident is not None
    return intake.incident


async def incidents(
    store: GraceStore, make_alert: Callable[..., Alert], n: int, channel: str = "C1"
) -> list[Incident]:
    return [
        await open_incident(store, make_alert(channel=channel), f"{channel}-{k}") for k in range(n)
    ]
