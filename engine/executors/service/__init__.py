"""The service executor (executor.py), split along its seams: the operator's
config (config.py), talking to a service (client.py), its health (health.py),
its log level and reload (log_level.py) and editing its config file
(config_edit.py)."""

from engine.executors.service.config import ServiceConfig, ServicesConfig
from engine.executors.service.config_edit import ServiceError
from engine.executors.service.executor import PLUGIN, SPEC, ServiceExecutor
from engine.executors.service.operations import EXECUTOR_NAME, OPS

__all__ = [
    "EXECUTOR_NAME",
    "OPS",
    "PLUGIN",
    "SPEC",
    "ServiceConfig",
    "ServiceError",
    "ServiceExecutor",
    "ServicesConfig",
]
