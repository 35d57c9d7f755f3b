"""The one way a store is opened: `GRACE_DB` in, every storage port out.

`GRACE_DB` is a SQLite file path today. A PostgreSQL URL is refused, saying
so, until the PostgreSQL store exists; it will be one more branch here, and
nothing that uses a store changes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from engine.models import IncidentState
from engine.ports import Clock
from engine.storage_ports import GraceStore
from storage.store import SqliteStore

_POSTGRES = re.compile(r"postgres(?:ql)?(?:\+\w+)?:", re.IGNORECASE)
"""`postgresql://…`, `postgres://…`, `postgresql+driver://…`; a `Path` made of one
has lost a slash (`postgresql:/…`), so only the scheme is looked at."""


class UnsupportedDatabase(ValueError):
    """`GRACE_DB` names a database no store of this GRACE can open."""


class DatabaseMissing(FileNotFoundError):
    """`GRACE_DB` names a database that does not exist, and it was not to be created."""


def sqlite_path(db: str | Path, *, create: bool = True) -> Path:
    """The SQLite file `db` names, or why no store here can open it: a PostgreSQL
    URL is `UnsupportedDatabase` (the message never repeats the URL: it may hold
    a password); with `create=False`, a file that does not exist is `DatabaseMissing`."""
    match = _POSTGRES.match(str(db).strip())
    if match is not None:
        raise UnsupportedDatabase(
            f"GRACE_DB names a PostgreSQL database ({match.group(0)}//…), and this GRACE"
            " has no PostgreSQL store yet: set GRACE_DB to a SQLite file path"
            " (the default is ./grace.db)"
        )
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
) -> GraceStore:
    """Open the store `db` names, its schema brought up to date (see `sqlite_path`
    for what is refused). `on_state` is told each state an incident enters, once
    it is durable. `create=False` is for reading a database that must exist."""
    path = sqlite_path(db, create=create)
    return await SqliteStore.open(path, clock, on_state=on_state)
