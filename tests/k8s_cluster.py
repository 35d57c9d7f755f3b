"""A Kubernetes API on loopback for the kubernetes executor's tests: kmock's
emulator, taught the little of the API server that rollouts depend on, and a
fake deployment controller that fills in `status` as a real one would.

The emulator only stores JSON; a real API server also bumps
`metadata.generation` when a spec changes, serves the scale subresource as a
Scale and serves namespaces by name. `Cluster` adds exactly that, plus faults
injected before anything is changed (a real 403 changes nothing either).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import kmock
import pytest
import yaml

DEPLOYMENTS = kmock.resource("apps/v1/deployments")
NAMESPACES = kmock.resource("v1/namespaces")
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
NAMESPACE = "shop"


@dataclass
class Fault:
    """An error the API answers once to a matching request, before it changes anything."""

    method: str
    path: str
    status: int
    reason: str
    message: str


@attrs.define(kw_only=True)
class Cluster(kmock.KubernetesEmulator):
    """kmock's Kubernetes emulator with what an API server adds for Deployments."""

    changed: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)
    """Set after every write, so the controller reacts as a watch would make it."""
    faults: list[Fault] = attrs.field(factory=list, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # The client asks for /version/, which the API server serves like /version.
        self.fallback["get /version/"] << self._serve_server_version

    def add_namespace(self, name: str) -> None:
        self.objects[NAMESPACES, None, name] = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "uid": f"ns-{name}"},
            "status": {"phase": "Active"},
        }

    def add_deployment(
        self,
        namespace: str,
        name: str,
        *,
        replicas: int = 3,
        restarted_at: str | None = None,
        paused: bool = False,
    ) -> None:
        """A Deployment whose rollout finished: every replica updated and available."""
        annotations = {} if restarted_at is None else {RESTARTED_AT: restarted_at}
        labels = {"app": name}
        self.objects[DEPLOYMENTS, namespace, name] = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": f"uid-{namespace}-{name}",
                "generation": 1,
            },
            "spec": {
                "replicas": replicas,
                "paused": paused,
                "progressDeadlineSeconds": 600,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels, "annotations": annotations},
                    "spec": {"containers": [{"name": name, "image": f"registry.example/{name}:1"}]},
                },
            },
            "status": {
                "observedGeneration": 1,
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": replicas,
                "availableReplicas": replicas,
            },
        }

    def deployment(self, namespace: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.objects[DEPLOYMENTS, namespace, name].raw)

    def fail(self, method: str, path: str, status: int, reason: str, message: str) -> None:
        self.faults.append(Fault(method.upper(), path, status, reason, message))

    def writes(self) -> list[str]:
        """`METHOD path` of every request that could change something."""
        return [
            f"{r.method.value} {r.url.path}"
            for r in self
            if r.method.value in ("POST", "PUT", "PATCH", "DELETE")
        ]

    def reads_of(self, namespace: str, name: str) -> int:
        path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"
        return sum(1 for r in self if r.method.value == "GET" and r.url.path == path)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        fault = self._fault_for(request)
        if fault is not None:
            raise kmock.KubernetesError(
                status=fault.status, reason=fault.reason, message=fault.message
            )
        try:
            return await super()._handle(request)
        finally:
            if request.method.value in ("POST", "PUT", "PATCH", "DELETE"):
                self.changed.set()

    def _fault_for(self, request: kmock.Request) -> Fault | None:
        for fault in self.faults:
            if fault.method == request.method.value and fault.path == request.url.path:
                self.faults.remove(fault)
                return fault
        return None

    async def _serve_list(self, request: kmock.Request) -> Any:
        # kmock reads /api/v1/namespaces/NAME as "a list in namespace NAME".
        if request.resource is not None and request.resource.plural is None and request.namespace:
            key = (NAMESPACES, None, request.namespace)
            if key not in self.objects or self.objects[key].deleted:
                raise kmock.KubernetesObjectNotFoundError()
            return self.objects[key].raw
        return await super()._serve_list(request)

    async def _serve_fetch(self, request: kmock.Request) -> Any:
        return _scale_view(request, await super()._serve_fetch(request))

    async def _serve_update(self, request: kmock.Request) -> Any:
        if request.resource == DEPLOYMENTS and request.subresource in (None, "scale"):
            self._bump_generation(self.objects[DEPLOYMENTS, request.namespace, request.name])
        return _scale_view(request, await super()._serve_update(request))

    @staticmethod
    def _bump_generation(obj: kmock.Object) -> None:
        """Called once the emulator applied a patch, before it answers: when
        the spec changed, bump metadata.generation, as the API server does."""
        versions = [v.raw for v in obj.history if v is not None]
        before, after = versions[-2], versions[-1]
        if before["spec"] != after["spec"]:
            obj.patch({"metadata": {"generation": before["metadata"]["generation"] + 1}})


def _scale_view(request: kmock.Request, deployment: Any) -> Any:
    """The scale subresource answers a Scale, not the Deployment."""
    if request.subresource != "scale":
        return deployment
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {k: deployment["metadata"][k] for k in ("name", "namespace", "uid")},
        "spec": {"replicas": deployment["spec"].get("replicas", 1)},
        "status": {
            "replicas": deployment.get("status", {}).get("replicas", 0),
            "selector": ",".join(
                f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items()
            ),
        },
    }


# -- the fake deployment controller ---------------------------------------------


class Mode(StrEnum):
    HEALTHY = "healthy"
    """New pods start and become available; old ones go; the rollout completes."""
    STUCK = "stuck"
    """New pods are created but never become available; old ones stay."""
    DEADLINE_EXCEEDED = "deadline-exceeded"
    """As stuck, and Progressing turns False with reason ProgressDeadlineExceeded."""


@dataclass
class Pods:
    """What one Deployment runs, as its ReplicaSets would say."""

    template: str
    old: int
    """available pods of earlier templates, still running"""
    new: int
    """pods of the current template"""
    ready: int
    """of those, available"""


class FakeController:
    """Advances every Deployment's status one pod at a time, like the
    deployment controller would, in the mode the test sets."""

    def __init__(self, cluster: Cluster, mode: Mode = Mode.HEALTHY) -> None:
        self.cluster = cluster
        self.mode = mode
        self._pods: dict[tuple[str, str], Pods] = {}

    def set_mode(self, mode: Mode) -> None:
        self.mode = mode
        self.cluster.changed.set()

    async def run(self) -> None:
        while True:
            await self.cluster.changed.wait()
            self.cluster.changed.clear()
            if any([self._reconcile(obj) for obj in self._deployments()]):
                self.cluster.changed.set()
            # One pod per turn of the event loop: clients see the rollout progress.
            await asyncio.sleep(0)

    def _deployments(self) -> list[kmock.Object]:
        return [
            obj
            for (resource, _, _), obj in self.cluster.objects.items()
            if resource == DEPLOYMENTS and not obj.deleted
        ]

    def _reconcile(self, obj: kmock.Object) -> bool:
        """One step of the rollout; True when the status changed."""
        raw = obj.raw
        meta, spec = raw["metadata"], raw["spec"]
        desired = spec.get("replicas", 1)
        template = pod_template_hash(spec["template"])
        key = (meta["namespace"], meta["name"])
        pods = self._pods.setdefault(key, _running(obj))
        if pods.template != template:
            # A new ReplicaSet: the available pods of the earlier ones become old.
            pods.template, pods.old, pods.new, pods.ready = template, pods.old + pods.ready, 0, 0
        if pods.new != desired:
            pods.new += 1 if pods.new < desired else -1
            pods.ready = min(pods.ready, pods.new)
        elif self.mode is Mode.HEALTHY and pods.ready < pods.new:
            pods.ready += 1
        elif self.mode is Mode.HEALTHY and pods.old:
            pods.old -= 1
        status = self._status(meta, pods, desired, f"{meta['name']}-{template}")
        if raw.get("status") == status:
            return False
        obj.patch({"status": status})
        return True

    def _status(
        self, meta: dict[str, Any], pods: Pods, desired: int, replica_set: str
    ) -> dict[str, Any]:
        total, available = pods.old + pods.new, pods.old + pods.ready
        done = pods.new == desired and pods.ready == pods.new and pods.old == 0
        if done:
            progressing = ("True", "NewReplicaSetAvailable", "has successfully progressed")
        elif self.mode is Mode.DEADLINE_EXCEEDED:
            progressing = ("False", "ProgressDeadlineExceeded", "has timed out progressing")
        else:
            progressing = ("True", "ReplicaSetUpdated", "is progressing")
        status, reason, what = progressing
        if available >= desired:
            minimum = ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        else:
            minimum = (
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )
        return {
            "observedGeneration": meta["generation"],
            "replicas": total,
            "updatedReplicas": pods.new,
            "readyReplicas": available,
            "availableReplicas": available,
            "unavailableReplicas": total - available,
            "conditions": [
                _condition("Available", *minimum),
                _condition("Progressing", status, reason, f'ReplicaSet "{replica_set}" {what}.'),
            ],
        }


def _condition(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
    return {"type": kind, "status": status, "reason": reason, "message": message}


def _running(obj: kmock.Object) -> Pods:
    """What a Deployment first seen runs: every pod of the spec its status last observed."""
    observed = obj.raw.get("status", {}).get("observedGeneration")
    seen = [v.raw for v in obj.history if v is not None]
    spec = next(
        (v["spec"] for v in reversed(seen) if v["metadata"].get("generation") == observed),
        obj.raw["spec"],
    )
    replicas = spec.get("replicas", 1)
    return Pods(pod_template_hash(spec["template"]), old=0, new=replicas, ready=replicas)


def pod_template_hash(template: dict[str, Any]) -> str:
    """A stable hash of a pod template, spelt as Kubernetes spells them."""
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    number = str(int.from_bytes(digest[:4], "big"))
    return "".join(SAFE_ALPHABET[ord(c) % len(SAFE_ALPHABET)] for c in number)


def pod_name(deployment: dict[str, Any], suffix: str = "x2w9z") -> str:
    """The name the Deployment's current ReplicaSet gives its pods."""
    template = pod_template_hash(deployment["spec"]["template"])
    return f"{deployment['metadata']['name']}-{template}-{suffix}"


def write_kubeconfig(path: Path, server: str, context: str = "emulator") -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "kmock", "cluster": {"server": server}}],
                "users": [{"name": "grace", "user": {"token": "not-a-real-token"}}],
                "contexts": [
                    {
                        "name": context,
                        "context": {"cluster": "kmock", "user": "grace", "namespace": NAMESPACE},
                    }
                ],
                "current-context": context,
            }
        )
    )
    return path


# -- fixtures --------------------------------------------------------------------


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    """The emulator on 127.0.0.1 (a free port), with namespace `shop` and two Deployments."""
    async with Cluster() as emulator, kmock.Server(emulator):
        emulator.add_namespace(NAMESPACE)
        emulator.add_deployment(NAMESPACE, "cart", replicas=3)
        emulator.add_deployment(
            NAMESPACE, "checkout", replicas=2, restarted_at="2026-11-01T08:00:00Z"
        )
        yield emulator


@pytest.fixture
async def controller(cluster: Cluster) -> AsyncIterator[FakeController]:
    fake = FakeController(cluster)
    task = asyncio.create_task(fake.run())
    try:
        yield fake
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
def kubeconfig(cluster: Cluster, tmp_path: Path) -> Path:
    return write_kubeconfig(tmp_path / "kubeconfig", str(cluster.url).rstrip("/"))
