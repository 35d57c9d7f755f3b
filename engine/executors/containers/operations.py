"""The docker executor's operations, declared into one table where they are
written (container.py, compose.py), and what their handlers are given.

Handlers are uniform per table: an action is `(docker, ref, params, until) ->
(ok, detail)`, a check `(docker, ref, params) -> (ok, detail)`, a benchmark
`(docker, ref, params) -> seconds`; `until` is `time.monotonic()`'s.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.executors.containers.daemon import Daemon
from engine.executors.containers.targets import EXECUTOR_NAME, Ref
from engine.executors.plugin import Operations

OPS = Operations(EXECUTOR_NAME)

Answer = tuple[bool, str]
"""An action's or a check's outcome: whether it went well, and what happened."""


@dataclass(frozen=True)
class Docker:
    """What every operation acts through."""

    daemon: Daemon
    compose_files: Mapping[str, Path]
    """Each compose project GRACE may scale, with its file."""
    poll_s: float
    """How often a wait reads the containers again."""
    wait_s: float
    """How long a restart waits for the container to recover, at most."""


@dataclass(frozen=True)
class Kind:
    """One kind of target's snapshot: what it is, taking it, rolling back to it."""

    describe: Callable[[Ref], str]
    snapshot: Callable[[Docker, Ref], Awaitable[tuple[str, dict[str, Any]]]]
    """(location, state) of the target."""
    restore: Callable[[Docker, Ref, Mapping[str, Any]], Awaitable[None]]
    """Roll back to `state`, or raise DockerError saying why not."""
