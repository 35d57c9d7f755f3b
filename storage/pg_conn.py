"""PostgreSQL connections that speak the DB-API the row modules are written for.

Every row module (storage/*.py) runs its SQL on a stdlib `sqlite3` connection
in the group writer's thread, or on aiosqlite's for reads: `?` placeholders,
rows addressable by index and by name, sqlite3's exceptions. The PostgreSQL
store runs the same functions, so a statement is written once and both stores
obey the same contract. These wrappers make a psycopg connection look like
those two: placeholders are rewritten, rows come back as `PgRow`, integers
stay integers (PostgreSQL's SUM of a BIGINT is NUMERIC), and errors are raised
as the sqlite3 class the row code already handles (a unique violation is an
`IntegrityError` in both). Where the SQL itself must differ, a row module asks
`storage.db.dialect_of(conn)`.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Final

import psycopg
from psycopg import errors as pg_errors
from psycopg.adapt import Loader
from psycopg.pq import TransactionStatus

DIALECT: Final = "postgresql"

_NUMERIC_OID = 1700


class PgRow:
    """One result row, by position or by column name, as `sqlite3.Row` is."""

    __slots__ = ("_index", "_values")

    def __init__(self, values: Sequence[Any], index: Mapping[str, int]) -> None:
        self._values = tuple(values)
        self._index = index

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            return self._values[self._index[key]]
        return self._values[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PgRow):
            return self._values == other._values
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def keys(self) -> list[str]:
        return list(self._index)

    def __repr__(self) -> str:
        return f"PgRow({dict(zip(self._index, self._values, strict=True))!r})"


def _row_factory(cursor: Any) -> Callable[[Sequence[Any]], PgRow]:
    names = [column.name for column in cursor.description or ()]
    index = {name: position for position, name in enumerate(names)}
    return lambda values: PgRow(values, index)


class _WholeNumbersLoader(Loader):
    """NUMERIC as `int` when it is whole, else `float`: what SQLite hands back."""

    def load(self, data: Any) -> int | float:
        text = bytes(data).decode("ascii")
        if "." in text or "e" in text.lower() or text in ("NaN", "Infinity", "-Infinity"):
            return float(text)
        return int(text)


@functools.lru_cache(maxsize=2048)
def translate(sql: str) -> tuple[str, bool]:
    """`?` placeholders to psycopg's `%s` (and a literal `%` to `%%`), outside quotes;
    True when the statement numbers them (`?1`), which become named `%(p1)s`.

    A `?` inside a string literal or a quoted name is text, not a placeholder.
    """
    out: list[str] = []
    quote: str | None = None
    numbered = False
    position, end = 0, len(sql)
    while position < end:
        char = sql[position]
        position += 1
        if quote is not None:
            if char == quote:
                quote = None
            out.append("%%" if char == "%" else char)
        elif char in ("'", '"'):
            quote = char
            out.append(char)
        elif char == "?":
            digits = position
            while digits < end and sql[digits].isdigit():
                digits += 1
            if digits > position:
                numbered = True
                out.append(f"%(p{sql[position:digits]})s")
                position = digits
            else:
                out.append("%s")
        elif char == "%":
            out.append("%%")
        else:
            out.append(char)
    return "".join(out), numbered


def statement(sql: str, params: Sequence[Any] | None) -> tuple[str, Any]:
    """The query and arguments psycopg is given for `sql` and its `?` parameters.

    Without parameters the text goes as it is (psycopg then reads no `%`).
    SQLite stores booleans as 0/1 integers, and so do GRACE's PostgreSQL columns.
    """
    if not params:
        return sql, None
    text, numbered = translate(sql)
    values = tuple(int(p) if isinstance(p, bool) else p for p in params)
    if numbered:
        return text, {f"p{number}": value for number, value in enumerate(values, start=1)}
    return text, values


_INTEGRITY: tuple[type[Exception], ...] = (pg_errors.IntegrityError, pg_errors.RaiseException)
"""Constraint violations, and a trigger's RAISE (SQLite's RAISE(ABORT) is one too)."""


@contextmanager
def as_sqlite_errors() -> Iterator[None]:
    """Raise psycopg's errors as the sqlite3 classes the row modules handle."""
    try:
        yield
    except _INTEGRITY as exc:
        raise sqlite3.IntegrityError(str(exc)) from exc
    except (pg_errors.OperationalError, pg_errors.InternalError) as exc:
        raise sqlite3.OperationalError(str(exc)) from exc
    except psycopg.Error as exc:
        raise sqlite3.DatabaseError(str(exc)) from exc


def prepare(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
    """Rows as `PgRow`, NUMERIC as int or float, on a new connection."""
    conn.row_factory = _row_factory
    conn.adapters.register_loader(_NUMERIC_OID, _WholeNumbersLoader)


class PgCursor:
    """A finished statement's rows and counts, the `sqlite3.Cursor` way."""

    def __init__(self, cursor: psycopg.Cursor[Any]) -> None:
        self._cursor = cursor

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def description(self) -> Any:
        return self._cursor.description

    def fetchone(self) -> Any:
        with as_sqlite_errors():
            return self._cursor.fetchone() if self._cursor.description else None

    def fetchall(self) -> list[Any]:
        with as_sqlite_errors():
            return self._cursor.fetchall() if self._cursor.description else []

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class PgConnection:
    """A synchronous psycopg connection with the `sqlite3.Connection` methods GRACE uses.

    Autocommit is on so that, as with SQLite's `isolation_level=None`, the
    group writer's own BEGIN, SAVEPOINT and COMMIT are the transaction.
    """

    dialect: Final = DIALECT

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    @classmethod
    def connect(cls, dsn: str) -> PgConnection:
        conn = psycopg.connect(dsn, autocommit=True)
        prepare(conn)
        return cls(conn)

    @property
    def lost(self) -> bool:
        """The server connection is gone: nothing more can run on it."""
        return self._conn.closed or self._conn.broken

    @property
    def in_transaction(self) -> bool:
        # INERROR: a statement failed, the transaction (and its savepoints) still open.
        status = self._conn.info.transaction_status
        return status in (TransactionStatus.INTRANS, TransactionStatus.INERROR)

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> PgCursor:
        with as_sqlite_errors():
            cursor = self._conn.execute(*statement(sql, params))
        return PgCursor(cursor)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> PgCursor:
        cursor = self._conn.cursor()
        batch = [statement(sql, row) for row in rows]
        if batch:
            with as_sqlite_errors():
                cursor.executemany(batch[0][0], [args for _, args in batch])
        return PgCursor(cursor)

    def close(self) -> None:
        self._conn.close()


class AsyncPgCursor:
    """A statement's rows on the read connection, the aiosqlite way."""

    def __init__(self, cursor: psycopg.AsyncCursor[Any]) -> None:
        self._cursor = cursor

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    async def fetchone(self) -> Any:
        with as_sqlite_errors():
            return await self._cursor.fetchone() if self._cursor.description else None

    async def fetchall(self) -> list[Any]:
        with as_sqlite_errors():
            return await self._cursor.fetchall() if self._cursor.description else []

    async def __aiter__(self) -> AsyncIterator[Any]:
        for row in await self.fetchall():
            yield row


class _Pending:
    """What aiosqlite's `execute` returns: awaitable, and an async context manager."""

    def __init__(self, conn: psycopg.AsyncConnection[Any], sql: str, params: Any) -> None:
        self._conn, self._sql, self._params = conn, sql, params

    async def _run(self) -> AsyncPgCursor:
        with as_sqlite_errors():
            cursor = await self._conn.execute(*_read_statement(self._sql, self._params))
        return AsyncPgCursor(cursor)

    def __await__(self) -> Any:
        return self._run().__await__()

    async def __aenter__(self) -> AsyncPgCursor:
        return await self._run()

    async def __aexit__(self, *exc: object) -> None:
        return None


def _read_statement(sql: str, params: Sequence[Any] | None) -> tuple[str, Any]:
    # A read transaction sees one snapshot, as a SQLite read transaction in WAL does.
    if sql.strip().upper() == "BEGIN":
        return "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", None
    return statement(sql, params)


class AsyncPgConnection:
    """A pooled psycopg connection with the aiosqlite methods the readers use."""

    dialect: Final = DIALECT

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> _Pending:
        return _Pending(self._conn, sql, params)
