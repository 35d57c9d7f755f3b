"""The sqlite executor's table of operations, and what their handlers are given.

Every handler runs in one worker thread (sqlite3 connections are bound to the
thread that made them): an action is `(params, Database, Step) -> (ok, detail)`,
a check `(params, Database) -> (ok, detail)`, a benchmark `(params, Database) ->
seconds`.
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from engine.executors.plugin import Operations
from engine.executors.sqlite.connection import Mode, connect
from engine.executors.sqlite.holders import Holders, open_holders
from engine.models import Snapshot

EXECUTOR_NAME = "sqlite"
OPS = Operations(EXECUTOR_NAME)


@dataclass(frozen=True)
class Database:
    """The database file an operation works on."""

    path: Path
    busy_timeout_s: float
    """How long a connection waits for a lock held elsewhere."""
    query_timeout_s: float
    """How long a check's own query may run."""
    proc_dir: Path
    """Where the process table is mounted, to name who holds the file open."""

    def connect(
        self, mode: Mode, timeout: float | None = None
    ) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return connect(self.path, mode, self.busy_timeout_s if timeout is None else timeout)

    def holders(self) -> Holders:
        return open_holders(self.path, self.proc_dir)


@dataclass(frozen=True)
class Step:
    """What an action is given besides its database."""

    snapshot: Snapshot
    timeout_s: float
    busy_timeout_s: float
    """The lock wait, bounded by the step's timeout too: the busy handler runs in
    the worker thread, which no asyncio deadline can cancel."""
