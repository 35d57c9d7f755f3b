"""Container operations: restart one and wait until it is healthy again, check
that containers are healthy or running, time a GET on a published port.

A restart cannot be undone: its snapshot records how the container was, and
rollback only confirms that it is up again, raising when it is not so that the
engine keeps its hands off.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import aiohttp
from docker import APIClient
from pydantic import Field

from engine.executors.common import RepeatParams, median_seconds_async, poll_until
from engine.executors.containers.daemon import DockerError, Missing, refused_when_missing, why
from engine.executors.containers.operations import OPS, Answer, Docker, Kind
from engine.executors.containers.state import ContainerState, Want
from engine.executors.containers.targets import COMPOSE, CONTAINER, Ref
from engine.ports import Params, TransientError, WaitingParams

_HTTP_TIMEOUT_S = 5.0
# Without a health check, "running" is believed only once the container has
# stayed up this long: one that crashes on start is briefly running too.
_STEADY_S = 2.0

_PROJECT_LABEL = "com.docker.compose.project"
_SERVICE_LABEL = "com.docker.compose.service"
_ONEOFF_LABEL = "com.docker.compose.oneoff"


class RestartParams(Params):
    timeout_s: int = Field(default=10, ge=0, le=600, description="grace before SIGKILL")


class HealthyParams(WaitingParams):
    within_s: float = Field(default=30, ge=0, le=600)


class RunningParams(WaitingParams):
    within_s: float = Field(default=30, ge=0, le=600)


class HttpLatencyParams(RepeatParams):
    port: int = Field(ge=1, le=65535, description="the container port, published on the host")
    path: str = Field(default="/", pattern=r"^/\S*$")


# -- operations ------------------------------------------------------------------------


@OPS.actions("restart", RestartParams)
async def _restart(docker: Docker, ref: Ref, params: RestartParams, until: float) -> Answer:
    if ref.kind != CONTAINER:
        return False, f"refused: restart acts on one container, and {ref.shown} is not one"
    before = await _container(docker, ref)
    started = time.monotonic()
    await docker.daemon.api(
        f"restarting {ref.shown}",
        lambda client: client.restart(before.id, timeout=params.timeout_s),
    )
    until = min(until, time.monotonic() + docker.wait_s)
    ok, [after] = await _settle(docker, ref, "healthy", until)
    took = time.monotonic() - started
    was = f"restarted {ref.shown} (it was {before.describe()})"
    if ok:
        return True, f"{was}: {after.describe()} after {took:.1f} s"
    return False, f"{was}, but it did not recover within {took:.1f} s: it is {after.describe()}"


@OPS.checks("healthy", HealthyParams)
async def _healthy(docker: Docker, ref: Ref, params: HealthyParams) -> Answer:
    return await _meets(docker, ref, "healthy", params.within_s)


@OPS.checks("running", RunningParams)
async def _running(docker: Docker, ref: Ref, params: RunningParams) -> Answer:
    return await _meets(docker, ref, "running", params.within_s)


async def _meets(docker: Docker, ref: Ref, want: Want, within_s: float) -> Answer:
    started = time.monotonic()
    ok, states = await _settle(docker, ref, want, started + within_s)
    if not states:
        return False, f"{ref.shown} has no containers"
    shown = "; ".join(
        f"{s.name}: {s.describe()}" if ref.kind == COMPOSE else s.describe() for s in states
    )
    verdict = f"is {want}" if ok else f"is not {want} after {time.monotonic() - started:.1f} s"
    return ok, f"{ref.shown} {verdict}: {shown}"


@OPS.benchmarks("http_latency", HttpLatencyParams)
async def _http_latency(docker: Docker, ref: Ref, params: HttpLatencyParams) -> float:
    """Median seconds of a GET on the container's published port: only
    time, whether the answer was good is the checks' business."""
    with refused_when_missing():
        states = [s for s in await states_of(docker, ref) if s.up]
    if not states:
        raise DockerError(f"{ref.shown} has no running container to time")
    url = f"http://{_published(states[0], params.port, ref)}{params.path}"
    timeout = aiohttp.ClientTimeout(total=_HTTP_TIMEOUT_S)
    connector = aiohttp.TCPConnector(force_close=True)  # each GET on its own connection
    try:
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

            async def get() -> None:
                async with session.get(url, allow_redirects=False) as response:
                    await response.read()

            return await median_seconds_async(get, params.repeat)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise TransientError(f"GET {url} of {ref.shown} failed: {why(exc)}") from exc


# -- snapshot and rollback -------------------------------------------------------------


def _describe(ref: Ref) -> str:
    return (
        f"the state of {ref.shown} (status, health, start time); a restart cannot be "
        "undone, so rollback only confirms it is running and healthy again, and "
        "fails (holding the target) when it is not"
    )


async def _snapshot(docker: Docker, ref: Ref) -> tuple[str, dict[str, Any]]:
    state = await _container(docker, ref)
    location = f"docker container {ref.name} ({state.id[:12]}): {state.describe()}"
    return location, {
        "kind": CONTAINER,
        "id": state.id,
        "status": state.status,
        "health": state.health,
        "started_at": state.started_at,
    }


async def _confirm_recovered(docker: Docker, ref: Ref, _: Mapping[str, Any]) -> None:
    ok, [state] = await _settle(docker, ref, "healthy", time.monotonic() + docker.wait_s)
    if not ok:
        raise DockerError(
            f"cannot roll back the restart of {ref.shown}: a restart cannot be undone, "
            f"and it is {state.describe()}"
        )


CONTAINERS = Kind(describe=_describe, snapshot=_snapshot, restore=_confirm_recovered)


# -- reading and waiting -----------------------------------------------------------------


async def states_of(docker: Docker, ref: Ref) -> list[ContainerState]:
    """The container, or every container of the compose service (stopped ones too)."""
    if ref.kind == COMPOSE:
        return await docker.daemon.api(
            f"inspecting {ref.shown}", lambda client: _service_states(client, ref)
        )
    try:
        info = await docker.daemon.api(
            f"inspecting {ref.shown}", lambda client: client.inspect_container(ref.name)
        )
    except Missing as exc:
        raise Missing(f"{ref.shown} does not exist") from exc
    state = ContainerState.of(info)
    if state.name != ref.name:
        # The daemon also finds containers by ID prefix; the allowlist is about names.
        raise Missing(
            f"{ref.shown} does not exist (the daemon matched container "
            f"{state.id[:12]}, named {state.name!r}, by its ID)"
        )
    return [state]


async def _container(docker: Docker, ref: Ref) -> ContainerState:
    [state] = await states_of(docker, ref)
    return state


def _service_states(client: APIClient, ref: Ref) -> list[ContainerState]:
    listed = client.containers(all=True, filters={"label": service_labels(ref)})
    states = [ContainerState.of(client.inspect_container(c["Id"])) for c in listed]
    return sorted(states, key=lambda s: s.name)


def service_labels(ref: Ref) -> list[str]:
    """The labels compose puts on a service's containers; one-off `run` containers left out."""
    return [
        f"{_PROJECT_LABEL}={ref.project}",
        f"{_SERVICE_LABEL}={ref.name}",
        f"{_ONEOFF_LABEL}=False",
    ]


async def _settle(
    docker: Docker, ref: Ref, want: Want, until: float
) -> tuple[bool, list[ContainerState]]:
    """Read until every container meets `want`, one stays down for good,
    or `until` (monotonic) passes; the last states say how it went."""
    first_seen_up: dict[tuple[str, str], float] = {}  # (id, start time) -> monotonic

    def met(states: list[ContainerState]) -> bool:
        now = time.monotonic()
        steady = [
            s.up
            and max(now - first_seen_up.setdefault((s.id, s.started_at), now), s.up_for())
            >= _STEADY_S
            for s in states
        ]
        return bool(states) and all(s.meets(want, ok) for s, ok in zip(states, steady, strict=True))

    states, _, _ = await poll_until(
        lambda: states_of(docker, ref),
        lambda states: met(states) or any(s.stays_down for s in states),
        max(until - time.monotonic(), 0.0),
        docker.poll_s,
    )
    return met(states), states


def _published(state: ContainerState, port: int, ref: Ref) -> str:
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
