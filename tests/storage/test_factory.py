"""`storage.factory.open_store`: the one way a store is opened from GRACE_DB."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.factory import DatabaseMissing, UnsupportedDatabase, open_store, sqlite_path
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
        "postgres://grace:s3cret@db.internal/grace",
        "postgresql+psycopg://grace:s3cret@db.internal/grace",
        " POSTGRESQL://grace:s3cret@db.internal/grace",
        Path("postgresql://grace:s3cret@db.internal/grace"),  # a Path keeps one slash
    ],
)
def test_a_postgresql_url_is_refused_clearly_and_without_its_password(db: str | Path):
    with pytest.raises(UnsupportedDatabase) as refused:
        sqlite_path(db)
    message = str(refused.value)
    assert "PostgreSQL" in message and "no PostgreSQL store yet" in message
    assert "SQLite file path" in message
    assert "s3cret" not in message and "db.internal" not in message


def test_a_file_whose_name_merely_mentions_postgres_is_a_file(tmp_path: Path):
    assert sqlite_path(tmp_path / "postgres.db") == tmp_path / "postgres.db"
