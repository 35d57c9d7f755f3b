"""The service executor's operations table, and what each handler is given.

Handlers are declared where they are written (health.py, log_level.py):
an action is `(params, service, snapshot) -> (ok, detail)`, a check
`(params, service) -> (ok, detail)`, a benchmark `(params, service) -> seconds`.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.executors.plugin import Operations
from engine.executors.service.client import ServiceHttp
from engine.executors.service.config import ServiceConfig

EXECUTOR_NAME = "service"

OPS = Operations(EXECUTOR_NAME)


@dataclass(frozen=True)
class Service:
    """The service an operation works on: its name, what the operator configured
    for it and the way to reach it."""

    name: str
    config: ServiceConfig
    http: ServiceHttp
