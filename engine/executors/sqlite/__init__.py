"""The sqlite executor: real operations on real database files.

Alert labels name the database, so every path is untrusted until
`resolve_target` has matched its realpath against the configured allowlist.
Every blocking sqlite3 call runs in `asyncio.to_thread`; each operation opens
its own connection (with a busy timeout, so a lock held elsewhere waits instead
of failing at once), does its work in that one worker thread and closes it,
because sqlite3 connections are bound to the thread that made them.

A lock held elsewhere is never forced: the executor raises TransientError
naming the processes that hold the database open (from /proc), so the engine
retries later. It kills nothing and deletes no -wal or -shm file: committed
data only ever leaves the WAL through a checkpoint.

`executor` resolves targets, takes snapshots and dispatches; `maintenance`
holds checkpoints, VACUUM, the checks and the benchmark; `locks` who holds a
lock and recovery from a stale one; `connection` and `snapshots` the helpers.
"""

from engine.executors.sqlite.executor import PLUGIN, SPEC, SqliteExecutor
from engine.executors.sqlite.maintenance import vacuum_space_problem
from engine.executors.sqlite.operations import EXECUTOR_NAME

__all__ = ["EXECUTOR_NAME", "PLUGIN", "SPEC", "SqliteExecutor", "vacuum_space_problem"]
