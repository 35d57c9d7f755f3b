"""Compose-project operations: scale a service of a project the operator
configured with its compose file, and count its running replicas.

A scale's snapshot records the running replica count, and rollback scales the
service back to it.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, model_validator

from engine.executors.common import shorten
from engine.executors.containers.container import service_labels
from engine.executors.containers.daemon import OUTPUT_CHARS, DockerError
from engine.executors.containers.operations import OPS, Answer, Docker, Kind
from engine.executors.containers.targets import COMPOSE, Ref
from engine.ports import Params, TransientError

_MAX_REPLICAS = 100

# What compose prints when the daemon, not the request, is the problem.
_UNREACHABLE = re.compile(
    r"connect to (the )?docker daemon|error while fetching server api version"
    r"|connection (refused|aborted|reset)|timed? ?out|\b5\d\d server error",
    re.IGNORECASE,
)


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


class ReplicasAtLeastParams(Params):
    count: int = Field(ge=1, le=_MAX_REPLICAS)


def compose_problem(files: Mapping[str, Path], ref: Ref) -> str | None:
    """Why GRACE cannot scale this service with the configured file; None when it can."""
    path = files.get(ref.project)
    if path is None:
        known = ", ".join(sorted(files)) or "none"
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


# -- operations ------------------------------------------------------------------------


@OPS.actions("scale", ScaleParams)
async def _scale(docker: Docker, ref: Ref, params: ScaleParams, until: float) -> Answer:
    if ref.kind != COMPOSE:
        return False, f"refused: scale acts on a compose service, and {ref.shown} is not one"
    before = len(await _running(docker, ref))
    want = params.replicas if params.replicas is not None else before + (params.delta or 0)
    if not 0 <= want <= _MAX_REPLICAS:
        return False, (
            f"refused: {ref.shown} has {before} running; scaling it to {want} is outside "
            f"0..{_MAX_REPLICAS}"
        )
    await _scale_to(docker, ref, want, until)
    after = len(await _running(docker, ref))
    if after != want:
        return False, f"scaled {ref.shown} from {before} to {want}, but {after} are running"
    return True, f"scaled {ref.shown} from {before} to {after} running replicas"


@OPS.checks("replicas_at_least", ReplicasAtLeastParams)
async def _replicas_at_least(docker: Docker, ref: Ref, params: ReplicasAtLeastParams) -> Answer:
    if ref.kind != COMPOSE:
        return False, f"replicas_at_least needs a compose service, and {ref.shown} is not one"
    running = len(await _running(docker, ref))
    sign = ">=" if running >= params.count else "<"
    return running >= params.count, f"{ref.shown}: {running} running {sign} {params.count}"


# -- snapshot and rollback -------------------------------------------------------------


def _describe(ref: Ref) -> str:
    return (
        f"the running replica count of {ref.shown}; rollback scales it back to "
        "that count with docker compose"
    )


async def _snapshot(docker: Docker, ref: Ref) -> tuple[str, dict[str, Any]]:
    path = await _compose_file(docker, ref)
    running = await _running(docker, ref)
    plural = "" if len(running) == 1 else "s"
    location = f"{ref.shown}: {len(running)} replica{plural} running (compose file {path})"
    return location, {"kind": COMPOSE, "replicas": len(running), "containers": running}


async def _scale_back(docker: Docker, ref: Ref, state: Mapping[str, Any]) -> None:
    replicas = int(state["replicas"])
    if len(await _running(docker, ref)) == replicas:
        return
    await _scale_to(docker, ref, replicas, until=None)
    running = await _running(docker, ref)
    if len(running) != replicas:
        raise DockerError(f"could not scale {ref.shown} back to {replicas}: {len(running)} running")


SERVICES = Kind(describe=_describe, snapshot=_snapshot, restore=_scale_back)


# -- through compose ---------------------------------------------------------------------


async def _running(docker: Docker, ref: Ref) -> list[str]:
    """Names of the service's running containers: its replica count, as compose scales it."""
    listed = await docker.daemon.api(
        f"listing the containers of {ref.shown}",
        lambda client: client.containers(filters={"label": service_labels(ref)}),
    )
    return sorted(str(c["Names"][0]).lstrip("/") for c in listed if c.get("State") == "running")


async def _compose_file(docker: Docker, ref: Ref) -> Path:
    problem = await asyncio.to_thread(compose_problem, docker.compose_files, ref)
    if problem:
        raise DockerError(f"cannot scale {ref.shown}: {problem}")
    return docker.compose_files[ref.project]


async def _scale_to(docker: Docker, ref: Ref, replicas: int, until: float | None) -> None:
    """`up --scale`: --no-recreate, so scaling never recreates the
    replicas already running (a changed compose file would otherwise)."""
    path = await _compose_file(docker, ref)
    try:
        tool = await docker.daemon.compose_tool()
    except DockerError as exc:
        raise DockerError(f"cannot scale {ref.shown}: {exc}") from exc
    args = ["-f", str(path), "-p", ref.project, "up", "-d", "--no-deps", "--no-recreate"]
    args += ["--scale", f"{ref.name}={replicas}", ref.name]
    timeout = None if until is None else max(until - time.monotonic(), 0)
    doing = f"scaling {ref.shown} to {replicas} with {' '.join(tool)}"
    try:
        status, output = await docker.daemon.command([*tool, *args], timeout)
    except TimeoutError as exc:
        raise TransientError(f"{doing} did not finish within {timeout:g} s") from exc
    if status == 0:
        return
    tail = _tail(output)
    if _UNREACHABLE.search(output):
        raise TransientError(
            f"{doing} failed: no Docker daemon answers at {docker.daemon.host}: {tail}"
        )
    raise DockerError(f"{doing} failed with exit status {status}: {tail}")


def _tail(output: str) -> str:
    """The last lines of a command's output, where its error is, ready to show."""
    lines = [line for line in output.splitlines() if line.strip()]
    return repr(shorten(" | ".join(lines[-3:]), OUTPUT_CHARS)) if lines else "no output"
