"""The kubernetes executor: rollout restart, scale and rollout status of
Deployments, through the official client's asyncio API.

Nothing is deleted: a restart sets one pod-template annotation, as `kubectl
rollout restart` does, and a scale goes through the scale subresource. The
snapshot keeps both values in its state, and rollback puts them back.

`executor` is the executor and its plugin, with snapshot and rollback;
`deployments` declares the operations; `rollout` reads a Deployment as kubectl
does; `targets` resolves deployment and pod targets offline; `connection` talks
to the API server.
"""

from engine.executors.k8s.connection import ConfigSource, KubernetesRefused, find_config
from engine.executors.k8s.executor import PLUGIN, SPEC, KubernetesConfig, KubernetesExecutor
from engine.executors.k8s.targets import EXECUTOR_NAME

__all__ = [
    "EXECUTOR_NAME",
    "PLUGIN",
    "SPEC",
    "ConfigSource",
    "KubernetesConfig",
    "KubernetesExecutor",
    "KubernetesRefused",
    "find_config",
]
