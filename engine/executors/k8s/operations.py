"""The kubernetes executor's operations table, and what each handler is given.

Handlers are declared where they are written (deployments.py): an action is
`(kube, ref, params, deployment) -> (ok, detail)`, given the Deployment as it
was read just before, a check `(kube, ref, params) -> (ok, detail)`.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.executors.k8s.connection import Connection
from engine.executors.k8s.targets import EXECUTOR_NAME
from engine.executors.plugin import Operations
from engine.ports import Clock

OPS = Operations(EXECUTOR_NAME)


@dataclass(frozen=True)
class Kube:
    """What every operation acts through."""

    connection: Connection
    clock: Clock
    poll_s: float
    """How often a wait reads the Deployment again."""
