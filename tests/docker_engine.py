"""A real Docker daemon for tests, and the containers they run on it.

`docker_engine` is the daemon that already answers (DOCKER_HOST, else the
default socket), or a `dockerd` started here in its own session with its data,
sockets and log under a temp dir, stopped when the test session ends. When
neither can be had the fixture fails with the reason: these tests never skip.
`scripts/test-deps.sh` installs what they need (docker.io, busybox-static,
docker-compose).

No registry can be reached, so the images are built `FROM scratch` with
Debian's static busybox copied in (tests/images). Every container a test
starts carries TEST_LABEL, publishes its ports on 127.0.0.1 only, and is
removed after the test, failed or not.

Use the fixtures by importing their functions into a test module or conftest,
`from tests.docker_engine import containers_fixture, docker_engine_fixture`
and so on, with `# noqa: F401`. Each is registered under its `name=`
(containers, docker_engine, docker_client, docker_images), so the import does
not shadow the parameters of the tests that use them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml
from docker.errors import BuildError, DockerException
from docker.models.containers import Container

TEST_LABEL = "grace.test"
IMAGES_DIR = Path(__file__).resolve().parent / "images"
BUSYBOX = Path("/bin/busybox")
HEALTHY = "grace-test/healthy"
TURNS_UNHEALTHY = "grace-test/turns-unhealthy"
EXITS = "grace-test/exits"
HTTP_PORT = 8080
HTTP_HEALTH = ("wget", "-q", "-O", "-", f"http://127.0.0.1:{HTTP_PORT}/health")
"""The health check of the HTTP images: prints the body, or wget's error."""

DEFAULT_HOST = "unix:///var/run/docker.sock"
_START_WITHIN_S = 60.0
_STOP_WITHIN_S = 20.0
_POLL_S = 0.1
_LOG_TAIL_CHARS = 2000


def why_not_answering(host: str) -> str | None:
    """None when a Docker daemon answers a ping at `host`; else why not."""
    try:
        with contextlib.closing(docker.APIClient(base_url=host, version="auto", timeout=5)) as api:
            api.ping()
    except (DockerException, OSError) as exc:
        return str(exc) or type(exc).__name__
    return None


@dataclass
class Dockerd:
    """A dockerd this session started; `stop` ends it and its containers."""

    proc: subprocess.Popen[bytes]
    root: Path
    host: str

    @property
    def log(self) -> Path:
        return self.root / "dockerd.log"

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-_LOG_TAIL_CHARS:]
        except OSError as exc:
            return f"(no log: {exc})"

    def stop(self) -> None:
        """SIGTERM (dockerd stops its containers and unmounts), then SIGKILL
        the whole session if it lingers, so the run never waits on it."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=_STOP_WITHIN_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=_STOP_WITHIN_S)
        # Deleting under a mount left behind would delete through it: keep the dir then.
        if not _mounts_under(self.root):
            shutil.rmtree(self.root, ignore_errors=True)


def start_dockerd() -> Dockerd:
    """Start dockerd detached (its own session), output to a log under a temp dir,
    and wait until it answers; fail with its log when it does not."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    binary = shutil.which("dockerd", path=path)
    if binary is None:
        pytest.fail(
            "no Docker daemon answers and dockerd is not installed: "
            "run scripts/test-deps.sh as root (it installs docker.io)"
        )
    root = Path(tempfile.mkdtemp(prefix="grace-dockerd-"))
    host = f"unix://{root}/docker.sock"
    with open(root / "dockerd.log", "wb") as log:
        proc = subprocess.Popen(
            [
                binary,
                "--data-root",
                str(root / "data"),
                "--exec-root",
                str(root / "exec"),
                "--pidfile",
                str(root / "dockerd.pid"),
                "-H",
                host,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    daemon = Dockerd(proc, root, host)
    deadline = time.monotonic() + _START_WITHIN_S
    while (why := why_not_answering(host)) is not None:
        if proc.poll() is not None or time.monotonic() > deadline:
            state = (
                "exited" if proc.poll() is not None else f"gave no answer in {_START_WITHIN_S} s"
            )
            daemon.stop()
            pytest.fail(
                f"no Docker daemon answers at {os.environ.get('DOCKER_HOST') or DEFAULT_HOST}, "
                f"and the dockerd started here {state} ({why}); its log:\n{daemon.log_tail()}"
            )
        time.sleep(_POLL_S)
    return daemon


def _mounts_under(root: Path) -> list[str]:
    prefix = f"{root}/"
    with open("/proc/self/mounts") as mounts:
        return [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]


@pytest.fixture(scope="session", name="docker_engine")
def docker_engine_fixture() -> Iterator[str]:
    """A DOCKER_HOST URL where a Docker daemon answers."""
    existing = os.environ.get("DOCKER_HOST") or DEFAULT_HOST
    if why_not_answering(existing) is None:
        yield existing
        return
    daemon = start_dockerd()
    try:
        yield daemon.host
    finally:
        daemon.stop()


@pytest.fixture(scope="session", name="docker_client")
def docker_client_fixture(docker_engine: str) -> Iterator[docker.DockerClient]:
    client = docker.DockerClient(base_url=docker_engine, version="auto", timeout=60)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session", name="docker_images")
def docker_images_fixture(docker_client: docker.DockerClient) -> Mapping[str, str]:
    """Build the test images once: folder name -> tag. Clears containers a
    crashed earlier run left behind first."""
    remove_test_containers(docker_client)
    if not BUSYBOX.is_file():
        pytest.fail(f"{BUSYBOX} is missing: run scripts/test-deps.sh (installs busybox-static)")
    return {
        folder.name: build_image(docker_client, folder)
        for folder in sorted(IMAGES_DIR.iterdir())
        if (folder / "Dockerfile").is_file()
    }


def build_image(client: docker.DockerClient, folder: Path) -> str:
    tag = f"grace-test/{folder.name}"
    with tempfile.TemporaryDirectory(prefix="grace-image-") as context:
        shutil.copytree(folder, context, dirs_exist_ok=True)
        shutil.copy2(BUSYBOX, Path(context) / "busybox")
        try:
            client.images.build(
                path=context, tag=tag, rm=True, forcerm=True, labels={TEST_LABEL: "1"}
            )
        except BuildError as exc:
            log = "".join(str(line.get("stream", line.get("error", ""))) for line in exc.build_log)
            pytest.fail(
                f"building {tag} failed: {exc.msg} (is {BUSYBOX} the static one from "
                f"busybox-static?)\n{log[-_LOG_TAIL_CHARS:]}"
            )
    return tag


def remove_test_containers(client: docker.DockerClient) -> None:
    for container in client.containers.list(all=True, filters={"label": TEST_LABEL}):
        with contextlib.suppress(docker.errors.NotFound):  # compose may remove it meanwhile
            container.remove(force=True, v=True)


def healthcheck(command: Sequence[str], *, interval_s: float = 0.5, retries: int = 1) -> dict:
    """docker-py's `healthcheck=`: short intervals, so tests see health change quickly."""
    return {
        "test": ["CMD", *command],
        "interval": int(interval_s * 1e9),
        "timeout": int(2e9),
        "retries": retries,
        "start_period": 0,
    }


def unique(prefix: str) -> str:
    """A fresh name, so a shared daemon's own containers are never touched."""
    return f"{prefix}-{secrets.token_hex(3)}"


@dataclass
class Containers:
    """Runs labelled test containers and watches them; every one is removed after the test."""

    client: docker.DockerClient
    images: Mapping[str, str]

    def run(
        self,
        image: str,
        name: str,
        *,
        env: Mapping[str, str] | None = None,
        health: Sequence[str] | None = None,
        port: int | None = HTTP_PORT,
        **options: Any,
    ) -> Container:
        """Detached, under an init (so SIGTERM stops it at once), its port on
        127.0.0.1 only, with a health check when `health` is given."""
        assert image in self.images.values(), f"{image} is not a test image"
        return self.client.containers.run(
            image,
            name=name,
            detach=True,
            init=True,
            labels={TEST_LABEL: "1"},
            environment=dict(env or {}),
            ports={f"{port}/tcp": ("127.0.0.1", None)} if port else {},
            healthcheck=healthcheck(health) if health else None,
            **options,
        )

    def state(self, name: str) -> dict[str, Any]:
        return self.client.api.inspect_container(name)["State"]

    def wait_for(
        self, name: str, ready: Callable[[dict[str, Any]], bool], within_s: float = 30
    ) -> dict[str, Any]:
        """Poll the container's State until `ready(state)`, or fail after `within_s`."""
        deadline = time.monotonic() + within_s
        while not ready(state := self.state(name)):
            if time.monotonic() > deadline:
                pytest.fail(f"container {name} did not get there within {within_s} s: {state}")
            time.sleep(_POLL_S)
        return state

    def compose_labelled(self, project: str, service: str, *, running: bool = True) -> list[str]:
        """Names of a compose service's containers, sorted."""
        labels = [f"com.docker.compose.project={project}", f"com.docker.compose.service={service}"]
        found = self.client.containers.list(all=not running, filters={"label": labels})
        return sorted(c.name for c in found)


def health_is(status: str) -> Callable[[dict[str, Any]], bool]:
    return lambda state: (state.get("Health") or {}).get("Status") == status


def status_is(status: str) -> Callable[[dict[str, Any]], bool]:
    return lambda state: state.get("Status") == status


def write_compose_file(folder: Path, service: str, image: str) -> Path:
    """A compose file whose service runs `image` like Containers.run does: on
    the default bridge (no network left to clean), ports on 127.0.0.1 only."""
    path = folder / "compose.yml"
    spec = {
        "services": {
            service: {
                "image": image,
                "init": True,
                "network_mode": "bridge",
                "labels": {TEST_LABEL: "1"},
                "ports": [f"127.0.0.1::{HTTP_PORT}"],
                "healthcheck": {
                    "test": ["CMD", *HTTP_HEALTH],
                    "interval": "500ms",
                    "timeout": "2s",
                    "retries": 1,
                },
            }
        }
    }
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(name="containers")
def containers_fixture(
    docker_client: docker.DockerClient, docker_images: Mapping[str, str]
) -> Iterator[Containers]:
    kit = Containers(docker_client, docker_images)
    try:
        yield kit
    finally:
        remove_test_containers(docker_client)
