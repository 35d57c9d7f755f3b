"""The kubernetes executor: resolves targets, snapshots a Deployment's replica
count and restartedAt annotation and puts them back on rollback, and dispatches
to the operations deployments.py declares; a KubernetesRefused is a failed step
or check."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from engine.executors.common import own
from engine.executors.k8s.connection import Connection, KubernetesRefused
from engine.executors.k8s.deployments import patch_replicas, patch_template_annotation, read
from engine.executors.k8s.operations import OPS, Kube
from engine.executors.k8s.rollout import RESTARTED_AT, replicas, restarted_at
from engine.executors.k8s.targets import EXECUTOR_NAME, deployment_ref, resolve
from engine.executors.plugin import Context, ExecutorPlugin, register_executor
from engine.models import (
    Availability,
    CheckResult,
    PlannedBenchmark,
    PlannedCheck,
    PlannedStep,
    Snapshot,
    StepResult,
    Target,
)
from engine.ports import Clock, Executor, TargetRefused

SPEC = OPS.spec


class SavedState(BaseModel):
    """What rollback needs, kept in Snapshot.state (JSON)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    uid: str | None
    replicas: int
    restarted_at: str | None
    generation: int | None


class KubernetesExecutor:
    """Restarts and scales Deployments and judges their rollouts as kubectl does."""

    name = EXECUTOR_NAME
    spec = SPEC

    def __init__(
        self,
        clock: Clock,
        *,
        kubeconfig: Path | None = None,
        context: str | None = None,
        poll_s: float = 1.0,
    ) -> None:
        """Without `kubeconfig`: KUBECONFIG, then ~/.kube/config, then the
        in-cluster service account, as kubectl and client-go look."""
        self._clock = clock
        self._connection = Connection(kubeconfig, context)
        self._kube = Kube(connection=self._connection, clock=clock, poll_s=poll_s)

    async def aclose(self) -> None:
        """Close the connection pool; the next call opens a new one."""
        await self._connection.aclose()

    def resolve_target(self, value: str, allowlist: Sequence[str]) -> Target:
        return resolve(value, allowlist)

    async def available(self) -> Availability:
        return await self._connection.available()

    # -- snapshot and restore ---------------------------------------------

    def describe_snapshot(self, target: Target) -> str:
        ref = deployment_ref(target)
        return (
            f"the replica count and the {RESTARTED_AT} pod-template annotation of deployment "
            f"{ref}, read from the API just before each step (no file); rollback scales it "
            "back and puts the annotation back, which rolls the pods back to the previous template"
        )

    async def snapshot(self, target: Target, incident_id: int) -> Snapshot:
        """The first call of a heal: a namespace or Deployment that does not
        exist, or may not be read, is refused here, before anything changes."""
        own(EXECUTOR_NAME, target)
        ref = deployment_ref(target)
        taken_at = self._clock.now()
        try:
            deployment = await read(self._connection, ref)
        except KubernetesRefused as exc:
            raise TargetRefused(str(exc)) from exc
        saved = SavedState(
            uid=deployment.metadata.uid if deployment.metadata else None,
            replicas=replicas(deployment),
            restarted_at=restarted_at(deployment),
            generation=deployment.metadata.generation if deployment.metadata else None,
        )
        restarted = saved.restarted_at or "never set"
        return Snapshot(
            incident_id=incident_id,
            target=target,
            location=(
                f"kubernetes deployment {ref}: {saved.replicas} replicas, restartedAt "
                f"{restarted} (generation {saved.generation})"
            ),
            size_bytes=0,
            taken_at=taken_at,
            state=saved.model_dump(mode="json"),
        )

    async def restore(self, snapshot: Snapshot) -> None:
        """Put back what differs from the snapshot, and only that: restoring
        an untouched value would start a rollout for nothing."""
        own(EXECUTOR_NAME, snapshot.target)
        ref = deployment_ref(snapshot.target)
        saved = SavedState.model_validate(snapshot.state)
        try:
            deployment = await read(self._connection, ref)
        except KubernetesRefused as exc:
            raise KubernetesRefused(f"cannot restore deployment {ref}: {exc}") from exc
        uid = deployment.metadata.uid if deployment.metadata else None
        if saved.uid is not None and uid != saved.uid:
            raise KubernetesRefused(
                f"cannot restore deployment {ref}: it was deleted and created again since the "
                f"snapshot (uid {saved.uid} -> {uid}); GRACE does not restore onto another object"
            )
        if restarted_at(deployment) != saved.restarted_at:
            await patch_template_annotation(self._connection, ref, saved.restarted_at)
        if replicas(deployment) != saved.replicas:
            await patch_replicas(self._connection, ref, saved.replicas)

    # -- operations ------------------------------------------------------------

    async def run(self, step: PlannedStep, target: Target, snapshot: Snapshot) -> StepResult:
        own(EXECUTOR_NAME, target)
        handler, params = OPS.actions.resolve(step.action, step.params)
        ref = deployment_ref(target)
        started = time.perf_counter()
        try:
            deployment = await read(self._connection, ref)
            ok, detail = await handler(self._kube, ref, params, deployment)
        except KubernetesRefused as exc:
            ok, detail = False, str(exc)
        return StepResult(
            action=step.action, ok=ok, detail=detail, seconds=time.perf_counter() - started
        )

    async def check(self, check: PlannedCheck, target: Target) -> CheckResult:
        own(EXECUTOR_NAME, target)
        handler, params = OPS.checks.resolve(check.check, check.params)
        ref = deployment_ref(target)
        try:
            ok, detail = await handler(self._kube, ref, params)
        except KubernetesRefused as exc:
            ok, detail = False, str(exc)
        return CheckResult(check=check.check, ok=ok, detail=detail)

    async def measure(self, benchmark: PlannedBenchmark, target: Target) -> float:
        """There are no kubernetes benchmarks: a playbook naming one fails at load."""
        own(EXECUTOR_NAME, target)
        handler, params = OPS.benchmarks.resolve(benchmark.benchmark, benchmark.params)
        return float(await handler(self._kube, deployment_ref(target), params))


class KubernetesConfig(BaseModel):
    """The kubernetes executor's settings."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    kubeconfig: Path | None = Field(None, description="else KUBECONFIG, ~/.kube, in-cluster")
    kube_context: str | None = None


def _build(config: KubernetesConfig, context: Context) -> Executor:
    return KubernetesExecutor(
        context.clock, kubeconfig=config.kubeconfig, context=config.kube_context
    )


PLUGIN = register_executor(
    ExecutorPlugin(
        name=EXECUTOR_NAME,
        operations=OPS,
        config=KubernetesConfig,
        factory=_build,
        summary="rollout restart and scale of Deployments, judged as kubectl rollout status",
    )
)
