"""The docker executor: restarts containers and waits for their health, scales compose services.

Targets are `container:NAME` or `compose:PROJECT/SERVICE` (a bare name means a
container). They come from untrusted alert labels, so `resolve_target` checks
their characters and the allowlist before any call is made, and a compose
project must be one the operator configured with its compose file.

docker-py is blocking: every call opens its own client in a worker thread
(`asyncio.to_thread`) and closes it, so no client is shared between threads.
Compose is driven through its CLI (`docker compose` v2, else `docker-compose`)
in a subprocess that is killed when the step is cut off.

A restart cannot be undone: its snapshot records how the container was, and
rollback only confirms that it is up again, raising when it is not so that the
engine keeps its hands off. A scale's snapshot records the running replica
count, and rollback scales the service back to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, TypeVar

import aiohttp
import docker
import yaml
from docker.errors import APIError, DockerException, NotFound
from pydantic import Field, model_validator

from engine.executors.common import lookup, name_matches, own, shorten
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

EXECUTOR_NAME = "docker"
CONTAINER = "container"
COMPOSE = "compose"

_DEFAULT_HOST = "unix:///var/run/docker.sock"
_API_TIMEOUT_S = 30.0
_PING_TIMEOUT_S = 5.0
_HTTP_TIMEOUT_S = 5.0
_TOOL_TIMEOUT_S = 10.0
# Without a health check, "running" is believed only once the container has
# stayed up this long: one that crashes on start is briefly running too.
_STEADY_S = 2.0
# A step answers this long before its deadline, so the thread gets our precise
# answer rather than the engine's "cut off".
_ANSWER_MARGIN_S = 1.0
_MAX_REPLICAS = 100
_OUTPUT_CHARS = 200
_KEPT_OUTPUT_BYTES = 4096

# Docker's own rules for names (container names may also hold dots); a compose
# v2 project name is lower case.
_CONTAINER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_PROJECT = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_SERVICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")

_PROJECT_LABEL = "com.docker.compose.project"
_SERVICE_LABEL = "com.docker.compose.service"
_ONEOFF_LABEL = "com.docker.compose.oneoff"

# What compose prints when the daemon, not the request, is the problem.
_UNREACHABLE = re.compile(
    r"connect to (the )?docker daemon|error while fetching server api version"
    r"|connection (refused|aborted|reset)|timed? ?out|\b5\d\d server error",
    re.IGNORECASE,
)
_NO_FILES: Mapping[str, Path] = MappingProxyType({})

T = TypeVar("T")
Want = Literal["healthy", "running"]


# -- parameters ----------------------------------------------------------------------


class RestartParams(Params):
    timeout_s: int = Field(default=10, ge=0, le=600, description="grace before SIGKILL")


class ScaleParams(Params):
    replicas: int | None = Field(default=None, ge=0, le=_MAX_REPLICAS)
    delta: int | None = Field(default=None, ge=-_MAX_REPLICAS, le=_MAX_REPLICAS)

    @model_validator(mode="after")
    def _one_of(self) -> ScaleParams:
        if (self.replicas is None) == (self.delta is None):
            raise ValueError("give exactly one of replicas (a count) or delta (a change)")
        if self.delta == 0:
            raise ValueError("delta 0 changes nothing")
        return self


class HealthyParams(WaitingParams):
    within_s: float = Field(default=30, ge=0, le=600)


class RunningParams(WaitingParams):
    within_s: float = Field(default=30, ge=0, le=600)


class ReplicasAtLeastParams(Params):
    count: int = Field(ge=1, le=_MAX_REPLICAS)


class HttpLatencyParams(Params):
    port: int = Field(ge=1, le=65535, description="the container port, published on the host")
    path: str = Field(default="/", pattern=r"^/\S*$")
    repeat: int = Field(default=5, ge=1, le=100)


SPEC = ExecutorSpec(
    actions={"restart": RestartParams, "scale": ScaleParams},
    checks={
        "healthy": HealthyParams,
        "running": RunningParams,
        "replicas_at_least": ReplicasAtLeastParams,
    },
    benchmarks={"http_latency": HttpLatencyParams},
)


class DockerError(Exception):
    """A failure retrying will not fix: no such container, a request the
    daemon refuses, compose failing on its file."""


class _Missing(DockerError):
    """The container or service named does not exist."""


# -- targets -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ref:
    """A parsed target: one container, or one service of a compose project."""

    kind: str
    name: str
    project: str = ""

    @property
    def target_name(self) -> str:
        if self.kind == COMPOSE:
            return f"{COMPOSE}:{self.project}/{self.name}"
        return f"{CONTAINER}:{self.name}"

    @property
    def shown(self) -> str:
        if self.kind == COMPOSE:
            return f"compose service {self.project}/{self.name}"
        return f"docker container {self.name!r}"


def parse_target(value: str) -> _Ref:
    """`container:NAME`, `compose:PROJECT/SERVICE` or a bare NAME (a container).

    Raises ValueError saying what is wrong with it."""
    kind, sep, rest = value.partition(":")
    if not sep:
        kind, rest = CONTAINER, value
    if kind == CONTAINER:
        if not _CONTAINER_NAME.fullmatch(rest):
            raise ValueError(
                f"{rest!r} is not a container name (letters, digits, '_', '.' and '-', "
                "starting with a letter or digit)"
            )
        return _Ref(CONTAINER, rest)
    if kind == COMPOSE:
        project, slash, service = rest.partition("/")
        if not slash or not _PROJECT.fullmatch(project) or not _SERVICE.fullmatch(service):
            raise ValueError(
                f"{rest!r} is not PROJECT/SERVICE (a lower-case project name, a service name)"
            )
        return _Ref(COMPOSE, service, project)
    raise ValueError(f"unknown kind {kind!r} (known: {CONTAINER}, {COMPOSE})")


def allowlisted(target_name: str, pattern: str) -> bool:
    """Whether an allowlist glob admits a canonical `kind:name` target name.

    A glob without a kind means containers. The kind must be equal, and the
    rest is matched part by part between `/`, so `*` never crosses a `:` or a
    `/`: `compose:shop/*` admits `compose:shop/web` but no other project.
    """
    return name_matches(target_name, pattern if ":" in pattern else f"{CONTAINER}:{pattern}")


def _ref_of(target: Target) -> _Ref:
    own(EXECUTOR_NAME, target)
    return parse_target(target.name)


# -- what the daemon says about a container ------------------------------------------


@dataclass(frozen=True)
class _State:
    id: str
    name: str
    status: str
    exit_code: int
    error: str
    started_at: str
    restart_policy: str
    health: str | None
    """None when the container has no health check."""
    health_output: str
    """The last health-check result since it started, ready to show."""
    ports: Mapping[str, Any]

    @classmethod
    def of(cls, info: Mapping[str, Any]) -> _State:
        state = info.get("State") or {}
        health = state.get("Health") or {}
        started_at = str(state.get("StartedAt", ""))
        return cls(
            id=str(info["Id"]),
            name=str(info.get("Name", "")).lstrip("/"),
            status=str(state.get("Status", "unknown")),
            exit_code=int(state.get("ExitCode", 0)),
            error=str(state.get("Error", "")),
            started_at=started_at,
            restart_policy=str(
                ((info.get("HostConfig") or {}).get("RestartPolicy") or {}).get("Name") or "no"
            ),
            health=str(health["Status"]) if health.get("Status") else None,
            health_output=_last_health_check(health.get("Log") or [], started_at),
            ports=(info.get("NetworkSettings") or {}).get("Ports") or {},
        )

    @property
    def up(self) -> bool:
        return self.status == "running"

    @property
    def stays_down(self) -> bool:
        """Stopped, and no restart policy will start it again."""
        return self.status in ("exited", "dead", "created") and self.restart_policy == "no"

    def up_for(self) -> float:
        """Seconds since it started, by this host's clock; 0 when unknown."""
        started = _docker_time(self.started_at)
        return (datetime.now(UTC) - started).total_seconds() if started else 0.0

    def meets(self, want: Want, steady: bool) -> bool:
        if not self.up:
            return False
        if want == "healthy" and self.health is not None:
            return self.health == "healthy"
        return steady

    def describe(self) -> str:
        if self.up:
            if self.health is None:
                return "running (it has no health check)"
            if self.health == "healthy":
                return "running and healthy"
            return f"running but {self.health}: {self.health_output}"
        text = f"{self.status} with exit status {self.exit_code}"
        if self.error:
            text += f" ({shorten(self.error, _OUTPUT_CHARS)!r})"
        if self.stays_down:
            text += ", and no restart policy will start it again"
        return text


def _last_health_check(log: Sequence[Mapping[str, Any]], started_at: str) -> str:
    """The newest health-check result since the container started: the daemon
    keeps results from before a restart, which say nothing about now."""
    started = _docker_time(started_at)
    ran = _docker_time(str(log[-1].get("Start", ""))) if log else None
    if not log or (started is not None and (ran is None or ran < started)):
        return "no health check has finished since it started"
    output = shorten(str(log[-1].get("Output", "")), _OUTPUT_CHARS)
    return f"last health check exited {log[-1].get('ExitCode')}, output {output!r}"


def _docker_time(text: str) -> datetime | None:
    """An RFC 3339 time as the daemon writes it (nanoseconds); None when unset."""
    if not text or text.startswith("0001-"):
        return None
    try:
        return datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", text))
    except ValueError:
        return None


# -- the executor ----------------------------------------------------------------------


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
        self._connection: dict[str, Any] = (
            docker.utils.kwargs_from_env() if docker_host is None else {"base_url": docker_host}
        )
        self._host = str(self._connection.get("base_url") or _DEFAULT_HOST)
        docker.utils.parse_host(self._host)  # a malformed host is a config error: fail now
        self._connection["base_url"] = self._host
        self._compose_files = {project: Path(path) for project, path in compose_files.items()}
        self._poll_s = poll_s
        self._wait_s = wait_s
        self._api_version: str | None = None
        self._compose_tool: list[str] | None = None

    # -- targets -----------------------------------------------------------

    def resolve_target(self, value: str, allowlist: Sequence[str]) -> Target:
        """Only a well-formed, allowlisted name; a compose service only of a
        configured project whose file defines it. Makes no call to the daemon."""
        shown = repr(value)
        if not allowlist:
            raise TargetRefused(f"docker target {shown} refused: no docker targets are allowlisted")
        try:
            ref = parse_target(value)
        except ValueError as exc:
            raise TargetRefused(f"docker target {shown} refused: {exc}") from None
        if not any(allowlisted(ref.target_name, pattern) for pattern in allowlist):
            raise TargetRefused(f"docker target {shown} is not in the docker allowlist")
        if ref.kind == COMPOSE:
            problem = self._compose_problem(ref)
            if problem:
                raise TargetRefused(f"docker target {shown} refused: {problem}")
        return Target(executor=EXECUTOR_NAME, name=ref.target_name)

    def _compose_problem(self, ref: _Ref) -> str | None:
        """Why GRACE cannot scale this service with the configured file; None when it can."""
        path = self._compose_files.get(ref.project)
        if path is None:
            known = ", ".join(sorted(self._compose_files)) or "none"
            return f"compose project {ref.project!r} is not configured (configured: {known})"
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            return f"cannot read compose file {path} of project {ref.project!r}: {exc}"
        services = data.get("services") if isinstance(data, dict) else None
        if not isinstance(services, dict) or ref.name not in services:
            defined = ", ".join(sorted(map(str, services or {}))) or "none"
            return f"compose file {path} defines no service {ref.name!r} (it defines: {defined})"
        return None

    async def available(self) -> Availability:
        try:
            await asyncio.to_thread(self._ping)
        except (DockerException, OSError) as exc:
            return Availability(
                ok=False, reason=f"no Docker daemon answers at {self._host}: {_why(exc)}"
            )
        return Availability(ok=True)

    def _ping(self) -> None:
        with contextlib.closing(self._client(_PING_TIMEOUT_S)) as client:
            client.ping()

    # -- snapshot and restore ---------------------------------------------

    def describe_snapshot(self, target: Target) -> str:
        ref = _ref_of(target)
        if ref.kind == COMPOSE:
            return (
                f"the running replica count of {ref.shown}; rollback scales it back to "
                "that count with docker compose"
            )
        return (
            f"the state of {ref.shown} (status, health, start time); a restart cannot be "
            "undone, so rollback only confirms it is running and healthy again, and "
            "fails (holding the target) when it is not"
        )

    async def snapshot(self, target: Target, incident_id: int) -> Snapshot:
        """A target that does not exist is refused here, before anything changes."""
        ref = _ref_of(target)
        with _refused_when_missing():
            if ref.kind == COMPOSE:
                location, state = await self._service_snapshot(ref)
            else:
                location, state = await self._container_snapshot(ref)
        return Snapshot(
            incident_id=incident_id,
            target=target,
            location=location,
            size_bytes=0,
            taken_at=self._clock.now(),
            state=state,
        )

    async def _container_snapshot(self, ref: _Ref) -> tuple[str, dict[str, Any]]:
        state = await self._container(ref)
        location = f"docker container {ref.name} ({state.id[:12]}): {state.describe()}"
        return location, {
            "kind": CONTAINER,
            "id": state.id,
            "status": state.status,
            "health": state.health,
            "started_at": state.started_at,
        }

    async def _service_snapshot(self, ref: _Ref) -> tuple[str, dict[str, Any]]:
        path = await self._compose_file(ref)
        running = await self._running(ref)
        plural = "" if len(running) == 1 else "s"
        location = f"{ref.shown}: {len(running)} replica{plural} running (compose file {path})"
        return location, {"kind": COMPOSE, "replicas": len(running), "containers": running}

    async def restore(self, snapshot: Snapshot) -> None:
        ref = _ref_of(snapshot.target)
        if ref.kind == COMPOSE:
            await self._scale_back(ref, int(snapshot.state["replicas"]))
        else:
            await self._confirm_recovered(ref)

    async def _scale_back(self, ref: _Ref, replicas: int) -> None:
        if len(await self._running(ref)) == replicas:
            return
        await self._compose_scale(ref, replicas, until=None)
        running = await self._running(ref)
        if len(running) != replicas:
            raise DockerError(
                f"could not scale {ref.shown} back to {replicas}: {len(running)} running"
            )

    async def _confirm_recovered(self, ref: _Ref) -> None:
        ok, [state] = await self._settle(
            lambda: self._states_of(ref), "healthy", time.monotonic() + self._wait_s
        )
        if not ok:
            raise DockerError(
                f"cannot roll back the restart of {ref.shown}: a restart cannot be undone, "
                f"and it is {state.describe()}"
            )

    # -- actions -----------------------------------------------------------

    async def run(self, step: PlannedStep, target: Target, snapshot: Snapshot) -> StepResult:
        ref = _ref_of(target)
        model = lookup(EXECUTOR_NAME, self.spec.actions, "action", step.action)
        params = model.model_validate(step.params)
        started = time.perf_counter()
        until = time.monotonic() + max(step.timeout_s - _ANSWER_MARGIN_S, 0)
        try:
            if isinstance(params, RestartParams):
                ok, detail = await self._restart(ref, params, until)
            elif isinstance(params, ScaleParams):
                ok, detail = await self._scale(ref, params, until)
            else:  # pragma: no cover - the spec and this dispatch are edited together
                raise ValueError(f"docker action {step.action!r} has no implementation")
        except DockerError as exc:  # its message names the target and what went wrong
            ok, detail = False, str(exc)
        return StepResult(
            action=step.action, ok=ok, detail=detail, seconds=time.perf_counter() - started
        )

    async def _restart(self, ref: _Ref, params: RestartParams, until: float) -> tuple[bool, str]:
        if ref.kind != CONTAINER:
            return False, f"refused: restart acts on one container, and {ref.shown} is not one"
        before = await self._container(ref)
        started = time.monotonic()
        await self._api(
            f"restarting {ref.shown}",
            lambda client: client.restart(before.id, timeout=params.timeout_s),
        )
        until = min(until, time.monotonic() + self._wait_s)
        ok, [after] = await self._settle(lambda: self._states_of(ref), "healthy", until)
        took = time.monotonic() - started
        was = f"restarted {ref.shown} (it was {before.describe()})"
        if ok:
            return True, f"{was}: {after.describe()} after {took:.1f} s"
        return False, f"{was}, but it did not recover within {took:.1f} s: it is {after.describe()}"

    async def _scale(self, ref: _Ref, params: ScaleParams, until: float) -> tuple[bool, str]:
        if ref.kind != COMPOSE:
            return False, f"refused: scale acts on a compose service, and {ref.shown} is not one"
        before = len(await self._running(ref))
        want = params.replicas if params.replicas is not None else before + (params.delta or 0)
        if not 0 <= want <= _MAX_REPLICAS:
            return False, (
                f"refused: {ref.shown} has {before} running; scaling it to {want} is outside "
                f"0..{_MAX_REPLICAS}"
            )
        await self._compose_scale(ref, want, until)
        after = len(await self._running(ref))
        if after != want:
            return False, f"scaled {ref.shown} from {before} to {want}, but {after} are running"
        return True, f"scaled {ref.shown} from {before} to {after} running replicas"

    # -- checks ------------------------------------------------------------

    async def check(self, check: PlannedCheck, target: Target) -> CheckResult:
        """A sick or missing container is an answer (ok=False), never an exception."""
        ref = _ref_of(target)
        model = lookup(EXECUTOR_NAME, self.spec.checks, "check", check.check)
        params = model.model_validate(check.params)
        try:
            if isinstance(params, HealthyParams):
                ok, detail = await self._meets(ref, "healthy", params.within_s)
            elif isinstance(params, RunningParams):
                ok, detail = await self._meets(ref, "running", params.within_s)
            elif isinstance(params, ReplicasAtLeastParams):
                ok, detail = await self._replicas_at_least(ref, params.count)
            else:  # pragma: no cover - the spec and this dispatch are edited together
                raise ValueError(f"docker check {check.check!r} has no implementation")
        except DockerError as exc:
            ok, detail = False, str(exc)
        return CheckResult(check=check.check, ok=ok, detail=detail)

    async def _meets(self, ref: _Ref, want: Want, within_s: float) -> tuple[bool, str]:
        started = time.monotonic()
        ok, states = await self._settle(lambda: self._states_of(ref), want, started + within_s)
        if not states:
            return False, f"{ref.shown} has no containers"
        shown = "; ".join(
            f"{s.name}: {s.describe()}" if ref.kind == COMPOSE else s.describe() for s in states
        )
        verdict = f"is {want}" if ok else f"is not {want} after {time.monotonic() - started:.1f} s"
        return ok, f"{ref.shown} {verdict}: {shown}"

    async def _replicas_at_least(self, ref: _Ref, count: int) -> tuple[bool, str]:
        if ref.kind != COMPOSE:
            return False, f"replicas_at_least needs a compose service, and {ref.shown} is not one"
        running = len(await self._running(ref))
        sign = ">=" if running >= count else "<"
        return running >= count, f"{ref.shown}: {running} running {sign} {count}"

    # -- benchmarks --------------------------------------------------------

    async def measure(self, benchmark: PlannedBenchmark, target: Target) -> float:
        """Median seconds of a GET on the container's published port: only
        time, whether the answer was good is the checks' business."""
        ref = _ref_of(target)
        model = lookup(EXECUTOR_NAME, self.spec.benchmarks, "benchmark", benchmark.benchmark)
        params = model.model_validate(benchmark.params)
        if not isinstance(params, HttpLatencyParams):  # pragma: no cover - one benchmark
            raise ValueError(f"docker benchmark {benchmark.benchmark!r} has no implementation")
        with _refused_when_missing():
            states = [s for s in await self._states_of(ref) if s.up]
        if not states:
            raise DockerError(f"{ref.shown} has no running container to time")
        url = f"http://{_published(states[0], params.port, ref)}{params.path}"
        rounds = [await _timed_get(url, ref) for _ in range(params.repeat)]
        return statistics.median(rounds)

    # -- waiting -----------------------------------------------------------

    async def _settle(
        self, probe: Callable[[], Awaitable[list[_State]]], want: Want, until: float
    ) -> tuple[bool, list[_State]]:
        """Probe until every container meets `want`, one stays down for good,
        or `until` (monotonic) passes; the last states say how it went."""
        first_seen_up: dict[tuple[str, str], float] = {}  # (id, start time) -> monotonic
        while True:
            states = await probe()
            now = time.monotonic()
            steady = []
            for s in states:
                watched = now - first_seen_up.setdefault((s.id, s.started_at), now)
                steady.append(s.up and max(watched, s.up_for()) >= _STEADY_S)
            if states and all(s.meets(want, ok) for s, ok in zip(states, steady, strict=True)):
                return True, states
            if any(s.stays_down for s in states) or now >= until:
                return False, states
            await asyncio.sleep(max(min(self._poll_s, until - now), 0))

    # -- talking to the daemon ---------------------------------------------

    def _client(self, timeout: float) -> docker.APIClient:
        """A new client; the first one asks the daemon its API version
        (docker-py's default may be newer than the daemon's)."""
        client = docker.APIClient(
            **self._connection, version=self._api_version or "auto", timeout=timeout
        )
        self._api_version = client.api_version
        return client

    async def _api(self, doing: str, call: Callable[[docker.APIClient], T]) -> T:
        return await asyncio.to_thread(self._api_sync, doing, call)

    def _api_sync(self, doing: str, call: Callable[[docker.APIClient], T]) -> T:
        """One call on its own client, its errors sorted: NotFound is _Missing,
        a 5xx or an unreachable daemon is transient, any other answer is final."""
        try:
            with contextlib.closing(self._client(_API_TIMEOUT_S)) as client:
                return call(client)
        except NotFound as exc:
            raise _Missing(f"{doing}: {_explanation(exc)}") from exc
        except APIError as exc:
            if exc.is_server_error() or exc.status_code == 429:
                raise TransientError(
                    f"{doing}: the Docker daemon at {self._host} answered {_explanation(exc)}"
                ) from exc
            raise DockerError(f"{doing}: the Docker daemon refused: {_explanation(exc)}") from exc
        except (DockerException, OSError) as exc:
            raise TransientError(
                f"{doing}: no Docker daemon answers at {self._host}: {_why(exc)}"
            ) from exc

    async def _container(self, ref: _Ref) -> _State:
        [state] = await self._states_of(ref)
        return state

    async def _states_of(self, ref: _Ref) -> list[_State]:
        """The container, or every container of the compose service (stopped ones too)."""
        if ref.kind == CONTAINER:
            try:
                info = await self._api(
                    f"inspecting {ref.shown}", lambda client: client.inspect_container(ref.name)
                )
            except _Missing as exc:
                raise _Missing(f"{ref.shown} does not exist") from exc
            state = _State.of(info)
            if state.name != ref.name:
                # The daemon also finds containers by ID prefix; the allowlist is about names.
                raise _Missing(
                    f"{ref.shown} does not exist (the daemon matched container "
                    f"{state.id[:12]}, named {state.name!r}, by its ID)"
                )
            return [state]
        return await self._api(f"inspecting {ref.shown}", lambda c: self._service_states(c, ref))

    def _service_states(self, client: docker.APIClient, ref: _Ref) -> list[_State]:
        listed = client.containers(all=True, filters={"label": _service_labels(ref)})
        states = [_State.of(client.inspect_container(c["Id"])) for c in listed]
        return sorted(states, key=lambda s: s.name)

    async def _running(self, ref: _Ref) -> list[str]:
        """Names of the service's running containers: its replica count, as compose scales it."""
        listed = await self._api(
            f"listing the containers of {ref.shown}",
            lambda client: client.containers(filters={"label": _service_labels(ref)}),
        )
        return sorted(str(c["Names"][0]).lstrip("/") for c in listed if c.get("State") == "running")

    # -- compose -----------------------------------------------------------

    async def _compose_file(self, ref: _Ref) -> Path:
        problem = await asyncio.to_thread(self._compose_problem, ref)
        if problem:
            raise DockerError(f"cannot scale {ref.shown}: {problem}")
        return self._compose_files[ref.project]

    async def _compose_scale(self, ref: _Ref, replicas: int, until: float | None) -> None:
        """`up --scale`: --no-recreate, so scaling never recreates the
        replicas already running (a changed compose file would otherwise)."""
        path = await self._compose_file(ref)
        try:
            tool = await self._compose()
        except DockerError as exc:
            raise DockerError(f"cannot scale {ref.shown}: {exc}") from exc
        args = ["-f", str(path), "-p", ref.project, "up", "-d", "--no-deps", "--no-recreate"]
        args += ["--scale", f"{ref.name}={replicas}", ref.name]
        timeout = None if until is None else max(until - time.monotonic(), 0)
        doing = f"scaling {ref.shown} to {replicas} with {' '.join(tool)}"
        try:
            status, output = await self._exec([*tool, *args], timeout)
        except TimeoutError as exc:
            raise TransientError(f"{doing} did not finish within {timeout:g} s") from exc
        if status == 0:
            return
        tail = _tail(output)
        if _UNREACHABLE.search(output):
            raise TransientError(
                f"{doing} failed: no Docker daemon answers at {self._host}: {tail}"
            )
        raise DockerError(f"{doing} failed with exit status {status}: {tail}")

    async def _compose(self) -> list[str]:
        """`docker compose` when the v2 plugin answers, else `docker-compose`."""
        if self._compose_tool is None:
            with contextlib.suppress(OSError, TimeoutError):
                status, _ = await self._exec(["docker", "compose", "version"], _TOOL_TIMEOUT_S)
                if status == 0:
                    self._compose_tool = ["docker", "compose"]
            if self._compose_tool is None and shutil.which("docker-compose"):
                self._compose_tool = ["docker-compose"]
        if self._compose_tool is None:
            raise DockerError("neither `docker compose` (v2) nor `docker-compose` is installed")
        return self._compose_tool

    async def _exec(self, argv: list[str], within_s: float | None) -> tuple[int, str]:
        """Run a command against our daemon; killed if the step is cut off or times out."""
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "DOCKER_HOST": self._host},
        )
        try:
            async with asyncio.timeout(within_s):
                output, _ = await proc.communicate()
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        text = output[-_KEPT_OUTPUT_BYTES:].decode("utf-8", "replace")
        return proc.returncode or 0, text


# -- helpers ---------------------------------------------------------------------------


@contextlib.contextmanager
def _refused_when_missing() -> Iterator[None]:
    """At the first call on a target, one that does not exist is refused."""
    try:
        yield
    except _Missing as exc:
        raise TargetRefused(str(exc)) from exc


def _service_labels(ref: _Ref) -> list[str]:
    """The labels compose puts on a service's containers; one-off `run` containers left out."""
    return [
        f"{_PROJECT_LABEL}={ref.project}",
        f"{_SERVICE_LABEL}={ref.name}",
        f"{_ONEOFF_LABEL}=False",
    ]


def _published(state: _State, port: int, ref: _Ref) -> str:
    """host:port where the container's TCP `port` is published; all-interfaces means loopback."""
    bindings = state.ports.get(f"{port}/tcp") or []
    if not bindings:
        raise DockerError(f"{ref.shown} ({state.name}) publishes no host port for {port}/tcp")
    host = str(bindings[0].get("HostIp") or "")
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return (
        f"[{host}]:{bindings[0]['HostPort']}"
        if ":" in host
        else f"{host}:{bindings[0]['HostPort']}"
    )


async def _timed_get(url: str, ref: _Ref) -> float:
    """Seconds for one GET on its own connection, as a new client would see it."""
    timeout = aiohttp.ClientTimeout(total=_HTTP_TIMEOUT_S)
    connector = aiohttp.TCPConnector(force_close=True)
    try:
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            started = time.perf_counter()
            async with session.get(url, allow_redirects=False) as response:
                await response.read()
            return time.perf_counter() - started
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise TransientError(f"GET {url} of {ref.shown} failed: {_why(exc)}") from exc


def _explanation(exc: APIError) -> str:
    return shorten(f"{exc.status_code} {exc.explanation or exc}", _OUTPUT_CHARS)


def _why(exc: BaseException) -> str:
    return shorten(str(exc) or type(exc).__name__, _OUTPUT_CHARS)


def _tail(output: str) -> str:
    """The last lines of a command's output, where its error is, ready to show."""
    lines = [line for line in output.splitlines() if line.strip()]
    return repr(shorten(" | ".join(lines[-3:]), _OUTPUT_CHARS)) if lines else "no output"
