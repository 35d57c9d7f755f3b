"""A Deployment as kubectl reads it: its replica count, its restartedAt
annotation, and `rollout status`'s verdict on it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from kubernetes.aio import client
from kubernetes.aio.client import V1Deployment

from engine.executors.common import utc
from engine.executors.k8s.targets import DeploymentRef

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
TIMED_OUT = "ProgressDeadlineExceeded"


@dataclass(frozen=True)
class RolloutStatus:
    done: bool
    failed: bool
    message: str


def rollout_status(ref: DeploymentRef, deployment: V1Deployment) -> RolloutStatus:
    """kubectl's `rollout status` verdict on a Deployment, in its order."""
    generation = (deployment.metadata.generation if deployment.metadata else None) or 0
    status = deployment.status or client.V1DeploymentStatus()
    observed = status.observed_generation or 0
    if observed < generation:
        return _waiting(
            f"the deployment controller has not observed generation {generation} yet "
            f"(it has seen {observed})"
        )
    for condition in status.conditions or ():
        if condition.type == "Progressing" and condition.reason == TIMED_OUT:
            return RolloutStatus(
                done=False,
                failed=True,
                message=f"deployment {ref} exceeded its progress deadline: {condition.message}",
            )
    desired = replicas(deployment)
    updated = status.updated_replicas or 0
    current = status.replicas or 0
    available = status.available_replicas or 0
    if updated < desired:
        return _waiting(f"{updated} of {desired} new replicas have been updated")
    if current > updated:
        return _waiting(f"{current - updated} old replicas are pending termination")
    if available < updated:
        return _waiting(f"{available} of {updated} updated replicas are available")
    return RolloutStatus(
        done=True,
        failed=False,
        message=(
            f"deployment {ref} successfully rolled out: {available} of {desired} replicas "
            f"updated and available (generation {generation})"
        ),
    )


def _waiting(why: str) -> RolloutStatus:
    return RolloutStatus(done=False, failed=False, message=f"waiting for the rollout: {why}")


def replicas(deployment: V1Deployment) -> int:
    """spec.replicas, which the API server defaults to 1 when it is not given."""
    count = deployment.spec.replicas if deployment.spec else None
    return 1 if count is None else count


def restarted_at(deployment: V1Deployment) -> str | None:
    template = deployment.spec.template if deployment.spec else None
    annotations = (template.metadata.annotations if template and template.metadata else None) or {}
    return annotations.get(RESTARTED_AT)


def rfc3339(at: datetime) -> str:
    """As kubectl writes restartedAt, in UTC."""
    return utc(at).strftime("%Y-%m-%dT%H:%M:%SZ")
