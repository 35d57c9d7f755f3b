"""The kubernetes executor: rollout restart, scale and rollout status of
Deployments, through the official client's asyncio API.

Targets are `deployment:NAMESPACE/NAME`. A crash-looping pod (`pod:NAMESPACE/POD`)
resolves, offline, to the Deployment that owns it by the name its ReplicaSet
gave it (DEPLOYMENT-HASH-SUFFIX): the target, its allowlist entry, its hold and
its breaker are then the Deployment's, which is what a restart acts on, and a
pod replaced by that very restart cannot leave the target dangling.

Nothing is deleted: a restart sets one pod-template annotation, as `kubectl
rollout restart` does, and a scale goes through the scale subresource. The
snapshot keeps both values in its state, and rollback puts them back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from kubernetes.aio import client, config
from kubernetes.aio.client import ApiClient, ApiException, V1Deployment
from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.executors.common import lookup, name_matches, own, shorten, utc
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
from engine.ports import Clock, ExecutorSpec, Params, TargetRefused, TransientError, WaitingParams

EXECUTOR_NAME = "kubernetes"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
TIMED_OUT = "ProgressDeadlineExceeded"
_MERGE_PATCH = "application/merge-patch+json"
_PROBE_TIMEOUT_S = 10.0
_MESSAGE_CHARS = 240

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_NAMESPACE = re.compile(_DNS_LABEL)
_NAME = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")
# The alphabet of pod-template hashes and generated name suffixes (k8s rand.SafeEncodeString).
_SAFE = "bcdfghjklmnpqrstvwxz2456789"
_DEPLOYMENT_POD = re.compile(rf"(?P<deployment>.+)-[{_SAFE}]{{1,10}}-[{_SAFE}]{{5}}")

T = TypeVar("T")


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


SPEC = ExecutorSpec(
    actions={"rollout_restart": RolloutRestartParams, "scale": ScaleParams},
    checks={
        "rollout_complete": RolloutCompleteParams,
        "available_replicas_at_least": AvailableReplicasAtLeastParams,
    },
)


class KubernetesRefused(Exception):
    """The cluster said no in a way retrying will not change: forbidden, not
    found, invalid, or no cluster configured at all."""


@dataclass(frozen=True)
class DeploymentRef:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ConfigSource:
    """Where the client's configuration comes from."""

    kubeconfig: str | None
    """A kubeconfig path, or KUBECONFIG's list of them; None: the pod's service account."""

    def __str__(self) -> str:
        return f"kubeconfig {self.kubeconfig}" if self.kubeconfig else "in-cluster service account"


@dataclass(frozen=True)
class RolloutStatus:
    done: bool
    failed: bool
    message: str


class SavedState(BaseModel):
    """What rollback needs, kept in Snapshot.state (JSON)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    uid: str | None
    replicas: int
    restarted_at: str | None
    generation: int | None


@dataclass(frozen=True)
class _Op:
    """One API call, to name it in errors: `patch deployments/scale shop/cart`."""

    verb: str
    resource: str
    ref: DeploymentRef | None = None

    def __str__(self) -> str:
        return f"{self.verb} {self.resource}" + (f" {self.ref}" if self.ref else "")


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
        self._kubeconfig = kubeconfig
        self._context = context
        self._poll_s = poll_s
        self._api: ApiClient | None = None
        self._source: ConfigSource | None = None
        self._connecting = asyncio.Lock()

    async def aclose(self) -> None:
        """Close the connection pool; the next call opens a new one."""
        api, self._api = self._api, None
        if api is not None:
            await api.close()

    # -- targets -----------------------------------------------------------

    def resolve_target(self, value: str, allowlist: Sequence[str]) -> Target:
        """Offline: the shape of the name and the allowlist. Whether the
        namespace and Deployment exist is for the first call to say."""
        shown = repr(value)
        if not allowlist:
            raise TargetRefused(
                f"kubernetes target {shown} refused: no kubernetes targets are allowlisted"
            )
        kind, _, scoped = value.partition(":")
        namespace, _, name = scoped.partition("/")
        if kind not in ("deployment", "pod"):
            raise TargetRefused(
                f"kubernetes target {shown} refused: the kind must be deployment or pod "
                f"(deployment:NAMESPACE/NAME or pod:NAMESPACE/POD), not {kind!r}"
            )
        if not _valid(_NAMESPACE, namespace, 63):
            raise TargetRefused(
                f"kubernetes target {shown} refused: {namespace!r} is not a valid namespace name"
            )
        if not _valid(_NAME, name, 253):
            raise TargetRefused(
                f"kubernetes target {shown} refused: {name!r} is not a valid {kind} name"
            )
        owner = name
        if kind == "pod":
            match = _DEPLOYMENT_POD.fullmatch(name)
            if match is None or not _valid(_NAME, match["deployment"], 253):
                raise TargetRefused(
                    f"kubernetes target {shown} refused: pod {namespace}/{name} is not named "
                    "like a Deployment's pod (DEPLOYMENT-HASH-SUFFIX); GRACE only restarts "
                    "Deployments, not bare pods, StatefulSets or Jobs"
                )
            owner = match["deployment"]
        resolved = f"deployment:{namespace}/{owner}"
        if not any(name_matches(resolved, pattern) for pattern in allowlist):
            via = f" (the Deployment of pod {namespace}/{name})" if kind == "pod" else ""
            raise TargetRefused(
                f"kubernetes target {resolved!r}{via} is not in the kubernetes allowlist"
            )
        return Target(executor=EXECUTOR_NAME, name=resolved)

    async def available(self) -> Availability:
        """Configured, and the API server answers."""
        try:
            api = await self._client()
            version = await self._request(
                _Op("get", "version"),
                lambda: client.VersionApi(api).get_code(_request_timeout=_PROBE_TIMEOUT_S),
            )
        except (KubernetesRefused, TransientError) as exc:
            return Availability(ok=False, reason=str(exc))
        return Availability(
            ok=True,
            reason=f"{self._source} -> {api.configuration.host}, Kubernetes {version.git_version}",
        )

    # -- snapshot and restore ---------------------------------------------

    def describe_snapshot(self, target: Target) -> str:
        ref = _ref(target)
        return (
            f"the replica count and the {RESTARTED_AT} pod-template annotation of deployment "
            f"{ref}, read from the API just before each step (no file); rollback scales it "
            "back and puts the annotation back, which rolls the pods back to the previous template"
        )

    async def snapshot(self, target: Target, incident_id: int) -> Snapshot:
        """The first call of a heal: a namespace or Deployment that does not
        exist, or may not be read, is refused here, before anything changes."""
        own(EXECUTOR_NAME, target)
        ref = _ref(target)
        taken_at = self._clock.now()
        try:
            deployment = await self._read(ref)
        except KubernetesRefused as exc:
            raise TargetRefused(str(exc)) from exc
        saved = SavedState(
            uid=deployment.metadata.uid if deployment.metadata else None,
            replicas=_replicas(deployment),
            restarted_at=_restarted_at(deployment),
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
        ref = _ref(snapshot.target)
        saved = SavedState.model_validate(snapshot.state)
        try:
            deployment = await self._read(ref)
        except KubernetesRefused as exc:
            raise KubernetesRefused(f"cannot restore deployment {ref}: {exc}") from exc
        uid = deployment.metadata.uid if deployment.metadata else None
        if saved.uid is not None and uid != saved.uid:
            raise KubernetesRefused(
                f"cannot restore deployment {ref}: it was deleted and created again since the "
                f"snapshot (uid {saved.uid} -> {uid}); GRACE does not restore onto another object"
            )
        if _restarted_at(deployment) != saved.restarted_at:
            await self._patch_template_annotation(ref, saved.restarted_at)
        if _replicas(deployment) != saved.replicas:
            await self._patch_replicas(ref, saved.replicas)

    # -- actions -----------------------------------------------------------

    async def run(self, step: PlannedStep, target: Target, snapshot: Snapshot) -> StepResult:
        own(EXECUTOR_NAME, target)
        model = lookup(EXECUTOR_NAME, self.spec.actions, "action", step.action)
        params = model.model_validate(step.params)
        ref = _ref(target)
        started = time.perf_counter()
        try:
            deployment = await self._read(ref)
            if isinstance(params, RolloutRestartParams):
                ok, detail = await self._restart(ref, deployment)
            elif isinstance(params, ScaleParams):
                ok, detail = await self._scale(ref, deployment, params)
            else:  # pragma: no cover - the spec and this dispatch are edited together
                raise ValueError(f"kubernetes action {step.action!r} has no implementation")
        except KubernetesRefused as exc:
            ok, detail = False, str(exc)
        return StepResult(
            action=step.action, ok=ok, detail=detail, seconds=time.perf_counter() - started
        )

    async def _restart(self, ref: DeploymentRef, deployment: V1Deployment) -> tuple[bool, str]:
        """What `kubectl rollout restart` does: a new template annotation, so
        the Deployment replaces its pods under its own rollout strategy."""
        if deployment.spec and deployment.spec.paused:
            return False, (
                f"refused: deployment {ref} is paused, so a restart would not roll out; "
                f"resume it first (kubectl rollout resume deployment/{ref.name} -n {ref.namespace})"
            )
        stamp = rfc3339(self._clock.now())
        before = _restarted_at(deployment)
        if before == stamp:
            raise TransientError(
                f"deployment {ref} was already restarted at {stamp}: the same annotation "
                "would change nothing; try again in a second"
            )
        patched = await self._patch_template_annotation(ref, stamp)
        generation = patched.metadata.generation if patched.metadata else None
        return True, (
            f"rollout restart of deployment {ref}: {RESTARTED_AT} set to {stamp} "
            f"(was {before or 'unset'}), generation {generation}; its "
            f"{_replicas(deployment)} pods are replaced as the rollout proceeds"
        )

    async def _scale(
        self, ref: DeploymentRef, deployment: V1Deployment, params: ScaleParams
    ) -> tuple[bool, str]:
        current = _replicas(deployment)
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
        await self._patch_replicas(ref, wanted)
        return True, f"scaled deployment {ref} from {current} to {wanted} replicas"

    # -- checks --------------------------------------------------------------

    async def check(self, check: PlannedCheck, target: Target) -> CheckResult:
        own(EXECUTOR_NAME, target)
        model = lookup(EXECUTOR_NAME, self.spec.checks, "check", check.check)
        params = model.model_validate(check.params)
        ref = _ref(target)
        try:
            if isinstance(params, RolloutCompleteParams):
                ok, detail = await self._wait_rolled_out(ref, params.within_s)
            elif isinstance(params, AvailableReplicasAtLeastParams):
                ok, detail = await self._available_at_least(ref, params.count)
            else:  # pragma: no cover - the spec and this dispatch are edited together
                raise ValueError(f"kubernetes check {check.check!r} has no implementation")
        except KubernetesRefused as exc:
            ok, detail = False, str(exc)
        return CheckResult(check=check.check, ok=ok, detail=detail)

    async def _wait_rolled_out(self, ref: DeploymentRef, within_s: float) -> tuple[bool, str]:
        """Poll until kubectl would call the rollout done, failed, or time is up."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while True:
            status = rollout_status(ref, await self._read(ref))
            if status.done or status.failed:
                return status.done, status.message
            left = deadline - loop.time()
            if left <= 0:
                return False, (
                    f"deployment {ref} did not finish rolling out within {within_s:g} s: "
                    f"{status.message}"
                )
            await asyncio.sleep(min(self._poll_s, left))

    async def _available_at_least(self, ref: DeploymentRef, count: int) -> tuple[bool, str]:
        deployment = await self._read(ref)
        available = (deployment.status.available_replicas if deployment.status else None) or 0
        shown = f"deployment {ref} has {available} available replicas"
        if available >= count:
            return True, f"{shown} >= {count}"
        return False, f"{shown} < {count}"

    async def measure(self, benchmark: PlannedBenchmark, target: Target) -> float:
        """There are no kubernetes benchmarks: a playbook naming one fails at load."""
        own(EXECUTOR_NAME, target)
        raise ValueError(
            f"unknown kubernetes benchmark {benchmark.benchmark!r}; the executor has none"
        )

    # -- API calls -----------------------------------------------------------

    async def _read(self, ref: DeploymentRef) -> V1Deployment:
        api = await self._client()
        return await self._request(
            _Op("get", "deployments", ref),
            lambda: client.AppsV1Api(api).read_namespaced_deployment(ref.name, ref.namespace),
        )

    async def _patch_template_annotation(
        self, ref: DeploymentRef, value: str | None
    ) -> V1Deployment:
        """A JSON merge patch of the one annotation: None removes it."""
        api = await self._client()
        body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: value}}}}}
        return await self._request(
            _Op("patch", "deployments", ref),
            lambda: client.AppsV1Api(api).patch_namespaced_deployment(
                ref.name, ref.namespace, body, _content_type=_MERGE_PATCH
            ),
        )

    async def _patch_replicas(self, ref: DeploymentRef, replicas: int) -> None:
        api = await self._client()
        await self._request(
            _Op("patch", "deployments/scale", ref),
            lambda: client.AppsV1Api(api).patch_namespaced_deployment_scale(
                ref.name,
                ref.namespace,
                {"spec": {"replicas": replicas}},
                _content_type=_MERGE_PATCH,
            ),
        )

    async def _request(self, op: _Op, call: Callable[[], Awaitable[T]]) -> T:
        """One API call, its failure sorted: worth retrying (TransientError) or
        not (KubernetesRefused, with what was refused and why)."""
        try:
            return await call()
        except ApiException as exc:
            raise await self._classify(op, exc) from exc
        except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError) as exc:
            raise KubernetesRefused(f"cannot {op}: TLS with the API server failed: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TransientError(
                f"cannot {op}: the API server at {self._host()} does not answer: "
                f"{str(exc) or type(exc).__name__}"
            ) from exc

    async def _classify(self, op: _Op, exc: ApiException) -> Exception:
        status = exc.status or 0
        said = _status_message(exc)
        if status == 401:
            await self.aclose()  # expired credentials: the next try loads them again
            return TransientError(f"cannot {op}: the API server rejected the credentials: {said}")
        if status == 403:
            where = f" in namespace {op.ref.namespace}" if op.ref else ""
            return KubernetesRefused(
                f"forbidden: GRACE's credentials lack permission to {op.verb} {op.resource}"
                f"{where}: {said}"
            )
        if status == 404 and op.ref is not None:
            return KubernetesRefused(await self._missing(op.ref))
        if status in (409, 429) or status >= 500:
            return TransientError(f"cannot {op}: the API server answered {status}: {said}")
        return KubernetesRefused(f"cannot {op}: the API server answered {status}: {said}")

    async def _missing(self, ref: DeploymentRef) -> str:
        """Say which is missing, the namespace or the Deployment in it."""
        api = await self._client()
        try:
            await client.CoreV1Api(api).read_namespace(ref.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return f"namespace {ref.namespace!r} does not exist (looking for deployment {ref})"
            return f"deployment {ref} was not found (namespace {ref.namespace!r} could not be read)"
        except (aiohttp.ClientError, TimeoutError, OSError):
            return f"deployment {ref} was not found (namespace {ref.namespace!r} could not be read)"
        return f"deployment {ref.name!r} does not exist in namespace {ref.namespace!r}"

    async def _client(self) -> ApiClient:
        async with self._connecting:
            if self._api is None:
                self._api = await self._connect()
            return self._api

    async def _connect(self) -> ApiClient:
        source = await asyncio.to_thread(find_config, self._kubeconfig)
        if isinstance(source, str):
            raise KubernetesRefused(source)
        configuration = client.Configuration()
        try:
            if source.kubeconfig is None:
                await asyncio.to_thread(config.load_incluster_config, configuration)
            else:
                await config.load_kube_config(
                    config_file=source.kubeconfig,
                    context=self._context,
                    client_configuration=configuration,
                    persist_config=False,  # never rewrite someone's kubeconfig
                )
        except (config.ConfigException, OSError, ValueError, KeyError) as exc:
            context = f" (context {self._context})" if self._context else ""
            raise KubernetesRefused(f"{source}{context} cannot be loaded: {exc}") from exc
        self._source = source
        return ApiClient(configuration)

    def _host(self) -> str:
        return self._api.configuration.host if self._api else "(not connected)"


# -- helpers -------------------------------------------------------------------


def find_config(kubeconfig: Path | None) -> ConfigSource | str:
    """The configuration to use, or why there is none."""
    if kubeconfig is not None:
        if kubeconfig.is_file():
            return ConfigSource(str(kubeconfig))
        return f"no kubeconfig at {kubeconfig}"
    listed = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    paths = listed or [str(Path.home() / ".kube" / "config")]
    found = [p for p in paths if Path(p).expanduser().is_file()]
    if found:
        return ConfigSource(os.pathsep.join(found))
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return ConfigSource(None)
    return (
        f"no kubeconfig at {' or '.join(paths)} and not running in a cluster "
        "(KUBERNETES_SERVICE_HOST is not set)"
    )


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
    desired = _replicas(deployment)
    updated = status.updated_replicas or 0
    replicas = status.replicas or 0
    available = status.available_replicas or 0
    if updated < desired:
        return _waiting(f"{updated} of {desired} new replicas have been updated")
    if replicas > updated:
        return _waiting(f"{replicas - updated} old replicas are pending termination")
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


def rfc3339(at: datetime) -> str:
    """As kubectl writes restartedAt, in UTC."""
    return utc(at).strftime("%Y-%m-%dT%H:%M:%SZ")


def _waiting(why: str) -> RolloutStatus:
    return RolloutStatus(done=False, failed=False, message=f"waiting for the rollout: {why}")


def _valid(pattern: re.Pattern[str], value: str, limit: int) -> bool:
    return 0 < len(value) <= limit and pattern.fullmatch(value) is not None


def _ref(target: Target) -> DeploymentRef:
    """Targets only come from resolve_target, always as deployment:NAMESPACE/NAME."""
    kind, _, scoped = target.name.partition(":")
    namespace, _, name = scoped.partition("/")
    if kind != "deployment" or not namespace or not name:
        raise ValueError(f"kubernetes target {target.name!r} is not deployment:NAMESPACE/NAME")
    return DeploymentRef(namespace, name)


def _replicas(deployment: V1Deployment) -> int:
    """spec.replicas, which the API server defaults to 1 when it is not given."""
    replicas = deployment.spec.replicas if deployment.spec else None
    return 1 if replicas is None else replicas


def _restarted_at(deployment: V1Deployment) -> str | None:
    template = deployment.spec.template if deployment.spec else None
    annotations = (template.metadata.annotations if template and template.metadata else None) or {}
    return annotations.get(RESTARTED_AT)


def _status_message(exc: ApiException) -> str:
    """The message of the Status object the API server sent, else its reason."""
    body: Any = None
    with contextlib.suppress(TypeError, ValueError):
        body = json.loads(exc.body or "")
    message = body.get("message") if isinstance(body, dict) else None
    return shorten(str(message or exc.reason or "no reason given"), _MESSAGE_CHARS)
