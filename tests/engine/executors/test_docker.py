"""The docker executor against a real Docker daemon (tests/docker_engine.py):
real containers that stay healthy, turn unhealthy for good or exit, a real
compose project scaled up and back, and a real alert healed end to end."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from pydantic import ValidationError

from engine.catalog import Catalog
from engine.executors.containers import (
    DockerError,
    DockerExecutor,
    allowlisted,
)
from engine.intake.alertmanager import AlertmanagerAlert, AlertmanagerPayload, parse_alertmanager
from engine.intake.generic import parse_generic
from engine.models import (
    Alert,
    Availability,
    CheckResult,
    Plan,
    PlannedBenchmark,
    PlannedCheck,
    PlannedStep,
    Snapshot,
    StepResult,
    Target,
)
from engine.planning import make_plan
from engine.ports import Executor, TargetRefused, TransientError
from tests.docker_engine import (  # noqa: F401 - fixtures are found by name
    EXITS,
    HEALTHY,
    HTTP_HEALTH,
    HTTP_PORT,
    TURNS_UNHEALTHY,
    Containers,
    containers_fixture,
    docker_client_fixture,
    docker_engine_fixture,
    docker_images_fixture,
    health_is,
    status_is,
    unique,
    write_compose_file,
)
from tests.engine.executors.conftest import FixedClock, builtin_catalog, step_snapshot

WAIT_S = 3.0
ALLOW = ["container:web-*", "compose:shop*/*"]
NOW = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)


def restart(timeout_s: int = 10, step_timeout_s: float = 60) -> PlannedStep:
    return PlannedStep(action="restart", params={"timeout_s": timeout_s}, timeout_s=step_timeout_s)


def scale(**params: int) -> PlannedStep:
    return PlannedStep(action="scale", params=params, timeout_s=60)


def check(name: str, **params: float) -> PlannedCheck:
    return PlannedCheck(check=name, params=params)


@dataclass(frozen=True)
class Project:
    name: str
    compose_file: Path


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(unique("shop").replace("-", ""), write_compose_file(tmp_path, "web", HEALTHY))


@pytest.fixture
def executor(clock: FixedClock, docker_engine: str, project: Project) -> DockerExecutor:
    return DockerExecutor(
        clock,
        docker_host=docker_engine,
        compose_files={project.name: project.compose_file},
        poll_s=0.1,
        wait_s=WAIT_S,
    )


@pytest.fixture
def offline(clock: FixedClock, tmp_path: Path, project: Project) -> DockerExecutor:
    """No daemon behind it: for what must work, or fail, without one."""
    return DockerExecutor(
        clock,
        docker_host=f"unix://{tmp_path}/no-daemon.sock",
        compose_files={project.name: project.compose_file},
    )


def test_satisfies_the_executor_port(executor: DockerExecutor) -> None:
    port: Executor = executor
    assert port.name == "docker"
    assert set(port.spec.actions) == {"restart", "scale"}
    assert set(port.spec.checks) == {"healthy", "running", "replicas_at_least"}
    assert set(port.spec.benchmarks) == {"http_latency"}


# -- targets: refused before any call ---------------------------------------------------


@pytest.mark.parametrize(
    ("value", "allowlist", "name"),
    [
        ("container:web-1", ["container:web-*"], "container:web-1"),
        ("web-1", ["container:web-*"], "container:web-1"),
        ("container:web-1", ["web-*"], "container:web-1"),
        ("container:web.blue_2", ["container:web*"], "container:web.blue_2"),
    ],
)
def test_resolve_accepts_allowlisted_containers(
    offline: DockerExecutor, value: str, allowlist: list[str], name: str
) -> None:
    assert offline.resolve_target(value, allowlist) == Target(executor="docker", name=name)


def test_resolve_accepts_a_configured_compose_service(
    offline: DockerExecutor, project: Project
) -> None:
    target = offline.resolve_target(f"compose:{project.name}/web", ALLOW)
    assert target == Target(executor="docker", name=f"compose:{project.name}/web")


def test_describe_snapshot_says_what_rollback_can_do(
    offline: DockerExecutor, project: Project
) -> None:
    container = offline.describe_snapshot(offline.resolve_target("web-1", ALLOW))
    service = offline.describe_snapshot(
        offline.resolve_target(f"compose:{project.name}/web", ALLOW)
    )
    assert "docker container 'web-1'" in container and "a restart cannot be undone" in container
    assert service.startswith(f"the running replica count of compose service {project.name}/web")


@pytest.mark.parametrize(
    ("name", "pattern", "expected"),
    [
        ("container:web-1", "container:web-*", True),
        ("container:web-1", "web-*", True),
        ("container:web-1", "*", True),
        ("container:web-1", "compose:web-*", False),
        ("compose:shop/web", "web-*", False),
        ("compose:shop/web", "*", False),
        ("compose:shop/web", "compose:shop/*", True),
        ("compose:shop/web", "compose:*/*", True),
        ("compose:shop/web", "compose:*", False),
        ("compose:shop/a/b", "compose:shop/*", False),
        ("compose:shopx/web", "compose:shop/*", False),
        ("container:web1", "container:web?", True),
    ],
)
def test_star_never_crosses_a_colon_or_a_slash(name: str, pattern: str, expected: bool) -> None:
    assert allowlisted(name, pattern) is expected


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("container:db-1", "is not in the docker allowlist"),
        ("db-1", "is not in the docker allowlist"),
        ("compose:other/web", "is not in the docker allowlist"),
        ("volume:web-1", "unknown kind 'volume'"),
        ("container:web-1; rm -rf /", "is not a container name"),
        ("container:../web-1", "is not a container name"),
        ("container:web-1/x", "is not a container name"),
        ("container:", "is not a container name"),
        ("web-1\x00", "is not a container name"),
        ("compose:shop", "is not PROJECT/SERVICE"),
        ("compose:shop/web/x", "is not PROJECT/SERVICE"),
        ("compose:Shop/web", "is not PROJECT/SERVICE"),
        ("compose:shopping/web", "compose project 'shopping' is not configured"),
    ],
)
def test_resolve_refuses_with_a_clear_reason(offline: DockerExecutor, value: str, why: str) -> None:
    with pytest.raises(TargetRefused, match=r"docker target .*" + re.escape(why)):
        offline.resolve_target(value, ALLOW)


def test_resolve_refuses_a_service_the_compose_file_does_not_define(
    offline: DockerExecutor, project: Project
) -> None:
    with pytest.raises(TargetRefused, match=r"defines no service 'db' \(it defines: web\)"):
        offline.resolve_target(f"compose:{project.name}/db", ALLOW)


def test_resolve_refuses_a_project_whose_compose_file_is_gone(
    offline: DockerExecutor, project: Project
) -> None:
    project.compose_file.unlink()
    with pytest.raises(TargetRefused, match="cannot read compose file"):
        offline.resolve_target(f"compose:{project.name}/web", ALLOW)


def test_resolve_refuses_everything_with_an_empty_allowlist(offline: DockerExecutor) -> None:
    with pytest.raises(TargetRefused, match="no docker targets are allowlisted"):
        offline.resolve_target("container:web-1", [])


# -- availability and an absent or failing daemon ------------------------------------------


async def test_available_with_a_daemon(executor: DockerExecutor) -> None:
    assert await executor.available() == Availability(ok=True)


async def test_unavailable_without_a_daemon(offline: DockerExecutor, tmp_path: Path) -> None:
    availability = await offline.available()
    assert not availability.ok
    assert availability.reason.startswith(
        f"no Docker daemon answers at unix://{tmp_path}/no-daemon.sock: "
    )


async def test_unavailable_when_the_host_does_not_speak_docker(clock: FixedClock) -> None:
    async def hang_up(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        executor = DockerExecutor(clock, docker_host=f"tcp://127.0.0.1:{port}")
        availability = await executor.available()
    assert not availability.ok
    assert f"no Docker daemon answers at tcp://127.0.0.1:{port}" in availability.reason


async def test_without_a_daemon_every_call_is_transient(offline: DockerExecutor) -> None:
    container = offline.resolve_target("container:web-1", ALLOW)
    with pytest.raises(TransientError, match="no Docker daemon answers at unix://"):
        await offline.snapshot(container, incident_id=1)
    with pytest.raises(TransientError, match=r"restart|inspecting"):
        await offline.run(restart(), container, step_snapshot(container))
    with pytest.raises(TransientError):
        await offline.check(check("healthy", within_s=0), container)


async def test_scale_without_a_daemon_is_transient(
    offline: DockerExecutor, project: Project
) -> None:
    service = offline.resolve_target(f"compose:{project.name}/web", ALLOW)
    with pytest.raises(TransientError, match="no Docker daemon answers"):
        await offline.run(scale(replicas=2), service, step_snapshot(service))


@pytest.fixture
async def sick_daemon() -> AsyncIterator[str]:
    """A local HTTP server speaking just enough of the Docker API: container
    web-500 fails with a 500, every other container is a 404."""

    async def version(_: web.Request) -> web.Response:
        return web.json_response({"ApiVersion": "1.41", "Version": "20.10.24"})

    async def inspect(request: web.Request) -> web.Response:
        if request.match_info["name"] == "web-500":
            return web.json_response({"message": "devmapper: device busy"}, status=500)
        return web.json_response({"message": "No such container"}, status=404)

    app = web.Application()
    app.router.add_get("/version", version)
    app.router.add_get("/v1.41/containers/{name}/json", inspect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"tcp://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_a_5xx_is_transient_and_a_404_is_a_refusal(
    clock: FixedClock, sick_daemon: str
) -> None:
    executor = DockerExecutor(clock, docker_host=sick_daemon)
    busy = executor.resolve_target("web-500", ALLOW)
    with pytest.raises(TransientError, match=r"answered 500 .*devmapper: device busy"):
        await executor.run(restart(), busy, step_snapshot(busy))
    gone = executor.resolve_target("web-404", ALLOW)
    result = await executor.run(restart(), gone, step_snapshot(gone))
    assert not result.ok
    assert result.detail == "docker container 'web-404' does not exist"


# -- restart -------------------------------------------------------------------------------


async def test_restart_of_a_healthy_container_waits_until_it_is_healthy_again(
    executor: DockerExecutor, containers: Containers
) -> None:
    name = unique("web")
    containers.run(HEALTHY, name, health=HTTP_HEALTH)
    before = containers.wait_for(name, health_is("healthy"))
    target = executor.resolve_target(name, ALLOW)

    snapshot = await executor.snapshot(target, incident_id=7)
    result = await executor.run(restart(), target, snapshot)

    assert snapshot.state["status"] == "running" and snapshot.state["health"] == "healthy"
    assert snapshot.location.startswith(f"docker container {name} (")
    assert result.ok, result.detail
    assert result.detail.startswith(f"restarted docker container {name!r}")
    assert result.detail.split(": ")[-1].startswith("running and healthy after")
    after = containers.state(name)
    assert after["StartedAt"] != before["StartedAt"]
    assert after["Health"]["Status"] == "healthy"
    await executor.restore(snapshot)  # a restart that healed: rollback confirms and succeeds


async def test_restart_of_a_container_that_stays_unhealthy_fails_with_its_health_output(
    executor: DockerExecutor, containers: Containers
) -> None:
    name = unique("web")
    containers.run(TURNS_UNHEALTHY, name, env={"HEALTHY_FOR": "0.3"}, health=HTTP_HEALTH)
    before = containers.wait_for(name, health_is("unhealthy"))
    target = executor.resolve_target(name, ALLOW)

    result = await executor.run(restart(), target, await executor.snapshot(target, 1))

    assert not result.ok
    assert "did not recover within" in result.detail
    assert "running but unhealthy: last health check exited 1, output " in result.detail
    assert "'wget: server returned error: HTTP/1.1 404 Not Found'" in result.detail
    assert "\n" not in result.detail
    assert WAIT_S <= result.seconds < WAIT_S + 5
    assert containers.state(name)["StartedAt"] != before["StartedAt"]


async def test_restart_brings_back_a_container_that_exited(
    executor: DockerExecutor, containers: Containers
) -> None:
    name = unique("web")
    containers.run(EXITS, name, env={"CRASH_STARTS": "1"}, port=None)
    containers.wait_for(name, status_is("exited"))
    target = executor.resolve_target(name, ALLOW)

    snapshot = await executor.snapshot(target, 1)
    result = await executor.run(restart(), target, snapshot)

    assert "exited with exit status 3, and no restart policy will start it" in snapshot.location
    assert result.ok, result.detail
    assert re.search(r"after \d+\.\d s$", result.detail), result.detail
    assert "running (it has no health check)" in result.detail
    assert containers.state(name)["Running"]
    assert (await executor.check(check("running", within_s=10), target)).ok


async def test_restart_of_a_container_that_exits_again_says_so_without_waiting_it_out(
    executor: DockerExecutor, containers: Containers
) -> None:
    # Running for a moment after each start is not recovering.
    name = unique("web")
    containers.run(EXITS, name, env={"CRASH_STARTS": "99", "CRASH_AFTER": "0.5"}, port=None)
    containers.wait_for(name, status_is("exited"))
    target = executor.resolve_target(name, ALLOW)

    result = await executor.run(restart(), target, await executor.snapshot(target, 1))

    assert not result.ok
    assert result.detail.endswith(
        "it is exited with exit status 3, and no restart policy will start it again"
    )
    assert result.seconds < WAIT_S
    with pytest.raises(DockerError, match=f"cannot roll back the restart of .*{name}"):
        await executor.restore(await executor.snapshot(target, 1))


async def test_an_unknown_or_unlisted_container_is_refused_and_nothing_changes(
    executor: DockerExecutor, containers: Containers
) -> None:
    web = unique("web")
    db = unique("db")
    container = containers.run(HEALTHY, web, health=HTTP_HEALTH)
    containers.run(HEALTHY, db)
    containers.wait_for(web, health_is("healthy"))
    started = {n: containers.state(n)["StartedAt"] for n in (web, db)}

    with pytest.raises(TargetRefused, match="is not in the docker allowlist"):
        executor.resolve_target(db, ALLOW)
    missing = executor.resolve_target(unique("web"), ALLOW)  # well formed: refused at first call
    with pytest.raises(TargetRefused, match=r"docker container 'web-\w+' does not exist"):
        await executor.snapshot(missing, 1)
    result = await executor.run(restart(), missing, step_snapshot(missing))
    assert not result.ok and result.detail.endswith("does not exist")
    healthy = await executor.check(check("healthy", within_s=0), missing)
    assert not healthy.ok and healthy.detail.endswith("does not exist")
    # The daemon also finds a container by an ID prefix; the allowlist speaks of names.
    by_id = executor.resolve_target(f"container:{container.id[:12]}", ["container:*"])
    with pytest.raises(TargetRefused, match=f"matched container {container.id[:12]}, named"):
        await executor.snapshot(by_id, 1)
    result = await executor.run(restart(), by_id, step_snapshot(by_id))
    assert not result.ok and f"named {web!r}, by its ID" in result.detail

    assert {n: containers.state(n)["StartedAt"] for n in (web, db)} == started


# -- checks and the benchmark ---------------------------------------------------------------


async def test_healthy_and_running_checks(executor: DockerExecutor, containers: Containers) -> None:
    good, bad = unique("web"), unique("web")
    containers.run(HEALTHY, good, health=HTTP_HEALTH)
    containers.run(TURNS_UNHEALTHY, bad, env={"HEALTHY_FOR": "0.3"}, health=HTTP_HEALTH)
    containers.wait_for(bad, health_is("unhealthy"))

    healthy = await executor.check(
        check("healthy", within_s=10), executor.resolve_target(good, ALLOW)
    )
    sick = executor.resolve_target(bad, ALLOW)
    unhealthy = await executor.check(check("healthy", within_s=0.5), sick)
    running = await executor.check(check("running", within_s=10), sick)

    assert healthy == CheckResult(
        check="healthy",
        ok=True,
        detail=f"docker container {good!r} is healthy: running and healthy",
    )
    assert not unhealthy.ok
    assert "is not healthy after" in unhealthy.detail and "404 Not Found" in unhealthy.detail
    assert running.ok, running.detail  # running is all it asks


async def test_replicas_at_least_needs_a_compose_service(
    executor: DockerExecutor, containers: Containers
) -> None:
    name = unique("web")
    containers.run(HEALTHY, name)
    result = await executor.check(
        PlannedCheck(check="replicas_at_least", params={"count": 1}),
        executor.resolve_target(name, ALLOW),
    )
    assert not result.ok and "needs a compose service" in result.detail


async def test_http_latency_times_the_published_port(
    executor: DockerExecutor, containers: Containers
) -> None:
    with_port, without_port = unique("web"), unique("web")
    containers.run(HEALTHY, with_port)
    containers.run(HEALTHY, without_port, port=None)
    containers.wait_for(with_port, status_is("running"))
    latency = PlannedBenchmark(
        benchmark="http_latency",
        params={"port": HTTP_PORT, "path": "/health", "repeat": 3},
        tolerance=0.5,
    )
    deadline = asyncio.get_running_loop().time() + 10
    while True:  # httpd may take a moment to listen after the container starts
        try:
            seconds = await executor.measure(latency, executor.resolve_target(with_port, ALLOW))
            break
        except TransientError:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.1)
    assert 0 < seconds < 5
    with pytest.raises(DockerError, match=f"publishes no host port for {HTTP_PORT}/tcp"):
        await executor.measure(latency, executor.resolve_target(without_port, ALLOW))


async def test_unknown_actions_and_bad_params_fail_loudly(executor: DockerExecutor) -> None:
    target = executor.resolve_target(unique("web"), ALLOW)
    with pytest.raises(ValueError, match="unknown docker action 'reboot'"):
        await executor.run(PlannedStep(action="reboot", timeout_s=5), target, step_snapshot(target))
    for params in ({}, {"replicas": 2, "delta": 1}, {"delta": 0}, {"replicas": -1}):
        with pytest.raises(ValidationError):
            await executor.run(scale(**params), target, step_snapshot(target))
    with pytest.raises(ValidationError):
        await executor.check(check("healthy", within_s=-1), target)


# -- compose scale ----------------------------------------------------------------------------


async def test_scale_up_then_rollback_restores_the_snapshot_count(
    executor: DockerExecutor, containers: Containers, project: Project
) -> None:
    target = executor.resolve_target(f"compose:{project.name}/web", ALLOW)
    empty = await executor.snapshot(target, 1)
    first = await executor.run(scale(replicas=1), target, empty)
    [original] = containers.compose_labelled(project.name, "web")

    one = await executor.snapshot(target, 1)
    up = await executor.run(scale(delta=2), target, one)
    scaled = containers.compose_labelled(project.name, "web")
    at_least = await executor.check(check("replicas_at_least", count=3), target)
    too_many = await executor.check(check("replicas_at_least", count=4), target)
    healthy = await executor.check(check("healthy", within_s=20), target)

    await executor.restore(one)
    after_rollback = containers.compose_labelled(project.name, "web")
    await executor.restore(empty)

    assert empty.state["replicas"] == 0
    assert first.ok and first.detail.endswith("from 0 to 1 running replicas"), first.detail
    assert one.state == {"kind": "compose", "replicas": 1, "containers": [original]}
    assert one.location.startswith(f"compose service {project.name}/web: 1 replica running")
    assert up.ok and up.detail.endswith("from 1 to 3 running replicas"), up.detail
    assert len(scaled) == 3 and original in scaled
    assert at_least.ok and not too_many.ok, (at_least, too_many)
    assert too_many.detail == f"compose service {project.name}/web: 3 running < 4"
    assert healthy.ok, healthy.detail
    assert after_rollback == [original]  # scaled back, the original never recreated
    assert containers.compose_labelled(project.name, "web", running=False) == []


async def test_scale_refusals_change_nothing(
    executor: DockerExecutor, containers: Containers, project: Project
) -> None:
    service = executor.resolve_target(f"compose:{project.name}/web", ALLOW)
    below_zero = await executor.run(scale(delta=-1), service, step_snapshot(service))
    name = unique("web")
    containers.run(HEALTHY, name)
    container = executor.resolve_target(name, ALLOW)
    on_a_container = await executor.run(scale(replicas=2), container, step_snapshot(container))
    restart_a_service = await executor.run(restart(), service, step_snapshot(service))

    assert not below_zero.ok and "has 0 running; scaling it to -1 is outside" in below_zero.detail
    assert not on_a_container.ok and "scale acts on a compose service" in on_a_container.detail
    assert not restart_a_service.ok and "restart acts on one container" in restart_a_service.detail
    assert containers.compose_labelled(project.name, "web", running=False) == []


async def test_a_scale_cut_off_by_its_deadline_kills_compose_and_is_retried_later(
    executor: DockerExecutor, containers: Containers, project: Project
) -> None:
    service = executor.resolve_target(f"compose:{project.name}/web", ALLOW)
    no_time = PlannedStep(action="scale", params={"replicas": 2}, timeout_s=0.5)
    with pytest.raises(TransientError, match=r"scaling .* to 2 with .* did not finish within 0 s"):
        await executor.run(no_time, service, step_snapshot(service))
    assert containers.compose_labelled(project.name, "web", running=False) == []


# -- the built-ins, from a realistic alert to a verified heal or a rollback ---------------------


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return builtin_catalog(tmp_path, "docker")


def alertmanager(labels: dict[str, str], annotations: dict[str, str]) -> Alert:
    """One firing alert as Alertmanager's webhook delivers it."""
    payload = AlertmanagerPayload(
        groupKey=f'{{}}:{{alertname="{labels["alertname"]}"}}',
        receiver="grace",
        groupLabels={"alertname": labels["alertname"]},
        commonLabels=labels,
        externalURL="http://alertmanager.example:9093",
        alerts=[
            AlertmanagerAlert(
                status="firing",
                labels=labels,
                annotations=annotations,
                startsAt=datetime(2026, 11, 24, 2, 58, tzinfo=UTC),
                generatorURL="http://prometheus.example:9090/graph?g0.expr=container_last_seen",
                fingerprint="9c1d5e6b7a803f2a",
            )
        ],
    )
    [alert] = parse_alertmanager(payload.model_dump_json().encode(), received_at=NOW)
    return alert


def cadvisor_killed(name: str) -> Alert:
    """cAdvisor's rule: time() - container_last_seen > 60, with cAdvisor's labels."""
    return alertmanager(
        {
            "alertname": "ContainerKilled",
            "severity": "warning",
            "job": "cadvisor",
            "instance": "docker-host-1:8080",
            "id": "/docker/4f1e2d3c4b5a69788796a5b4c3d2e1f04f1e2d3c4b5a69788796a5b4c3d2e1f0",
            "image": EXITS,
            "name": name,
        },
        {
            "summary": "Container killed (instance docker-host-1:8080)",
            "description": f"A container has disappeared\n  VALUE = 75\n  LABELS: name={name}",
        },
    )


def unhealthy_rule(name: str) -> Alert:
    return alertmanager(
        {
            "alertname": "ContainerUnhealthy",
            "severity": "critical",
            "instance": "docker-host-1:9323",
            "image": TURNS_UNHEALTHY,
            "name": name,
        },
        {"summary": f"Container {name} is unhealthy"},
    )


def health_event(name: str) -> Alert:
    """A Docker health_status event relayed to the generic webhook."""
    body = {
        "name": "Docker health event",
        "severity": "critical",
        "labels": {"name": name, "image": TURNS_UNHEALTHY, "host": "docker-host-1"},
        "text": f"container health_status: unhealthy 4f1e2d3c4b5a (image={TURNS_UNHEALTHY}, "
        f"name={name})",
    }
    [alert] = parse_generic(json.dumps(body).encode(), received_at=NOW)
    return alert


def cpu_rule(project: str, service: str) -> Alert:
    return alertmanager(
        {
            "alertname": "ContainerCpuUsage",
            "severity": "warning",
            "container_label_com_docker_compose_project": project,
            "container_label_com_docker_compose_service": service,
        },
        {"summary": f"{project}/{service} uses 93% of its CPU"},
    )


@pytest.mark.parametrize(
    ("alert", "problem"),
    [
        (cadvisor_killed("web-1"), "docker_container_exited"),
        (unhealthy_rule("web-1"), "docker_container_unhealthy"),
        (health_event("web-1"), "docker_container_unhealthy"),
        (
            alertmanager({"alertname": "ContainerExited", "name": "web-1"}, {}),
            "docker_container_exited",
        ),
        (
            alertmanager({"alertname": "ContainerDown", "name": "web-1"}, {}),
            "docker_container_exited",
        ),
    ],
)
def test_realistic_container_alerts_get_the_restart_playbook(
    catalog: Catalog, alert: Alert, problem: str
) -> None:
    diagnosis = catalog.diagnose(alert)
    assert diagnosis is not None and diagnosis.problem == problem
    assert "web-1" in diagnosis.explanation
    playbook = catalog.playbook_for(problem)
    assert playbook is not None and playbook.id == "docker-restart-container"
    assert playbook.tier == 2


def test_container_alerts_naming_no_container_say_where_they_looked(catalog: Catalog) -> None:
    # The cAdvisor "down" rule on the exporter itself: up{job="cadvisor"} == 0.
    diagnosis = catalog.diagnose(
        alertmanager({"alertname": "ContainerDown", "job": "cadvisor"}, {})
    )
    assert diagnosis is not None and diagnosis.problem == "docker_container_exited"
    assert diagnosis.facts == {}
    assert diagnosis.looked_for["name"][:3] == (
        "label `name`",
        "label `container`",
        "label `container_name`",
    )


@dataclass
class Healed:
    plan: Plan
    snapshots: list[Snapshot]
    steps: list[StepResult]
    checks: list[CheckResult]
    rollback_error: Exception | None = None


async def heal(catalog: Catalog, executor: DockerExecutor, alert: Alert) -> Healed:
    """What the engine does once a plan is approved: a snapshot before each
    step, the steps, the checks; on a failure, every snapshot restored newest first."""
    diagnosis = catalog.diagnose(alert)
    assert diagnosis is not None, alert
    playbook = catalog.playbook_for(diagnosis.problem)
    assert playbook is not None
    plan = make_plan(playbook, alert, executor, ALLOW)
    healed = Healed(plan, [], [], [])
    for step in plan.steps:
        healed.snapshots.append(await executor.snapshot(plan.target, incident_id=9))
        healed.steps.append(await executor.run(step, plan.target, healed.snapshots[-1]))
        if not healed.steps[-1].ok:
            break
    else:
        healed.checks = [await executor.check(c, plan.target) for c in plan.checks]
        if all(c.ok for c in healed.checks):
            return healed
    try:
        for snapshot in reversed(healed.snapshots):
            await executor.restore(snapshot)
    except DockerError as exc:
        healed.rollback_error = exc
    return healed


async def test_a_killed_container_is_restarted_and_verified_from_the_cadvisor_alert(
    catalog: Catalog, executor: DockerExecutor, containers: Containers
) -> None:
    name = unique("web")
    containers.run(EXITS, name, env={"CRASH_STARTS": "1"}, port=None)
    containers.wait_for(name, status_is("exited"))

    healed = await heal(catalog, executor, cadvisor_killed(name))

    assert healed.plan.playbook_id == "docker-restart-container"
    assert healed.plan.target == Target(executor="docker", name=f"container:{name}")
    assert [s.action for s in healed.steps] == ["restart"] and healed.steps[0].ok
    assert [(c.check, c.ok) for c in healed.checks] == [("healthy", True)], healed.checks
    assert healed.rollback_error is None
    assert containers.state(name)["Running"]


async def test_a_wedged_container_fails_its_restart_and_rollback_holds_it_for_a_person(
    catalog: Catalog, executor: DockerExecutor, containers: Containers
) -> None:
    name = unique("web")
    containers.run(TURNS_UNHEALTHY, name, env={"HEALTHY_FOR": "0.3"}, health=HTTP_HEALTH)
    containers.wait_for(name, health_is("unhealthy"))

    healed = await heal(catalog, executor, unhealthy_rule(name))

    [step] = healed.steps
    assert not step.ok and "404 Not Found" in step.detail
    assert healed.checks == []
    # A restart cannot be undone: the failed rollback is what puts it in safe hold.
    assert isinstance(healed.rollback_error, DockerError)
    assert "a restart cannot be undone" in str(healed.rollback_error)
    assert "404 Not Found" in str(healed.rollback_error)


def test_an_alert_naming_an_unlisted_container_is_refused_at_plan_time(
    catalog: Catalog, offline: DockerExecutor
) -> None:
    alert = unhealthy_rule("db-primary")
    playbook = catalog.playbook_for("docker_container_unhealthy")
    assert playbook is not None
    with pytest.raises(
        TargetRefused, match="'container:db-primary' is not in the docker allowlist"
    ):
        make_plan(playbook, alert, offline, ALLOW)


async def test_an_overloaded_compose_service_gets_a_replica_and_rollback_removes_it(
    catalog: Catalog, executor: DockerExecutor, containers: Containers, project: Project
) -> None:
    service = executor.resolve_target(f"compose:{project.name}/web", ALLOW)
    assert (await executor.run(scale(replicas=1), service, step_snapshot(service))).ok

    healed = await heal(catalog, executor, cpu_rule(project.name, "web"))

    assert healed.plan.playbook_id == "docker-compose-scale-up"
    assert healed.plan.target == service
    assert healed.steps[0].ok and healed.steps[0].detail.endswith("from 1 to 2 running replicas")
    assert [(c.check, c.ok) for c in healed.checks] == [
        ("replicas_at_least", True),
        ("healthy", True),
    ], healed.checks
    assert len(containers.compose_labelled(project.name, "web")) == 2
    await executor.restore(healed.snapshots[0])  # as a rollback would
    assert len(containers.compose_labelled(project.name, "web")) == 1
