"""Other processes on a test's SQLite file: a database is shared with the app
that owns it, so what GRACE does to it is tested against real readers, writers
and crashes in processes of their own."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Holds a read transaction (a WAL snapshot) open on argv[1] until told to end.
READER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN")
conn.execute("SELECT count(*) FROM " + sys.argv[2]).fetchone()
print("reading", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
conn.close()
"""


@contextlib.contextmanager
def other_process(args: list[str], ready: str, **popen: Any) -> Iterator[subprocess.Popen[str]]:
    """A child process, waited on until it prints `ready` (not a sleep); told
    to finish through a line on its stdin, unless the test killed it."""
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, **popen)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == ready
        yield proc
    finally:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write("\n")
            proc.stdin.close()
        returncode = proc.wait(timeout=30)
        assert returncode in (0, -9), returncode


def python(script: str, *args: object) -> list[str]:
    return [sys.executable, "-c", script, *map(str, args)]


def reader_in_other_process(
    db: Path, table: str
) -> contextlib.AbstractContextManager[subprocess.Popen[str]]:
    """Another process holding an open read transaction on `db` (it read `table`)
    until it ends: a TRUNCATE checkpoint must wait for it."""
    return other_process(python(READER, db, table), "reading")
