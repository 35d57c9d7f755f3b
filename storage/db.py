"""One way to open the database and one way to bring its schema up to date.

Every connection GRACE opens goes through `connect`, so the pragmas that make
SQLite safe for a bot (WAL for concurrent readers, a busy timeout instead of
instant "database is locked", enforced foreign keys) can never be forgotten.
Transactions are explicit (`isolation_level=None`): the stdlib's implicit
BEGIN/COMMIT would otherwise decide for us where a transaction ends.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

BUSY_TIMEOUT_MS = 5000

_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
    "PRAGMA foreign_keys=ON",
    "PRAGMA synchronous=NORMAL",
)

_MIGRATION_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


async def connect(path: str | Path) -> aiosqlite.Connection:
    """Open `path` with GRACE's pragmas applied and rows addressable by name."""
    conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        for pragma in _PRAGMAS:
            await conn.execute(pragma)
    except BaseException:
        await conn.close()
        raise
    return conn


def connect_sync(path: str | Path) -> sqlite3.Connection:
    """The blocking twin of `connect`, for the group writer's own thread.

    Same pragmas, same explicit transactions, same rows by name: a write
    made through the writer and a read made through `connect` agree on
    everything but the thread they run in.
    """
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        for pragma in _PRAGMAS:
            conn.execute(pragma)
    except BaseException:
        conn.close()
        raise
    return conn


@dataclass(frozen=True)
class Migration:
    """One numbered schema change: `NNN_name.sql`."""

    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        return split_statements(self.sql)


MIGRATION_FOLDERS: dict[str, tuple[str, ...]] = {
    "sqlite": ("migrations",),
    "postgresql": ("migrations", "postgresql"),
}
"""Where each dialect's migrations live, under the `storage` package: SQLite's in
`storage/migrations`, PostgreSQL's (same numbers, same names) in its `postgresql`."""


def load_migrations(dialect: str = "sqlite") -> list[Migration]:
    """The migrations shipped for `dialect` (`MIGRATION_FOLDERS`), sorted by number.

    Read through importlib.resources so they are found in an installed wheel
    as well as in a source checkout.
    """
    try:
        parts = MIGRATION_FOLDERS[dialect]
    except KeyError:
        raise ValueError(f"no migrations for dialect {dialect!r}") from None
    folder = resources.files("storage")
    for part in parts:
        folder = folder / part
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match is None:
            continue
        version = int(match.group(1))
        if version in found:
            raise RuntimeError(f"two migrations numbered {version:03d}: {entry.name}")
        found[version] = Migration(version, match.group(2), entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def split_statements(sql: str) -> list[str]:
    """Cut a script into single statements, keeping trigger bodies whole.

    `executescript` cannot be used: on Python 3.11 it COMMITs any open
    transaction first, which would make a failing migration half-applied.
    sqlite3.complete_statement knows that the `;` inside BEGIN ... END does
    not end a CREATE TRIGGER. One statement per line end, please.
    """
    statements: list[str] = []
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    leftover = [ln for ln in buffer.splitlines() if ln.strip() and not ln.strip().startswith("--")]
    if leftover:
        raise ValueError(f"migration ends with an unterminated statement: {leftover[0]!r}")
    return statements


_SCHEMA_VERSION = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL
)
"""


async def migrate(conn: aiosqlite.Connection, migrations: Sequence[Migration] | None = None) -> int:
    """Apply every migration not yet applied; return the schema version now.

    Each migration and its `schema_version` row commit together or not at
    all, so a failure leaves the database at the previous version. The
    applied check is repeated inside the write transaction, so two processes
    starting at once cannot both apply the same migration. `migrations`
    defaults to the shipped ones; tests pass their own.
    """
    pending = sorted(
        load_migrations() if migrations is None else migrations, key=lambda m: m.version
    )
    await conn.execute(_SCHEMA_VERSION)
    applied = await _applied_versions(conn)
    for migration in pending:
        if migration.version in applied:
            continue
        await _apply(conn, migration)
    return await current_version(conn)


async def current_version(conn: aiosqlite.Connection) -> int:
    async with conn.execute("SELECT MAX(version) FROM schema_version") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row and row[0] is not None else 0


async def _applied_versions(conn: aiosqlite.Connection) -> set[int]:
    async with conn.execute("SELECT version FROM schema_version") as cursor:
        return {int(row[0]) for row in await cursor.fetchall()}


async def _apply(conn: aiosqlite.Connection, migration: Migration) -> None:
    statements = migration.statements()
    await conn.execute("BEGIN IMMEDIATE")
    try:
        if migration.version not in await _applied_versions(conn):
            for statement in statements:
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, datetime.now(UTC).isoformat()),
            )
        await conn.execute("COMMIT")
    except BaseException:
        await rollback_quietly(conn)
        raise


async def rollback_quietly(conn: aiosqlite.Connection) -> None:
    """Roll back whatever is open; "no transaction is active" is not an error here.

    That happens when the failure was the COMMIT itself and SQLite already
    ended the transaction; the original exception is the one worth raising.
    """
    try:
        await conn.execute("ROLLBACK")
    except sqlite3.OperationalError as exc:
        if "no transaction is active" not in str(exc):
            raise


def time_text(value: datetime) -> str:
    """A datetime as fixed-width ISO-8601 UTC text, so text order is time order.

    A naive datetime is taken to be UTC already (the engine's clock is
    tz-aware; this only guards against a stray `datetime.now()`). A sender's
    instant whose UTC time leaves years 1 to 9999 is refused at intake
    (engine/intake/limits.py `in_range`); reaching here it is a ValueError
    that says so, not an OverflowError from deep in a transaction.
    """
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{value.isoformat()} is outside years 1 to 9999 in UTC") from None
    return utc.isoformat(timespec="microseconds")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def dialect_of(conn: Any) -> str:
    """ "sqlite", or the `dialect` a non-SQLite connection wrapper names
    (storage/pg_conn.py: "postgresql"), for the few statements that differ."""
    return str(getattr(conn, "dialect", "sqlite"))
