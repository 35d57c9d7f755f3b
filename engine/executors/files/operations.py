"""The files executor's table of operations, and what their handlers are given.

An action is `(params, Step) -> detail`, a check `(params, root) -> (ok, detail)`,
a benchmark `(params, root) -> seconds`; each runs in a worker thread, and the
executor has made sure `root` is still the directory it resolved.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.executors.files.quarantine import Recorder
from engine.executors.plugin import Operations
from engine.ports import Clock

EXECUTOR_NAME = "files"
OPS = Operations(EXECUTOR_NAME)


@dataclass(frozen=True)
class Step:
    """What an action works on: its tree, and the recorder of every change it
    makes there (into the step's quarantine folder)."""

    root: Path
    changes: Recorder
    clock: Clock
    quarantine_days: float
    """How long what the step moves into the quarantine stays there."""
