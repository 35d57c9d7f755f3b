"""What a kubernetes target is: `deployment:NAMESPACE/NAME`, or a crash-looping
`pod:NAMESPACE/POD`, which resolves offline to the Deployment that owns it by
the name its ReplicaSet gave it (DEPLOYMENT-HASH-SUFFIX). The target, its
allowlist entry, its hold and its breaker are then the Deployment's, which is
what a restart acts on, and a pod replaced by that very restart cannot leave
the target dangling."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from engine.executors.common import name_matches, not_allowlisted, refused
from engine.models import Target
from engine.ports import TargetRefused

EXECUTOR_NAME = "kubernetes"

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_NAMESPACE = re.compile(_DNS_LABEL)
_NAME = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")
# The alphabet of pod-template hashes and generated name suffixes (k8s rand.SafeEncodeString).
_SAFE = "bcdfghjklmnpqrstvwxz2456789"
_DEPLOYMENT_POD = re.compile(rf"(?P<deployment>.+)-[{_SAFE}]{{1,10}}-[{_SAFE}]{{5}}")


@dataclass(frozen=True)
class DeploymentRef:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def resolve(value: str, allowlist: Sequence[str]) -> Target:
    """Offline: the shape of the name and the allowlist. Whether the
    namespace and Deployment exist is for the first call to say."""
    if not allowlist:
        raise refused(EXECUTOR_NAME, value, "no kubernetes targets are allowlisted")
    kind, _, scoped = value.partition(":")
    namespace, _, name = scoped.partition("/")
    if kind not in ("deployment", "pod"):
        raise refused(
            EXECUTOR_NAME,
            value,
            "the kind must be deployment or pod "
            f"(deployment:NAMESPACE/NAME or pod:NAMESPACE/POD), not {kind!r}",
        )
    if not _valid(_NAMESPACE, namespace, 63):
        raise refused(EXECUTOR_NAME, value, f"{namespace!r} is not a valid namespace name")
    if not _valid(_NAME, name, 253):
        raise refused(EXECUTOR_NAME, value, f"{name!r} is not a valid {kind} name")
    owner = name if kind == "deployment" else _owner(value, namespace, name)
    resolved = f"deployment:{namespace}/{owner}"
    if not any(name_matches(resolved, pattern) for pattern in allowlist):
        if kind == "pod":  # named by the Deployment it resolves to, as the allowlist is
            raise TargetRefused(
                f"kubernetes target {resolved!r} (the Deployment of pod {namespace}/{name}) "
                "is not in the kubernetes allowlist"
            )
        raise not_allowlisted(EXECUTOR_NAME, resolved)
    return Target(executor=EXECUTOR_NAME, name=resolved)


def deployment_ref(target: Target) -> DeploymentRef:
    """Targets only come from resolve_target, always as deployment:NAMESPACE/NAME."""
    kind, _, scoped = target.name.partition(":")
    namespace, _, name = scoped.partition("/")
    if kind != "deployment" or not namespace or not name:
        raise ValueError(f"kubernetes target {target.name!r} is not deployment:NAMESPACE/NAME")
    return DeploymentRef(namespace, name)


def _owner(value: str, namespace: str, pod: str) -> str:
    """The Deployment a pod's generated name says owns it."""
    match = _DEPLOYMENT_POD.fullmatch(pod)
    if match is None or not _valid(_NAME, match["deployment"], 253):
        raise refused(
            EXECUTOR_NAME,
            value,
            f"pod {namespace}/{pod} is not named like a Deployment's pod "
            "(DEPLOYMENT-HASH-SUFFIX); GRACE only restarts Deployments, not bare pods, "
            "StatefulSets or Jobs",
        )
    return match["deployment"]


def _valid(pattern: re.Pattern[str], value: str, limit: int) -> bool:
    return 0 < len(value) <= limit and pattern.fullmatch(value) is not None
