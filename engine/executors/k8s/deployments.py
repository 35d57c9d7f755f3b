"""Deployment operations: `kubectl rollout restart` (one pod-template
annotation), a scale through the scale subresource, and judging the rollout as
`kubectl rollout status` does. Nothing is deleted."""

from __future__ import annotations

from kubernetes.aio import client
from kubernetes.aio.client import V1Deployment
from pydantic import Field, model_validator

from engine.executors.common import poll_until
from engine.executors.k8s.connection import Connection, Op
from engine.executors.k8s.operations import OPS, Kube
from engine.executors.k8s.rollout import (
    RESTARTED_AT,
    RolloutStatus,
    replicas,
    restarted_at,
    rfc3339,
    rollout_status,
)
from engine.executors.k8s.targets import DeploymentRef
from engine.ports import Params, TransientError, WaitingParams

_MERGE_PATCH = "application/merge-patch+json"

Answer = tuple[bool, str]


class RolloutRestartParams(Params):
    pass


class ScaleParams(Params):
    replicas: int | None = Field(default=None, ge=0, description="the count to scale to")
    delta: int | None = Field(default=None, description="or how many to add (negative: remove)")
    max_replicas: int = Field(default=50, ge=0, le=10_000)

    @model_validator(mode="after")
    def _one_way(self) -> ScaleParams:
        if (self.replicas is None) == (self.delta is None):
            raise ValueError("give exactly one of replicas or delta")
        if self.delta == 0:
            raise ValueError("delta 0 would change nothing")
        if self.replicas is not None and self.replicas > self.max_replicas:
            raise ValueError(f"replicas {self.replicas} is above max_replicas {self.max_replicas}")
        return self


class RolloutCompleteParams(WaitingParams):
    within_s: float = Field(default=300.0, gt=0, le=3600)


class AvailableReplicasAtLeastParams(Params):
    count: int = Field(ge=0)


# -- actions -----------------------------------------------------------------------


@OPS.actions("rollout_restart", RolloutRestartParams)
async def _restart(
    kube: Kube, ref: DeploymentRef, params: RolloutRestartParams, deployment: V1Deployment
) -> Answer:
    """What `kubectl rollout restart` does: a new template annotation, so
    the Deployment replaces its pods under its own rollout strategy."""
    if deployment.spec and deployment.spec.paused:
        return False, (
            f"refused: deployment {ref} is paused, so a restart would not roll out; "
            f"resume it first (kubectl rollout resume deployment/{ref.name} -n {ref.namespace})"
        )
    stamp = rfc3339(kube.clock.now())
    before = restarted_at(deployment)
    if before == stamp:
        raise TransientError(
            f"deployment {ref} was already restarted at {stamp}: the same annotation "
            "would change nothing; try again in a second"
        )
    patched = await patch_template_annotation(kube.connection, ref, stamp)
    generation = patched.metadata.generation if patched.metadata else None
    return True, (
        f"rollout restart of deployment {ref}: {RESTARTED_AT} set to {stamp} "
        f"(was {before or 'unset'}), generation {generation}; its "
        f"{replicas(deployment)} pods are replaced as the rollout proceeds"
    )


@OPS.actions("scale", ScaleParams)
async def _scale(
    kube: Kube, ref: DeploymentRef, params: ScaleParams, deployment: V1Deployment
) -> Answer:
    current = replicas(deployment)
    wanted = params.replicas if params.replicas is not None else current + (params.delta or 0)
    if wanted < 0:
        return False, (
            f"refused: scaling deployment {ref} by {params.delta:+d} from {current} "
            f"replicas would leave {wanted}"
        )
    if wanted > params.max_replicas:
        return False, (
            f"refused: deployment {ref} would go from {current} to {wanted} replicas, "
            f"above max_replicas {params.max_replicas}"
        )
    if wanted == current:
        return True, f"deployment {ref} already has {current} replicas; nothing changed"
    await patch_replicas(kube.connection, ref, wanted)
    return True, f"scaled deployment {ref} from {current} to {wanted} replicas"


# -- checks ------------------------------------------------------------------------


@OPS.checks("rollout_complete", RolloutCompleteParams)
async def _rollout_complete(
    kube: Kube, ref: DeploymentRef, params: RolloutCompleteParams
) -> Answer:
    """Poll until kubectl would call the rollout done, failed, or time is up."""

    async def read_status() -> RolloutStatus:
        return rollout_status(ref, await read(kube.connection, ref))

    status, _, _ = await poll_until(
        read_status, lambda s: s.done or s.failed, params.within_s, kube.poll_s
    )
    if status.done or status.failed:
        return status.done, status.message
    return False, (
        f"deployment {ref} did not finish rolling out within {params.within_s:g} s: "
        f"{status.message}"
    )


@OPS.checks("available_replicas_at_least", AvailableReplicasAtLeastParams)
async def _available_at_least(
    kube: Kube, ref: DeploymentRef, params: AvailableReplicasAtLeastParams
) -> Answer:
    deployment = await read(kube.connection, ref)
    available = (deployment.status.available_replicas if deployment.status else None) or 0
    shown = f"deployment {ref} has {available} available replicas"
    if available >= params.count:
        return True, f"{shown} >= {params.count}"
    return False, f"{shown} < {params.count}"


# -- API calls -----------------------------------------------------------------------


async def read(connection: Connection, ref: DeploymentRef) -> V1Deployment:
    return await connection.request(
        Op("get", "deployments", ref),
        lambda api: client.AppsV1Api(api).read_namespaced_deployment(ref.name, ref.namespace),
    )


async def patch_template_annotation(
    connection: Connection, ref: DeploymentRef, value: str | None
) -> V1Deployment:
    """A JSON merge patch of the one annotation: None removes it."""
    body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: value}}}}}
    return await connection.request(
        Op("patch", "deployments", ref),
        lambda api: client.AppsV1Api(api).patch_namespaced_deployment(
            ref.name, ref.namespace, body, _content_type=_MERGE_PATCH
        ),
    )


async def patch_replicas(connection: Connection, ref: DeploymentRef, count: int) -> None:
    await connection.request(
        Op("patch", "deployments/scale", ref),
        lambda api: client.AppsV1Api(api).patch_namespaced_deployment_scale(
            ref.name, ref.namespace, {"spec": {"replicas": count}}, _content_type=_MERGE_PATCH
        ),
    )
