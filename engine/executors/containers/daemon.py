"""Talking to one Docker daemon, through docker-py and through the compose CLI.

docker-py is blocking: every call opens its own client in a worker thread
(`asyncio.to_thread`) and closes it, so no client is shared between threads.
Compose is driven through its CLI (`docker compose` v2, else `docker-compose`)
in a subprocess that is killed when the step is cut off."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import docker
import docker.utils
from docker.errors import APIError, DockerException, NotFound

from engine.executors.common import shorten
from engine.models import Availability
from engine.ports import TargetRefused, TransientError

_DEFAULT_HOST = "unix:///var/run/docker.sock"
_API_TIMEOUT_S = 30  # docker-py takes whole seconds
_PING_TIMEOUT_S = 5
_TOOL_TIMEOUT_S = 10.0
_KEPT_OUTPUT_BYTES = 4096
OUTPUT_CHARS = 200
"""How much of what the daemon or a container said is shown."""

T = TypeVar("T")


class DockerError(Exception):
    """A failure retrying will not fix: no such container, a request the
    daemon refuses, compose failing on its file."""


class Missing(DockerError):
    """The container or service named does not exist."""


class Daemon:
    """Where the daemon is, and calls and commands against it."""

    def __init__(self, docker_host: str | None) -> None:
        """`docker_host` as DOCKER_HOST spells it; None: the environment's
        (DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH), else the local socket."""
        self._connection: dict[str, Any] = (
            dict(docker.utils.kwargs_from_env())
            if docker_host is None
            else {"base_url": docker_host}
        )
        self.host = str(self._connection.get("base_url") or _DEFAULT_HOST)
        docker.utils.parse_host(self.host)  # a malformed host is a config error: fail now
        self._connection["base_url"] = self.host
        self._api_version: str | None = None
        self._compose_tool: list[str] | None = None

    async def available(self) -> Availability:
        try:
            await asyncio.to_thread(self._ping)
        except (DockerException, OSError) as exc:
            return Availability(
                ok=False, reason=f"no Docker daemon answers at {self.host}: {why(exc)}"
            )
        return Availability(ok=True)

    def _ping(self) -> None:
        with contextlib.closing(self._client(_PING_TIMEOUT_S)) as client:
            client.ping()

    def _client(self, timeout: int) -> docker.APIClient:
        """A new client; the first one asks the daemon its API version
        (docker-py's default may be newer than the daemon's)."""
        client = docker.APIClient(
            **self._connection, version=self._api_version or "auto", timeout=timeout
        )
        self._api_version = client.api_version
        return client

    async def api(self, doing: str, call: Callable[[docker.APIClient], T]) -> T:
        return await asyncio.to_thread(self._api_sync, doing, call)

    def _api_sync(self, doing: str, call: Callable[[docker.APIClient], T]) -> T:
        """One call on its own client, its errors sorted: NotFound is Missing,
        a 5xx or an unreachable daemon is transient, any other answer is final."""
        try:
            with contextlib.closing(self._client(_API_TIMEOUT_S)) as client:
                return call(client)
        except NotFound as exc:
            raise Missing(f"{doing}: {_explanation(exc)}") from exc
        except APIError as exc:
            if exc.is_server_error() or exc.status_code == 429:
                raise TransientError(
                    f"{doing}: the Docker daemon at {self.host} answered {_explanation(exc)}"
                ) from exc
            raise DockerError(f"{doing}: the Docker daemon refused: {_explanation(exc)}") from exc
        except (DockerException, OSError) as exc:
            raise TransientError(
                f"{doing}: no Docker daemon answers at {self.host}: {why(exc)}"
            ) from exc

    async def compose_tool(self) -> list[str]:
        """`docker compose` when the v2 plugin answers, else `docker-compose`."""
        if self._compose_tool is None:
            with contextlib.suppress(OSError, TimeoutError):
                status, _ = await self.command(["docker", "compose", "version"], _TOOL_TIMEOUT_S)
                if status == 0:
                    self._compose_tool = ["docker", "compose"]
            if self._compose_tool is None and shutil.which("docker-compose"):
                self._compose_tool = ["docker-compose"]
        if self._compose_tool is None:
            raise DockerError("neither `docker compose` (v2) nor `docker-compose` is installed")
        return self._compose_tool

    async def command(self, argv: list[str], within_s: float | None) -> tuple[int, str]:
        """Run a command against this daemon; killed if the step is cut off or
        times out. Its exit status, and the end of its output."""
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "DOCKER_HOST": self.host},
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


@contextlib.contextmanager
def refused_when_missing() -> Iterator[None]:
    """At the first call on a target, one that does not exist is refused."""
    try:
        yield
    except Missing as exc:
        raise TargetRefused(str(exc)) from exc


def why(exc: BaseException) -> str:
    return shorten(str(exc) or type(exc).__name__, OUTPUT_CHARS)


def _explanation(exc: APIError) -> str:
    return shorten(f"{exc.status_code} {exc.explanation or exc}", OUTPUT_CHARS)
