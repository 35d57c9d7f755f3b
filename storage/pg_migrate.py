"""PostgreSQL's schema, brought up to date: the twin of `storage.db.migrate`.

The migrations are `storage/migrations/postgresql/NNN_name.sql`, the same
numbers and names as SQLite's (`storage.db.load_migrations("postgresql")`).
Each file runs as one script (no parameters, so several statements) in one
transaction with its `schema_version` row: a failing migration leaves the
database at the previous version, nothing of it written, and the error names
its file. Replicas starting together migrate once: each takes a session-level
advisory lock (`MIGRATION_LOCK`) first, so the others wait for it and then
find every migration applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import psycopg
from psycopg.pq import TransactionStatus

from storage.db import Migration, load_migrations

DIALECT: Final = "postgresql"

MIGRATION_LOCK: Final = int.from_bytes(b"GRACEMIG", "big")
"""The advisory lock key a migrating session holds ("GRACEMIG", a positive bigint)."""

_SCHEMA_VERSION = """
CREATE TABLE IF NOT EXISTS schema_version (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL
)
"""


class MigrationError(RuntimeError):
    """A migration failed and was rolled back; its file is named, the cause chained."""

    def __init__(self, migration: Migration, cause: BaseException) -> None:
        super().__init__(f"migration {migration_file(migration)} failed: {cause}")
        self.migration = migration


@dataclass(frozen=True)
class MigrationState:
    """What `grace check` tells: the version applied, the newest shipped, the rest to apply."""

    current: int
    newest: int
    pending: tuple[Migration, ...]


def migration_file(migration: Migration) -> str:
    return f"storage/migrations/postgresql/{migration.version:03d}_{migration.name}.sql"


async def migrate_pg(
    conn: psycopg.AsyncConnection[Any], migrations: Sequence[Migration] | None = None
) -> int:
    """Apply every migration not yet applied; return the schema version now.

    `conn` must be outside a transaction (autocommit, or idle): each migration
    commits on its own. `migrations` defaults to the shipped ones; tests pass
    their own.
    """
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise ValueError("migrate_pg needs a connection outside a transaction")
    shipped = _sorted(migrations)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    try:
        async with conn.transaction():
            await conn.execute(_SCHEMA_VERSION)
            applied = set(await applied_versions_pg(conn))
        for migration in shipped:
            if migration.version not in applied:
                await _apply(conn, migration)
        async with conn.transaction():
            return await current_version_pg(conn)
    finally:
        if not conn.closed:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))


async def applied_versions_pg(conn: psycopg.AsyncConnection[Any]) -> list[int]:
    """The versions applied, in order; none when there is no `schema_version` yet."""
    cursor = await conn.execute("SELECT to_regclass('schema_version') IS NOT NULL")
    exists = await cursor.fetchone()
    if exists is None or not exists[0]:
        return []
    cursor = await conn.execute("SELECT version FROM schema_version ORDER BY version")
    return [int(row[0]) for row in await cursor.fetchall()]


async def current_version_pg(conn: psycopg.AsyncConnection[Any]) -> int:
    """The newest version applied, 0 for none."""
    return max(await applied_versions_pg(conn), default=0)


async def migration_state(
    conn: psycopg.AsyncConnection[Any], migrations: Sequence[Migration] | None = None
) -> MigrationState:
    """The applied version, the newest shipped one and the shipped ones not applied."""
    shipped = _sorted(migrations)
    applied = await applied_versions_pg(conn)
    done = set(applied)
    return MigrationState(
        current=max(applied, default=0),
        newest=shipped[-1].version if shipped else 0,
        pending=tuple(m for m in shipped if m.version not in done),
    )


def _sorted(migrations: Sequence[Migration] | None) -> list[Migration]:
    found = load_migrations(DIALECT) if migrations is None else migrations
    return sorted(found, key=lambda m: m.version)


async def _apply(conn: psycopg.AsyncConnection[Any], migration: Migration) -> None:
    try:
        async with conn.transaction():
            # Unprepared and without parameters: sent as one simple query, several statements.
            await conn.execute(migration.sql, prepare=False)
            await conn.execute(
                "INSERT INTO schema_version (version, name, applied_at) VALUES (%s, %s, %s)",
                (migration.version, migration.name, datetime.now(UTC).isoformat()),
            )
    except psycopg.Error as exc:
        raise MigrationError(migration, exc) from exc
