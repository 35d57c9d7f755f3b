"""The one way a store is opened: `GRACE_DB` in, every storage port out; and the one
way it is looked at without opening it (`survey_store`, for `grace check`: opening
migrates, a check must not).

`GRACE_DB` is a SQLite file path (the embedded default) or a PostgreSQL URL
(`postgresql://user:password@host:5432/db`, for several replicas). Nothing
that uses a store knows which one it got.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import psycopg

from engine.models import IncidentState
from engine.ports import Clock
from engine.records import StoreInfo
from engine.storage_ports import GraceStore
from storage.db import load_migrations
from storage.pg_migrate import current_version_pg
from storage.pg_store import PostgresStore
from storage.store import SqliteStore
from storage.store_core import DEFAULT_REPLICA

_POSTGRES = re.compile(r"postgres(?:ql)?(?:\+\w+)?:", re.IGNORECASE)
"""`postgresql://…`, `postgres://…`, `postgresql+driver://…`; a `Path` made of one
has lost a slash (`postgresql:/…`), so only the scheme is looked at."""


class DatabaseMissing(FileNotFoundError):
    """`GRACE_DB` names a database that does not exist, and it was not to be created."""


class DatabaseUnavailable(ConnectionError):
    """`GRACE_DB` names a PostgreSQL server GRACE could not reach or log in to."""

    @classmethod
    def of(cls, db: str | Path, exc: psycopg.OperationalError) -> DatabaseUnavailable:
        """The server named without the URL's user and password; libpq's own message
        may name the host and user, never the password."""
        return cls(f"GRACE_DB={describe(db)}: {exc}".strip())


def postgres_dsn(db: str | Path) -> str | None:
    """The libpq URL `db` is, or None when it is a SQLite file path.

    A `+driver` suffix (SQLAlchemy's spelling) is dropped: libpq knows the URL
    without it.
    """
    text = str(db).strip()
    match = _POSTGRES.match(text)
    if match is None:
        return None
    rest = text[match.end() :]
    if not rest.startswith("//"):
        rest = "/" + rest  # a Path's single slash
    return "postgresql:" + rest


def describe(db: str | Path) -> str:
    """`db` fit for a log line or a message: a PostgreSQL URL without its user and
    password (`postgresql://host:port/db`), a SQLite path as it is."""
    dsn = postgres_dsn(db)
    if dsn is None:
        return str(db)
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    host = info.get("host", "localhost")
    port = f":{info['port']}" if "port" in info else ""
    return f"postgresql://{host}{port}/{info.get('dbname', '')}"


def sqlite_path(db: str | Path, *, create: bool = True) -> Path:
    """The SQLite file `db` names; with `create=False`, a file that does not
    exist is `DatabaseMissing`."""
    path = Path(db)
    if not create and not path.is_file():
        raise DatabaseMissing(f"GRACE_DB={path}: no such database")
    return path


async def open_store(
    db: str | Path,
    clock: Clock,
    *,
    on_state: Callable[[IncidentState], None] | None = None,
    create: bool = True,
    replica: str = DEFAULT_REPLICA,
) -> GraceStore:
    """Open the store `db` names, its schema brought up to date. `on_state` is
    told each state an incident enters, once it is durable. `create=False` is
    for reading a SQLite database that must exist (a PostgreSQL database always
    must). A server that cannot be reached is `DatabaseUnavailable`, its
    message without the URL's password. `replica` names the `grace run` process
    the store writes for: the runner a move into a running state records."""
    dsn = postgres_dsn(db)
    if dsn is None:
        path = sqlite_path(db, create=create)
        return await SqliteStore.open(path, clock, on_state=on_state, replica=replica)
    try:
        return await PostgresStore.open(dsn, clock, on_state=on_state, replica=replica)
    except psycopg.OperationalError as exc:
        # libpq's messages name the host and user, never the password.
        raise DatabaseUnavailable.of(db, exc) from None


async def survey_store(db: str | Path) -> StoreInfo:
    """The store's kind, where it is, its server and its schema version against the
    newest shipped; `DatabaseUnavailable` when PostgreSQL cannot be reached."""
    dsn = postgres_dsn(db)
    if dsn is None:
        path = Path(db)
        newest = load_migrations()[-1].version
        return StoreInfo("sqlite", str(path), None, _sqlite_version(path), newest)
    newest = load_migrations("postgresql")[-1].version
    try:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            cursor = await conn.execute("SHOW server_version")
            row = await cursor.fetchone()
            current = await current_version_pg(conn)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable.of(db, exc) from None
    server = str(row[0]) if row else "unknown"
    return StoreInfo("postgresql", describe(db), server, current, newest)


def _sqlite_version(path: Path) -> int:
    """The applied version of a SQLite file, read-only; 0 when it does not exist yet."""
    if not path.is_file():
        return 0
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    except sqlite3.OperationalError:  # a file with no schema_version: GRACE never opened it
        return 0
    finally:
        conn.close()
    return int(row[0]) if row and row[0] is not None else 0
