"""The storage contract: the same tests for every store, through the ports only.

Each test takes `store` (and, to play a second replica, `replica`): a store
opened by `storage.factory.open_store`, typed as `GraceStore`, once per
implementation in STORES. A test here may use nothing but the ports
(engine/ports.py `Store`, engine/storage_ports.py): no SQL, no file, no
attribute of one store, so that it runs unchanged against the next one.

Adding a store is one entry in STORES and one branch in `_location`; every
test then runs against it too. PostgreSQL's is a fresh database on the
session's `pg_server` per test, its URL as the location.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

from engine.models import Alert, Incident
from engine.records import OutboxItem
from engine.storage_ports import GraceStore
from storage.factory import open_store
from tests.pg_server import PgServer
from tests.storage.conftest import FakeClock

STORES = [pytest.param("sqlite", id="sqlite"), pytest.param("postgresql", id="postgresql")]
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

    async def open(self, replica: str = "local") -> GraceStore:
        """One more store on the database, writing for the replica named `replica`."""
        store = await open_store(self.location, self.clock, replica=replica)
        self.opened.append(store)
        return store

    async def close_all(self) -> None:
        while self.opened:
            await self.opened.pop().close()


def _location(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    if kind == "sqlite":
        return tmp_path / "grace.db"
    if kind == "postgresql":
        server: PgServer = request.getfixturevalue("pg_server")
        return server.fresh_database()
    raise AssertionError(f"no test database for the {kind} store")


@pytest.fixture
def clock() -> ContractClock:
    return ContractClock()


@pytest.fixture(params=STORES)
async def database(
    request: pytest.FixtureRequest, tmp_path: Path, clock: ContractClock
) -> AsyncIterator[Database]:
    db = Database(request.param, _location(request.param, request, tmp_path), clock)
    try:
        yield db
    finally:
        await db.close_all()


STORE = "grace-1"
REPLICA = "grace-2"
"""The replica names `store` and `replica` write for."""


@pytest.fixture
async def store(database: Database) -> GraceStore:
    return await database.open(STORE)


@pytest.fixture
async def replica(database: Database, store: GraceStore) -> GraceStore:
    """A second GRACE on the same database (opened after `store`)."""
    return await database.open(REPLICA)


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


CLAIMER = "grace-1#test"
"""The worker `claim_all` claims for."""


async def claim_all(
    store: GraceStore, now: datetime, claimer: str = CLAIMER, *, lease_s: float = 60.0
) -> list[OutboxItem]:
    """Claim, as a worker does, each lane's next write due at `now`, at a pace that
    holds nothing back."""
    return await store.claim_outbox(
        claimer, now, rate=1000.0, burst=1000, lease_s=lease_s, limit=1000
    )
