"""The docker executor: restarts containers and waits for their health, scales compose services.

Targets are `container:NAME` or `compose:PROJECT/SERVICE` (a bare name means a
container). They come from untrusted alert labels, so `resolve_target` checks
their characters and the allowlist before any call is made, and a compose
project must be one the operator configured with its compose file.

`executor` is the executor and its plugin; `container` restarts containers and
waits on them, `compose` scales compose services; `targets` parses and
allowlists targets, `state` reads what the daemon says of a container, and
`daemon` talks to the daemon.
"""

from engine.executors.containers.daemon import DockerError
from engine.executors.containers.executor import PLUGIN, SPEC, DockerConfig, DockerExecutor
from engine.executors.containers.targets import EXECUTOR_NAME, allowlisted, parse_target

__all__ = [
    "EXECUTOR_NAME",
    "PLUGIN",
    "SPEC",
    "DockerConfig",
    "DockerError",
    "DockerExecutor",
    "allowlisted",
    "parse_target",
]
