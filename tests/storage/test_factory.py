"""`storage.factory.open_store`: the one way a store is opened from GRACE_DB."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.factory import (
    DatabaseMissing,
    DatabaseUnavailable,
    describe,
    open_store,
    postgres_dsn,
    sqlite_path,
)
from tests.pg_server import DB_USER, PgServer
from tests.storage.conftest import FakeClock


async def test_a_file_path_opens_a_store_creating_the_file(tmp_path: Path, clock: FakeClock):
    store = await open_store(str(tmp_path / "grace.db"), clock)
    try:
        assert await store.outbox_pending() == 0
    finally:
        await store.close()
    again = await open_store(tmp_path / "grace.db", clock, create=False)
    await again.close()


async def test_a_missing_database_is_not_created_when_it_must_exist(
    tmp_path: Path, clock: FakeClock
):
    with pytest.raises(DatabaseMissing, match="no such database"):
        await open_store(tmp_path / "nope.db", clock, create=False)
    assert not (tmp_path / "nope.db").exists()


@pytest.mark.parametrize(
    "db",
    [
        "postgresql://grace:s3cret@db.internal:5432/grace",
        "postgres://grace:s3cret@db.internal:5432/grace",
        "postgresql+psycopg://grace:s3cret@db.internal:5432/grace",
        " POSTGRESQL://grace:s3cret@db.internal:5432/grace",
        Path("postgresql://grace:s3cret@db.internal:5432/grace"),  # a Path keeps one slash
    ],
)
def test_a_postgresql_url_is_read_whole_and_described_without_its_secrets(db: str | Path):
    dsn = postgres_dsn(db)
    assert dsn is not None and dsn.lower() == "postgresql://grace:s3cret@db.internal:5432/grace"
    assert describe(db) == "postgresql://db.internal:5432/grace"


def test_a_file_whose_name_merely_mentions_postgres_is_a_file(tmp_path: Path):
    assert postgres_dsn(tmp_path / "postgres.db") is None
    assert sqlite_path(tmp_path / "postgres.db") == tmp_path / "postgres.db"


async def test_a_postgresql_url_opens_the_postgresql_store(pg_server: PgServer, clock: FakeClock):
    store = await open_store(pg_server.fresh_database(), clock)
    try:
        assert type(store).__name__ == "PostgresStore"
        assert await store.outbox_pending() == 0
    finally:
        await store.close()


async def test_a_server_that_refuses_is_named_without_the_password(
    pg_server: PgServer, clock: FakeClock
):
    wrong = pg_server.dsn.replace(f"{DB_USER}:", f"{DB_USER}x:", 1)  # no such user
    with pytest.raises(DatabaseUnavailable) as refused:
        await open_store(wrong, clock)
    message = str(refused.value)
    assert message.startswith(f"GRACE_DB=postgresql://127.0.0.1:{pg_server.port}/")
    password = wrong.split(":")[2].split("@")[0]
    assert password not in message
