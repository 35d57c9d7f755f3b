"""The docker executor: resolves targets, takes snapshots and dispatches to the
operations container.py and compose.py declare; a DockerError (its message
names the target and what went wrong) is a failed step or check."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

from pydantic import BaseModel, ConfigDict, Field

from engine.executors.common import refused
from engine.executors.containers.compose import SERVICES, compose_problem
from engine.executors.containers.container import CONTAINERS
from engine.executors.containers.daemon import Daemon, DockerError, refused_when_missing
from engine.executors.containers.operations import OPS, Docker
from engine.executors.containers.targets import (
    COMPOSE,
    CONTAINER,
    EXECUTOR_NAME,
    allowlisted_ref,
    ref_of,
)
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
from engine.ports import Clock, Executor

SPEC = OPS.spec
_KINDS = {CONTAINER: CONTAINERS, COMPOSE: SERVICES}
_NO_FILES: Mapping[str, Path] = MappingProxyType({})
# A step answers this long before its deadline, so the thread gets our precise
# answer rather than the engine's "cut off".
_ANSWER_MARGIN_S = 1.0


class DockerExecutor:
    """Restarts containers and waits until they are healthy again; scales
    compose services and scales them back on rollback."""

    name = EXECUTOR_NAME
    spec = SPEC

    def __init__(
        self,
        clock: Clock,
        *,
        docker_host: str | None = None,
        compose_files: Mapping[str, Path] = _NO_FILES,
        poll_s: float = 0.5,
        wait_s: float = 120.0,
    ) -> None:
        """`docker_host` as DOCKER_HOST spells it; None: the environment's
        (DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH), else the local socket.
        `compose_files` maps each compose project GRACE may scale to its file."""
        self._clock = clock
        self._docker = Docker(
            daemon=Daemon(docker_host),
            compose_files={project: Path(path) for project, path in compose_files.items()},
            poll_s=poll_s,
            wait_s=wait_s,
        )

    def resolve_target(self, value: str, allowlist: Sequence[str]) -> Target:
        """Only a well-formed, allowlisted name; a compose service only of a
        configured project whose file defines it. Makes no call to the daemon."""
        ref = allowlisted_ref(value, allowlist)
        if ref.kind == COMPOSE:
            problem = compose_problem(self._docker.compose_files, ref)
            if problem:
                raise refused(EXECUTOR_NAME, value, problem)
        return Target(executor=EXECUTOR_NAME, name=ref.target_name)

    async def available(self) -> Availability:
        return await self._docker.daemon.available()

    # -- snapshot and restore ---------------------------------------------

    def describe_snapshot(self, target: Target) -> str:
        ref = ref_of(target)
        return _KINDS[ref.kind].describe(ref)

    async def snapshot(self, target: Target, incident_id: int) -> Snapshot:
        """A target that does not exist is refused here, before anything changes."""
        ref = ref_of(target)
        with refused_when_missing():
            location, state = await _KINDS[ref.kind].snapshot(self._docker, ref)
        return Snapshot(
            incident_id=incident_id,
            target=target,
            location=location,
            size_bytes=0,
            taken_at=self._clock.now(),
            state=state,
        )

    async def restore(self, snapshot: Snapshot) -> None:
        ref = ref_of(snapshot.target)
        await _KINDS[ref.kind].restore(self._docker, ref, snapshot.state)

    # -- operations ------------------------------------------------------------

    async def run(self, step: PlannedStep, target: Target, snapshot: Snapshot) -> StepResult:
        ref = ref_of(target)
        handler, params = OPS.actions.resolve(step.action, step.params)
        started = time.perf_counter()
        until = time.monotonic() + max(step.timeout_s - _ANSWER_MARGIN_S, 0)
        try:
            ok, detail = await handler(self._docker, ref, params, until)
        except DockerError as exc:
            ok, detail = False, str(exc)
        return StepResult(
            action=step.action, ok=ok, detail=detail, seconds=time.perf_counter() - started
        )

    async def check(self, check: PlannedCheck, target: Target) -> CheckResult:
        """A sick or missing container is an answer (ok=False), never an exception."""
        ref = ref_of(target)
        handler, params = OPS.checks.resolve(check.check, check.params)
        try:
            ok, detail = await handler(self._docker, ref, params)
        except DockerError as exc:
            ok, detail = False, str(exc)
        return CheckResult(check=check.check, ok=ok, detail=detail)

    async def measure(self, benchmark: PlannedBenchmark, target: Target) -> float:
        ref = ref_of(target)
        handler, params = OPS.benchmarks.resolve(benchmark.benchmark, benchmark.params)
        return float(await handler(self._docker, ref, params))


class DockerConfig(BaseModel):
    """The docker executor's settings."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    docker_host: str | None = Field(None, description="else DOCKER_HOST, else the default socket")
    compose_files: dict[str, Path] = Field(
        default_factory=dict, description="compose project -> its compose file"
    )


def _build(config: DockerConfig, context: Context) -> Executor:
    return DockerExecutor(
        context.clock, docker_host=config.docker_host, compose_files=config.compose_files
    )


PLUGIN = register_executor(
    ExecutorPlugin(
        name=EXECUTOR_NAME,
        operations=OPS,
        config=DockerConfig,
        factory=_build,
        summary="restart containers until healthy, scale compose services",
    )
)
