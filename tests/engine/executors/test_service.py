"""The service executor against real local HTTP servers, a real TCP listener
and real config files: no mocks, so a broken operation fails here."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import stat
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from pydantic import ValidationError

from engine.catalog import Catalog
from engine.executors.service import ServiceConfig, ServiceError, ServiceExecutor
from engine.intake.alertmanager import AlertmanagerAlert, AlertmanagerPayload, parse_alertmanager
from engine.models import (
    Alert,
    BenchmarkResult,
    CheckResult,
    Plan,
    PlannedBenchmark,
    PlannedCheck,
    PlannedStep,
    Snapshot,
    StepResult,
    Target,
    Verification,
)
from engine.planning import make_plan
from engine.ports import Executor, TargetRefused, TransientError
from tests.engine.executors.conftest import FixedClock, builtin_catalog, step_snapshot

WEB = Target(executor="service", name="web")
LEVEL = "@@LEVEL@@"

YAML_CONFIG = """\
# web: ünïcode comment; debug was turned on for incident 42
server:
  port: 8080   # keep
  debug_routes: false
logging:
  format: json
  level: @@LEVEL@@   # set by hand
  # level: trace
other: [1, 2, 3]
"""

JSON_CONFIG = """{
  "server": {"port": 8080},
  "logging": {
      "format": "json",
      "level": "@@LEVEL@@",
      "note": "level is debug while testing"
  },
  "tags":["a","b"]
}
"""

ENV_CONFIG = (
    "# LOG_LEVEL=trace\r\n"
    "APP_NAME=web\r\n"
    'export LOG_LEVEL="@@LEVEL@@"  # was debug\r\n'
    "DB_URL=postgres://db/web\r\n"
)

INI_CONFIG = "[logging]\nlevel: @@LEVEL@@ ; noisy\n\n[server]\nport = 8080\n"


def read_level(path: Path, key: str) -> str:
    """The level as the service itself would read it, by a parser of its own."""
    text = path.read_text()
    if path.suffix in (".yml", ".yaml", ".json"):
        data: Any = yaml.safe_load(text) if path.suffix != ".json" else json.loads(text)
        for part in key.split("."):
            data = data[part]
        return str(data)
    for line in text.splitlines():
        match = re.match(rf"\s*(?:export\s+)?{re.escape(key)}\s*[=:]\s*['\"]?([\w-]+)", line)
        if match:
            return match[1]
    raise KeyError(key)


@dataclass
class FakeService:
    """A real HTTP service on 127.0.0.1: a health endpoint, a log-level admin
    endpoint and a reload endpoint that re-reads its config file."""

    config_file: Path | None = None
    key: str = "log_level"
    level: str = "DEBUG"
    health: list[int] = field(default_factory=lambda: [200])  # answered in turn; last repeats
    health_body: str = "ok"
    health_delay_s: float = 0
    admin_get_status: int | None = None
    admin_put_status: int | None = None
    reload_status: int = 204
    reload_delay_s: float = 0
    after_reload: list[int] | None = None  # health statuses once reloaded
    slow_after_reload_s: float = 0
    puts: list[str] = field(default_factory=list)
    reloads: int = 0
    health_hits: int = 0
    base: str = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._health)
        app.router.add_get("/moved", self._moved)
        app.router.add_get("/admin/log-level", self._get_level)
        app.router.add_put("/admin/log-level", self._put_level)
        app.router.add_post("/reload", self._reload)
        return app

    async def _health(self, request: web.Request) -> web.Response:
        self.health_hits += 1
        status = self.health.pop(0) if len(self.health) > 1 else self.health[0]
        if self.health_delay_s:
            await asyncio.sleep(self.health_delay_s)  # a slow service, not synchronisation
        return web.Response(status=status, text=self.health_body)

    async def _moved(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/healthz")

    async def _get_level(self, request: web.Request) -> web.Response:
        if self.admin_get_status is not None:
            return web.Response(status=self.admin_get_status, text="admin says no")
        return web.json_response({"level": self.level})

    async def _put_level(self, request: web.Request) -> web.Response:
        if self.admin_put_status is not None:
            return web.Response(status=self.admin_put_status, text="unknown level")
        self.level = (await request.json())["level"]
        self.puts.append(self.level)
        return web.json_response({"level": self.level})

    async def _reload(self, request: web.Request) -> web.Response:
        if self.reload_delay_s:
            await asyncio.sleep(self.reload_delay_s)
        if self.reload_status >= 300:
            return web.Response(status=self.reload_status, text="reload refused")
        self.reloads += 1
        if self.config_file is not None:
            self.level = read_level(self.config_file, self.key)
        if self.after_reload is not None:
            self.health = list(self.after_reload)
        self.health_delay_s = self.slow_after_reload_s or self.health_delay_s
        return web.Response(status=self.reload_status)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


@pytest.fixture
async def svc() -> AsyncIterator[FakeService]:
    service = FakeService()
    runner = web.AppRunner(service.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    service.base = f"http://{host}:{port}"
    try:
        yield service
    finally:
        await runner.cleanup()


@pytest.fixture
async def listener() -> AsyncIterator[int]:
    """A real TCP listener on 127.0.0.1; its port."""

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on: connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def conf_dir(tmp_path: Path) -> Path:
    folder = (tmp_path / "etc").resolve()
    folder.mkdir()
    return folder


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def snapshot_dir(tmp_path: Path) -> Path:
    return tmp_path / "snapshots"


@dataclass
class Rig:
    """An executor for one service named `web`."""

    svc: FakeService
    snapshot_dir: Path
    clock: FixedClock

    def executor(self, *, http_timeout_s: float = 5.0, **config: Any) -> ServiceExecutor:
        config.setdefault("health_url", self.svc.url("/healthz"))
        services = {"web": ServiceConfig.model_validate(config)}
        return ServiceExecutor(
            services, self.snapshot_dir, self.clock, http_timeout_s=http_timeout_s
        )

    def with_file(
        self, path: Path, template: str, level: str, key: str, **config: Any
    ) -> ServiceExecutor:
        path.write_bytes(template.replace(LEVEL, level).encode())
        self.svc.config_file, self.svc.key = path, key
        self.svc.level = read_level(path, key)
        config.setdefault("reload_url", self.svc.url("/reload"))
        return self.executor(config_file=path, log_level_key=key, **config)


@pytest.fixture
def rig(svc: FakeService, snapshot_dir: Path, clock: FixedClock) -> Rig:
    return Rig(svc, snapshot_dir, clock)


def set_level(level: str, via: str = "auto") -> PlannedStep:
    return PlannedStep(action="set_log_level", params={"level": level, "via": via}, timeout_s=30)


RELOAD = PlannedStep(action="reload", timeout_s=30)


async def snap_and_run(executor: ServiceExecutor, step: PlannedStep) -> tuple[Snapshot, StepResult]:
    snapshot = await executor.snapshot(WEB, incident_id=1)
    return snapshot, await executor.run(step, WEB, snapshot)


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def content(location: str | Path) -> bytes:
    return Path(location).read_bytes()


def overwrite(location: str | Path, data: bytes) -> None:
    Path(location).write_bytes(data)


def ms_in(detail: str) -> float:
    match = re.search(r"in (\d+\.\d) ms", detail)
    assert match, detail
    return float(match[1])


def test_satisfies_the_executor_port(rig: Rig) -> None:
    port: Executor = rig.executor()
    assert port.name == "service"
    assert set(port.spec.actions) == {"set_log_level", "reload"}
    assert set(port.spec.checks) == {"http_healthy", "tcp_open", "log_level_is"}
    assert set(port.spec.benchmarks) == {"health_latency"}


# -- the operator's config ---------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"config_file": "/etc/web.yml"}, "needs health_url or health_tcp"),
        ({"health_tcp": "localhost"}, "is not host:port"),
        ({"health_tcp": "localhost:99999"}, "is not host:port"),
        ({"health_tcp": ":80"}, "is not host:port"),
        ({"health_url": "http://admin:hunter2@127.0.0.1/healthz"}, "credentials in URLs"),
        ({"health_tcp": "h:1", "admin_url": "http://u:p@h/level"}, "credentials in URLs"),
        ({"health_tcp": "h:1", "config_file": "etc/web.yml"}, "absolute path"),
        ({"health_tcp": "h:1", "headers": {"Authorization": "x"}}, "Extra inputs"),
        ({"health_tcp": "h:1", "log_level_key": "level = x"}, "should match pattern"),
        ({"health_url": "ftp://h/x"}, "URL scheme should be 'http' or 'https'"),
    ],
)
def test_service_config_refuses_mistakes(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ServiceConfig.model_validate(config)


def test_service_config_accepts_ipv6_and_is_frozen() -> None:
    config = ServiceConfig(health_tcp="[::1]:8080")
    with pytest.raises(ValidationError):
        config.health_tcp = "h:1"  # type: ignore[misc]


# -- availability and targets -------------------------------------------------------


async def test_available(rig: Rig) -> None:
    assert (await rig.executor().available()).ok


async def test_unavailable_without_services(snapshot_dir: Path, clock: FixedClock) -> None:
    availability = await ServiceExecutor({}, snapshot_dir, clock).available()
    assert not availability.ok
    assert "no services are configured" in availability.reason


async def test_unavailable_when_snapshots_cannot_be_kept(rig: Rig, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    rig.snapshot_dir = blocker / "snapshots"
    availability = await rig.executor().available()
    assert not availability.ok
    assert "snapshot dir" in availability.reason


def test_resolve_accepts_a_configured_allowlisted_service(rig: Rig) -> None:
    assert rig.executor().resolve_target("web", ["api", "w*"]) == WEB


@pytest.mark.parametrize(
    ("value", "allowlist", "message"),
    [
        ("db", ["*"], "no such service is configured (known: web)"),
        ("web", ["api", "db-*"], "is not in the service allowlist"),
        ("web", ["WEB"], "is not in the service allowlist"),
        ("web", [], "no service targets are allowlisted"),
        ("web\n", ["*"], "no such service is configured"),
    ],
)
def test_resolve_refuses(rig: Rig, value: str, allowlist: list[str], message: str) -> None:
    with pytest.raises(TargetRefused) as info:
        rig.executor().resolve_target(value, allowlist)
    assert message in str(info.value)
    assert repr(value) in str(info.value)


# -- http_healthy, tcp_open ------------------------------------------------------------


async def test_http_healthy_reports_status_and_latency(rig: Rig) -> None:
    result = await rig.executor().check(PlannedCheck(check="http_healthy"), WEB)
    assert result.ok, result.detail
    assert result.check == "http_healthy"
    assert re.fullmatch(
        rf"service 'web': {re.escape(rig.svc.url('/healthz'))} answered HTTP 200 OK in \d+\.\d ms",
        result.detail,
    ), result.detail


async def test_http_healthy_measures_a_slow_endpoint(rig: Rig) -> None:
    rig.svc.health_delay_s = 0.2
    result = await rig.executor().check(PlannedCheck(check="http_healthy"), WEB)
    assert result.ok, result.detail
    assert 200 <= ms_in(result.detail) < 5000


async def test_http_healthy_fails_with_status_and_escaped_body(rig: Rig) -> None:
    rig.svc.health = [503]
    rig.svc.health_body = "db down\x1b[31m\n" + "x" * 500
    result = await rig.executor().check(PlannedCheck(check="http_healthy"), WEB)
    assert not result.ok
    assert "answered HTTP 503 Service Unavailable in" in result.detail
    assert "expected 200" in result.detail
    assert "body: 'db down\\x1b[31m xxx" in result.detail
    assert "\x1b" not in result.detail
    assert len(result.detail) < 400


async def test_http_healthy_waits_within_s_until_healthy(rig: Rig) -> None:
    rig.svc.health = [503, 503, 200]
    result = await rig.executor().check(
        PlannedCheck(check="http_healthy", params={"within_s": 10}), WEB
    )
    assert result.ok, result.detail
    assert rig.svc.health_hits == 3
    assert "(try 3, after" in result.detail


async def test_http_healthy_gives_up_after_within_s(rig: Rig) -> None:
    rig.svc.health = [500]
    result = await rig.executor().check(
        PlannedCheck(check="http_healthy", params={"within_s": 0.6}), WEB
    )
    assert not result.ok
    assert rig.svc.health_hits >= 2
    assert "HTTP 500" in result.detail and "(try " in result.detail


async def test_http_healthy_takes_another_expected_status(rig: Rig) -> None:
    rig.svc.health = [204]
    check = PlannedCheck(check="http_healthy", params={"status": 204})
    assert (await rig.executor().check(check, WEB)).ok
    assert not (await rig.executor().check(PlannedCheck(check="http_healthy"), WEB)).ok


async def test_http_healthy_does_not_follow_redirects(rig: Rig) -> None:
    executor = rig.executor(health_url=rig.svc.url("/moved"))
    result = await executor.check(PlannedCheck(check="http_healthy"), WEB)
    assert not result.ok
    assert "HTTP 302 Found" in result.detail
    assert rig.svc.health_hits == 0


async def test_http_healthy_on_a_refused_connection_is_an_answer(
    rig: Rig, closed_port: int
) -> None:
    executor = rig.executor(health_url=f"http://127.0.0.1:{closed_port}/healthz")
    result = await executor.check(PlannedCheck(check="http_healthy"), WEB)
    assert not result.ok
    assert "did not answer" in result.detail and "Cannot connect" in result.detail


async def test_http_healthy_on_a_hung_endpoint_times_out(rig: Rig) -> None:
    rig.svc.health_delay_s = 3
    result = await rig.executor(http_timeout_s=0.2).check(PlannedCheck(check="http_healthy"), WEB)
    assert not result.ok
    assert "no answer within 0.2 s" in result.detail


async def test_http_healthy_without_a_health_url(rig: Rig, listener: int) -> None:
    executor = rig.executor(health_url=None, health_tcp=f"127.0.0.1:{listener}")
    result = await executor.check(PlannedCheck(check="http_healthy"), WEB)
    assert not result.ok
    assert result.detail == "service 'web' has no health_url configured"


async def test_tcp_open_on_a_real_listener_and_a_closed_port(
    rig: Rig, listener: int, closed_port: int
) -> None:
    check = PlannedCheck(check="tcp_open")
    open_ = await rig.executor(health_url=None, health_tcp=f"127.0.0.1:{listener}").check(
        check, WEB
    )
    assert open_.ok, open_.detail
    assert re.fullmatch(
        rf"service 'web': tcp 127.0.0.1:{listener} accepted a connection in \d+\.\d ms",
        open_.detail,
    )
    shut = await rig.executor(health_url=None, health_tcp=f"127.0.0.1:{closed_port}").check(
        PlannedCheck(check="tcp_open", params={"within_s": 0.3}), WEB
    )
    assert not shut.ok
    assert f"tcp 127.0.0.1:{closed_port} did not accept a connection" in shut.detail
    assert "(try " in shut.detail


async def test_tcp_open_falls_back_to_the_health_url_address(rig: Rig) -> None:
    result = await rig.executor().check(PlannedCheck(check="tcp_open"), WEB)
    assert result.ok, result.detail
    assert rig.svc.base.removeprefix("http://") in result.detail


# -- health_latency ------------------------------------------------------------------


def latency(repeat: int = 3) -> PlannedBenchmark:
    return PlannedBenchmark(benchmark="health_latency", params={"repeat": repeat}, tolerance=0.5)


async def test_health_latency_is_the_median_of_real_requests(rig: Rig) -> None:
    executor = rig.executor()
    fast = await executor.measure(latency(), WEB)
    assert rig.svc.health_hits == 3
    rig.svc.health_delay_s = 0.15
    slow = await executor.measure(latency(), WEB)
    assert isinstance(fast, float) and 0 < fast < 0.15 <= slow < 5
    regression = BenchmarkResult(
        benchmark="health_latency", before_s=fast, after_s=slow, tolerance=0.5
    )
    assert not regression.ok


async def test_health_latency_over_tcp(rig: Rig, listener: int) -> None:
    executor = rig.executor(health_url=None, health_tcp=f"127.0.0.1:{listener}")
    assert 0 < await executor.measure(latency(), WEB) < 5


async def test_health_latency_of_an_unreachable_service_is_transient(
    rig: Rig, closed_port: int
) -> None:
    executor = rig.executor(health_url=f"http://127.0.0.1:{closed_port}/healthz")
    with pytest.raises(TransientError, match="service 'web': health latency of"):
        await executor.measure(latency(), WEB)


# -- set_log_level through the config file ---------------------------------------------


@pytest.mark.parametrize(
    ("name", "template", "key", "before", "level", "after"),
    [
        ("web.yml", YAML_CONFIG, "logging.level", "debug", "info", "info"),
        ("web.json", JSON_CONFIG, "logging.level", "debug", "info", "info"),
        ("web.env", ENV_CONFIG, "LOG_LEVEL", "DEBUG", "info", "INFO"),
        ("web.ini", INI_CONFIG, "level", "Debug", "warn", "warn"),
    ],
)
async def test_config_file_change_keeps_every_other_byte(
    rig: Rig,
    conf_dir: Path,
    name: str,
    template: str,
    key: str,
    before: str,
    level: str,
    after: str,
) -> None:
    path = conf_dir / name
    executor = rig.with_file(path, template, before, key)
    path.chmod(0o640)

    _, result = await snap_and_run(executor, set_level(level))

    assert result.ok, result.detail
    assert path.read_bytes() == template.replace(LEVEL, after).encode()
    assert mode_of(path) == 0o640
    assert rig.svc.reloads == 1 and rig.svc.level == after
    assert f"log level {before} -> {after} in {path}; reload accepted" in result.detail
    assert listing(conf_dir) == [name]


async def test_yaml_keeps_quotes_and_quotes_a_level_yaml_would_read_as_a_boolean(
    rig: Rig, conf_dir: Path
) -> None:
    path = conf_dir / "web.yaml"
    executor = rig.with_file(path, "a: 1\nlog_level: 'debug'\nb: 2\n", LEVEL, "log_level")
    _, result = await snap_and_run(executor, set_level("info"))
    assert result.ok, result.detail
    assert path.read_text() == "a: 1\nlog_level: 'info'\nb: 2\n"

    path.write_text("log_level: debug\n")
    _, result = await snap_and_run(executor, set_level("off"))
    assert result.ok, result.detail
    assert path.read_text() == 'log_level: "off"\n'
    assert yaml.safe_load(path.read_text()) == {"log_level": "off"}


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "web.json",
            '{"log_level": "trace", "log_level": "debug"}',
            '{"log_level": "trace", "log_level": "info"}',
        ),
        ("web.yml", "log_level: trace\nlog_level: debug\n", "log_level: trace\nlog_level: info\n"),
    ],
)
async def test_a_duplicated_key_is_edited_where_the_service_reads_it(
    rig: Rig, conf_dir: Path, name: str, text: str, expected: str
) -> None:
    path = conf_dir / name
    executor = rig.with_file(path, text, LEVEL, "log_level")
    assert rig.svc.level == "debug"  # loaders keep the last one
    _, result = await snap_and_run(executor, set_level("info"))
    assert result.ok, result.detail
    assert path.read_text() == expected
    assert rig.svc.level == "info"


async def test_config_file_owner_is_kept_and_a_symlink_stays_a_symlink(
    rig: Rig, conf_dir: Path, tmp_path: Path
) -> None:
    real = conf_dir / "web.env"
    link = tmp_path / "current.env"
    link.symlink_to(real)
    real.write_text("LOG_LEVEL=debug\n")
    os.chown(real, 12345, 12345)
    rig.svc.config_file, rig.svc.key = real, "LOG_LEVEL"
    executor = rig.executor(config_file=link, log_level_key="LOG_LEVEL")

    _, result = await snap_and_run(executor, set_level("info"))

    assert result.ok, result.detail
    assert link.is_symlink() and link.resolve() == real
    assert real.read_text() == "LOG_LEVEL=info\n"
    assert (real.stat().st_uid, real.stat().st_gid) == (12345, 12345)


async def test_config_file_without_reload_url_says_when_it_takes_effect(
    rig: Rig, conf_dir: Path
) -> None:
    executor = rig.with_file(
        conf_dir / "web.env", "LOG_LEVEL=DEBUG\n", LEVEL, "LOG_LEVEL", reload_url=None
    )
    _, result = await snap_and_run(executor, set_level("info"))
    assert result.ok, result.detail
    assert "no reload_url is configured" in result.detail
    assert rig.svc.reloads == 0
    assert (conf_dir / "web.env").read_text() == "LOG_LEVEL=INFO\n"


async def test_config_file_already_at_the_level_is_not_rewritten(rig: Rig, conf_dir: Path) -> None:
    path = conf_dir / "web.env"
    executor = rig.with_file(path, "LOG_LEVEL=INFO\n", LEVEL, "LOG_LEVEL")
    inode = path.stat().st_ino
    _, result = await snap_and_run(executor, set_level("info", via="config_file"))
    assert result.ok, result.detail
    assert "log level already INFO in" in result.detail
    assert path.stat().st_ino == inode
    assert rig.svc.reloads == 1  # the running process may still be behind its file


@pytest.mark.parametrize(
    ("name", "text", "key", "message"),
    [
        ("web.yml", "logging: &log\n  level: debug\nworker: *log\n", "logging.level", "anchor"),
        ("web.yml", "base: &lvl debug\nlogging:\n  level: *lvl\n", "logging.level", "shared"),
        ("web.yml", "logging:\n  level: &lvl debug\n", "logging.level", "of its own"),
        ("web.yml", "logging:\n  level: |\n    debug\n", "logging.level", "of its own"),
        ("web.yml", 'logging:\n  level: "de\\u0062ug"\n', "logging.level", "of its own"),
        ("web.yml", "logging: {format: json}\n", "logging.level", "has no 'logging.level' key"),
        ("web.yml", "logging: [debug]\n", "logging.level", "has no 'logging.level' key"),
        ("web.yml", "logging:\n  level: [debug]\n", "logging.level", "is not a value"),
        ("web.yml", "logging: {level: debug\n", "logging.level", "is not valid YAML: expected"),
        ("web.json", '{"logging": {"level": 10}}', "logging.level", "is not a string"),
        ("web.json", '{"logging": {"level": "debug"}', "logging.level", "is not valid JSON"),
        ("web.env", "A=1\nLOG_LEVEL=debug\nLOG_LEVEL=trace\n", "LOG_LEVEL", "lines (2, 3)"),
        ("web.env", "A=1\n", "LOG_LEVEL", "has no 'LOG_LEVEL' line"),
        ("web.env", "LOG_LEVEL=debug, stdout\n", "LOG_LEVEL", "line 1: cannot read the value"),
    ],
)
async def test_config_file_edits_that_are_refused_leave_the_file_alone(
    rig: Rig, conf_dir: Path, name: str, text: str, key: str, message: str
) -> None:
    path = conf_dir / name
    path.write_text(text)
    executor = rig.executor(config_file=path, log_level_key=key, reload_url=rig.svc.url("/reload"))
    result = await executor.run(set_level("info"), WEB, step_snapshot(WEB))
    assert not result.ok
    assert result.detail.startswith(f"service 'web': config file {path}")
    assert "\n" not in result.detail
    assert message in result.detail
    assert path.read_text() == text
    assert rig.svc.reloads == 0


async def test_a_missing_config_file_is_a_failed_step(rig: Rig, conf_dir: Path) -> None:
    executor = rig.executor(config_file=conf_dir / "gone.env", log_level_key="LOG_LEVEL")
    result = await executor.run(set_level("info"), WEB, step_snapshot(WEB))
    assert not result.ok
    assert "service 'web'" in result.detail and "gone.env" in result.detail


# -- set_log_level through the admin endpoint ------------------------------------------


async def test_admin_change_and_rollback_restores_the_previous_level(rig: Rig) -> None:
    executor = rig.executor(admin_url=rig.svc.url("/admin/log-level"))
    snapshot, result = await snap_and_run(executor, set_level("info"))

    assert result.ok, result.detail
    assert rig.svc.level == "INFO"  # written in the case the service uses
    assert f"log level DEBUG -> INFO at {rig.svc.url('/admin/log-level')}" in result.detail
    assert snapshot.state == {"admin_level": "DEBUG"}
    assert snapshot.location == rig.svc.url("/admin/log-level")

    await executor.restore(snapshot)

    assert rig.svc.level == "DEBUG"
    assert rig.svc.puts == ["INFO", "DEBUG"]


async def test_admin_already_at_the_level_changes_nothing(rig: Rig) -> None:
    rig.svc.level = "info"
    executor = rig.executor(admin_url=rig.svc.url("/admin/log-level"))
    _, result = await snap_and_run(executor, set_level("INFO"))
    assert result.ok
    assert "log level already info" in result.detail
    assert rig.svc.puts == []


@pytest.mark.parametrize("status", [500, 502, 503, 429, 408])
async def test_admin_5xx_while_acting_is_transient(rig: Rig, status: int) -> None:
    executor = rig.executor(admin_url=rig.svc.url("/admin/log-level"))
    snapshot = await executor.snapshot(WEB, incident_id=1)
    rig.svc.admin_put_status = status
    with pytest.raises(TransientError, match=rf"service 'web': setting the log level .* {status}"):
        await executor.run(set_level("info"), WEB, snapshot)
    assert rig.svc.level == "DEBUG"


@pytest.mark.parametrize(("status", "reason"), [(400, "Bad Request"), (404, "Not Found")])
async def test_admin_4xx_is_a_failed_step_with_status_and_reason(
    rig: Rig, status: int, reason: str
) -> None:
    executor = rig.executor(admin_url=rig.svc.url("/admin/log-level"))
    snapshot = await executor.snapshot(WEB, incident_id=1)
    rig.svc.admin_put_status = status
    result = await executor.run(set_level("info"), WEB, snapshot)
    assert not result.ok
    assert (
        f"setting the log level at {rig.svc.url('/admin/log-level')} was refused" in result.detail
    )
    assert f"HTTP {status} {reason}" in result.detail
    assert result.detail.endswith("; body: 'unknown level'")
    assert result.detail.startswith("service 'web': ")


async def test_admin_unreadable_at_snapshot_refuses_the_change(rig: Rig) -> None:
    rig.svc.admin_get_status = 503
    executor = rig.executor(admin_url=rig.svc.url("/admin/log-level"))
    snapshot = await executor.snapshot(WEB, incident_id=1)
    assert snapshot.state["admin_level"] is None
    assert "HTTP 503" in snapshot.state["admin_error"]
    rig.svc.admin_get_status = None

    result = await executor.run(set_level("info"), WEB, snapshot)

    assert not result.ok
    assert "could not be rolled back" in result.detail and "HTTP 503" in result.detail
    assert rig.svc.puts == []
    await executor.restore(snapshot)  # nothing was saved, so nothing is put back
    assert rig.svc.puts == []


async def test_admin_answer_that_is_not_a_level_is_a_failed_step(rig: Rig) -> None:
    executor = rig.executor(admin_url=rig.svc.url("/healthz"))
    result = await executor.run(
        set_level("info"),
        WEB,
        step_snapshot(WEB).model_copy(update={"state": {"admin_level": "x"}}),
    )
    assert not result.ok
    assert """did not answer {"level": ...}; body: 'ok'""" in result.detail


async def test_auto_prefers_admin_and_via_picks_the_config_file(rig: Rig, conf_dir: Path) -> None:
    path = conf_dir / "web.env"
    executor = rig.with_file(
        path, "LOG_LEVEL=DEBUG\n", LEVEL, "LOG_LEVEL", admin_url=rig.svc.url("/admin/log-level")
    )
    rig.svc.config_file = None  # this service's reload does not change its running level
    _, by_admin = await snap_and_run(executor, set_level("warn"))
    assert by_admin.ok and rig.svc.puts == ["WARN"]
    assert path.read_text() == "LOG_LEVEL=DEBUG\n"

    _, by_file = await snap_and_run(executor, set_level("info", via="config_file"))
    assert by_file.ok, by_file.detail
    assert path.read_text() == "LOG_LEVEL=INFO\n"
    assert rig.svc.puts == ["WARN"]


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (set_level("info"), "it has no admin_url or config_file configured"),
        (set_level("info", via="admin"), "it has no admin_url configured"),
        (set_level("info", via="config_file"), "it has no config_file configured"),
        (RELOAD, "it has no reload_url configured"),
    ],
)
async def test_refuses_what_the_service_has_no_way_to_do(
    rig: Rig, step: PlannedStep, message: str
) -> None:
    result = await rig.executor().run(step, WEB, step_snapshot(WEB))
    assert not result.ok
    assert result.detail == f"service 'web' refused: {message}"


# -- reload -------------------------------------------------------------------------


async def test_reload_posts_to_the_reload_url(rig: Rig) -> None:
    executor = rig.executor(reload_url=rig.svc.url("/reload"))
    _, result = await snap_and_run(executor, RELOAD)
    assert result.ok, result.detail
    assert rig.svc.reloads == 1
    assert f"reload accepted at {rig.svc.url('/reload')} (HTTP 204 No Content in" in result.detail


async def test_reload_refused_connection_and_timeout_are_transient(
    rig: Rig, closed_port: int
) -> None:
    refused = rig.executor(reload_url=f"http://127.0.0.1:{closed_port}/reload")
    with pytest.raises(TransientError, match=r"service 'web': reload at .* Cannot connect") as info:
        await refused.run(RELOAD, WEB, step_snapshot(WEB))
    assert info.value.__cause__ is not None

    rig.svc.reload_delay_s = 3
    slow = rig.executor(reload_url=rig.svc.url("/reload"), http_timeout_s=0.2)
    with pytest.raises(TransientError, match=r"no answer within 0\.2 s"):
        await slow.run(RELOAD, WEB, step_snapshot(WEB))


async def test_reload_4xx_is_a_failed_step(rig: Rig) -> None:
    rig.svc.reload_status = 403
    result = await rig.executor(reload_url=rig.svc.url("/reload")).run(
        RELOAD, WEB, step_snapshot(WEB)
    )
    assert not result.ok
    assert "HTTP 403 Forbidden" in result.detail


def test_secret_query_strings_are_not_shown(rig: Rig) -> None:
    executor = rig.executor(admin_url=rig.svc.url("/admin/log-level?token=s3cret"))
    description = executor.describe_snapshot(WEB)
    assert "s3cret" not in description
    assert f"{rig.svc.url('/admin/log-level')}?…" in description


# -- log_level_is -----------------------------------------------------------------------


async def test_log_level_is_reads_the_admin_endpoint(rig: Rig) -> None:
    executor = rig.executor(admin_url=rig.svc.url("/admin/log-level"))
    same = await executor.check(PlannedCheck(check="log_level_is", params={"level": "debug"}), WEB)
    other = await executor.check(PlannedCheck(check="log_level_is", params={"level": "info"}), WEB)
    assert same.ok, same.detail
    assert not other.ok
    assert other.detail == (
        f"service 'web': log level at {rig.svc.url('/admin/log-level')} is DEBUG, not info"
    )


async def test_log_level_is_reads_the_config_file(rig: Rig, conf_dir: Path) -> None:
    path = conf_dir / "web.json"
    executor = rig.with_file(
        path, JSON_CONFIG, "info", "logging.level", admin_url=rig.svc.url("/admin/log-level")
    )
    check = PlannedCheck(check="log_level_is", params={"level": "info", "via": "config_file"})
    result = await executor.check(check, WEB)
    assert result.ok, result.detail
    assert result.detail == f"service 'web': log level at {path} is info"


async def test_log_level_is_says_what_the_service_lacks(rig: Rig) -> None:
    check = PlannedCheck(check="log_level_is", params={"level": "info", "via": "config_file"})
    result = await rig.executor(admin_url=rig.svc.url("/admin/log-level")).check(check, WEB)
    assert not result.ok
    assert result.detail == "service 'web' has no config_file configured"


async def test_log_level_is_never_raises_for_a_sick_service(rig: Rig, closed_port: int) -> None:
    executor = rig.executor(admin_url=f"http://127.0.0.1:{closed_port}/admin/log-level")
    result = await executor.check(PlannedCheck(check="log_level_is", params={"level": "info"}), WEB)
    assert not result.ok
    assert "service 'web': cannot read its log level" in result.detail


# -- snapshot and restore ----------------------------------------------------------------


async def test_snapshot_and_restore_give_the_identical_file_back(
    rig: Rig, conf_dir: Path, clock: FixedClock, snapshot_dir: Path
) -> None:
    path = conf_dir / "web.yml"
    executor = rig.with_file(path, YAML_CONFIG, "debug", "logging.level")
    original = path.read_bytes()

    snapshot, result = await snap_and_run(executor, set_level("info"))
    assert result.ok and rig.svc.level == "info"
    path.write_bytes(path.read_bytes() + b"\nextra: added by someone\n")

    copy = Path(snapshot.location)
    assert copy.parent == snapshot_dir
    assert copy.name.startswith("incident-1-web-20261124T030000Z-") and copy.suffix == ".yml"
    assert mode_of(copy) == 0o600
    assert content(copy) == original and snapshot.size_bytes == len(original)
    assert snapshot.taken_at == clock.now() and snapshot.target == WEB
    assert snapshot.state["config_file"] == str(path)

    await executor.restore(snapshot)

    assert path.read_bytes() == original
    assert rig.svc.reloads == 2 and rig.svc.level == "debug"


async def test_restore_of_an_unchanged_file_neither_writes_nor_reloads(
    rig: Rig, conf_dir: Path
) -> None:
    path = conf_dir / "web.env"
    executor = rig.with_file(path, ENV_CONFIG, "debug", "LOG_LEVEL")
    snapshot = await executor.snapshot(WEB, incident_id=2)
    inode = path.stat().st_ino
    await executor.restore(snapshot)
    assert path.stat().st_ino == inode
    assert rig.svc.reloads == 0


async def test_snapshots_in_the_same_second_do_not_overwrite(rig: Rig, conf_dir: Path) -> None:
    path = conf_dir / "web.env"
    executor = rig.with_file(path, "LOG_LEVEL=debug\n", LEVEL, "LOG_LEVEL")
    first = await executor.snapshot(WEB, incident_id=1)
    path.write_text("LOG_LEVEL=info\n")
    second = await executor.snapshot(WEB, incident_id=1)
    assert first.location != second.location
    assert content(first.location) == b"LOG_LEVEL=debug\n"
    assert content(second.location) == b"LOG_LEVEL=info\n"


async def test_restore_refuses_a_damaged_snapshot(rig: Rig, conf_dir: Path) -> None:
    path = conf_dir / "web.env"
    executor = rig.with_file(path, "LOG_LEVEL=debug\n", LEVEL, "LOG_LEVEL")
    snapshot, _ = await snap_and_run(executor, set_level("info"))
    overwrite(snapshot.location, b"LOG_LEVEL=")
    with pytest.raises(ServiceError, match="no longer matches the checksum"):
        await executor.restore(snapshot)
    assert path.read_text() == "LOG_LEVEL=info\n"


async def test_restore_refuses_a_copy_outside_the_snapshot_dir(
    rig: Rig, conf_dir: Path, tmp_path: Path
) -> None:
    path = conf_dir / "web.env"
    executor = rig.with_file(path, "LOG_LEVEL=debug\n", LEVEL, "LOG_LEVEL")
    snapshot, _ = await snap_and_run(executor, set_level("info"))
    elsewhere = tmp_path / "elsewhere.env"
    shutil.copy(snapshot.location, elsewhere)
    with pytest.raises(ServiceError, match="is not in"):
        await executor.restore(snapshot.model_copy(update={"location": str(elsewhere)}))
    assert path.read_text() == "LOG_LEVEL=info\n"


async def test_restore_that_cannot_reach_the_admin_endpoint_raises(
    rig: Rig, closed_port: int
) -> None:
    executor = rig.executor(admin_url=f"http://127.0.0.1:{closed_port}/admin/log-level")
    snapshot = step_snapshot(WEB).model_copy(update={"state": {"admin_level": "DEBUG"}})
    with pytest.raises(TransientError, match="service 'web': reading the log level"):
        await executor.restore(snapshot)


def test_describe_snapshot_says_what_is_kept(rig: Rig, conf_dir: Path, snapshot_dir: Path) -> None:
    executor = rig.executor(
        config_file=conf_dir / "web.yml",
        reload_url=rig.svc.url("/reload"),
        admin_url=rig.svc.url("/admin/log-level"),
    )
    assert executor.describe_snapshot(WEB) == (
        f"a copy of {conf_dir / 'web.yml'} into {snapshot_dir} and the log level "
        f"{rig.svc.url('/admin/log-level')} reports; rollback writes the file back if it "
        "changed and asks the service to reload and sets that level again"
    )


# -- validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "step",
    [
        PlannedStep(action="restart", timeout_s=5),
        PlannedStep(action="set_log_level", params={}, timeout_s=5),
        PlannedStep(action="set_log_level", params={"level": "info\nADMIN=1"}, timeout_s=5),
        PlannedStep(action="set_log_level", params={"level": "info", "via": "ssh"}, timeout_s=5),
        PlannedStep(action="reload", params={"hard": True}, timeout_s=5),
    ],
)
async def test_run_rejects_unknown_actions_and_bad_params(rig: Rig, step: PlannedStep) -> None:
    with pytest.raises(ValueError):
        await rig.executor().run(step, WEB, step_snapshot(WEB))


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("ping", {}),
        ("http_healthy", {"status": "200"}),
        ("http_healthy", {"within_s": -1}),
        ("tcp_open", {"port": 80}),
        ("log_level_is", {}),
    ],
)
async def test_check_rejects_unknown_checks_and_bad_params(
    rig: Rig, name: str, params: dict[str, Any]
) -> None:
    with pytest.raises(ValueError):
        await rig.executor().check(PlannedCheck(check=name, params=params), WEB)


@pytest.mark.parametrize(("name", "params"), [("speed", {}), ("health_latency", {"repeat": 0})])
async def test_measure_rejects_unknown_benchmarks_and_bad_params(
    rig: Rig, name: str, params: dict[str, Any]
) -> None:
    with pytest.raises(ValueError):
        await rig.executor().measure(
            PlannedBenchmark(benchmark=name, params=params, tolerance=0.5), WEB
        )


async def test_refuses_a_target_of_another_executor(rig: Rig) -> None:
    foreign = Target(executor="sqlite", name="web")
    with pytest.raises(ValueError, match="not service"):
        await rig.executor().run(RELOAD, foreign, step_snapshot(foreign))
    with pytest.raises(ValueError, match="not service"):
        await rig.executor().snapshot(foreign, incident_id=1)


# -- built-in patterns and playbooks, from a realistic alert to a verified result -----------


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return builtin_catalog(tmp_path, "service")


def alertmanager_alert(name: str, **labels: str) -> Alert:
    payload = AlertmanagerPayload(
        groupKey=f'{{}}:{{alertname="{name}"}}',
        receiver="grace",
        alerts=[
            AlertmanagerAlert(
                status="firing",
                labels={"alertname": name, "severity": "warning", **labels},
                annotations={"summary": f"{name} on {labels.get('service', '?')}"},
                startsAt=datetime(2026, 11, 24, 2, 55, tzinfo=UTC),
            )
        ],
    )
    body = payload.model_dump_json().encode()
    (alert,) = parse_alertmanager(body, received_at=datetime(2026, 11, 24, 3, 0, tzinfo=UTC))
    return alert


@dataclass
class Healed:
    steps: list[StepResult]
    verification: Verification
    snapshots: list[Snapshot]


async def heal(executor: ServiceExecutor, plan: Plan) -> Healed:
    """What the engine does with an approved plan, minus the store and Slack."""
    before = [await executor.measure(b, plan.target) for b in plan.benchmarks]
    snapshots: list[Snapshot] = []
    steps: list[StepResult] = []
    for step in plan.steps:
        snapshots.append(await executor.snapshot(plan.target, incident_id=9))
        steps.append(await executor.run(step, plan.target, snapshots[-1]))
    checks: list[CheckResult] = [await executor.check(c, plan.target) for c in plan.checks]
    after = [await executor.measure(b, plan.target) for b in plan.benchmarks]
    benchmarks = tuple(
        BenchmarkResult(benchmark=b.benchmark, before_s=s0, after_s=s1, tolerance=b.tolerance)
        for b, s0, s1 in zip(plan.benchmarks, before, after, strict=True)
    )
    return Healed(steps, Verification(checks=tuple(checks), benchmarks=benchmarks), snapshots)


def plan_for(
    catalog: Catalog, alert: Alert, executor: ServiceExecutor, allowlist: list[str]
) -> Plan:
    diagnosis = catalog.diagnose(alert)
    assert diagnosis is not None, alert
    playbook = catalog.playbook_for(diagnosis.problem)
    assert playbook is not None
    return make_plan(playbook, alert, executor, allowlist)


def test_builtins_load_with_their_ids_and_tiers(catalog: Catalog) -> None:
    log_level = catalog.playbook_for("service_log_level_debug")
    unhealthy = catalog.playbook_for("service_unhealthy")
    assert log_level is not None and log_level.id == "service-log-level-info"
    assert log_level.tier == 1 and log_level.target.from_label == "service"
    assert unhealthy is not None and unhealthy.id == "service-reload" and unhealthy.tier == 2
    assert unhealthy.target.from_label == "service"


@pytest.mark.parametrize(
    ("name", "labels", "problem"),
    [
        ("LogLevelDebug", {}, "service_log_level_debug"),
        ("DebugLoggingEnabled", {}, "service_log_level_debug"),
        ("HighLogVolume", {"level": "DEBUG"}, "service_log_level_debug"),
        ("ProbeFailed", {"instance": "http://web:8080/healthz"}, "service_unhealthy"),
        ("BlackboxProbeFailed", {"job": "blackbox"}, "service_unhealthy"),
        ("EndpointDown", {}, "service_unhealthy"),
        ("ServiceUnhealthy", {}, "service_unhealthy"),
    ],
)
def test_realistic_alerts_are_diagnosed(
    catalog: Catalog, name: str, labels: dict[str, str], problem: str
) -> None:
    diagnosis = catalog.diagnose(alertmanager_alert(name, service="web", **labels))
    assert diagnosis is not None and diagnosis.problem == problem
    assert "web" in diagnosis.explanation


def test_a_busy_log_that_is_not_at_debug_is_not_diagnosed(catalog: Catalog) -> None:
    alert = alertmanager_alert("HighLogVolume", service="web", level="info")
    assert catalog.diagnose(alert) is None


def test_the_service_is_the_first_label_that_names_one(catalog: Catalog) -> None:
    # An `app` label names the service when no `service` label does; only a
    # configured, allowlisted service is ever acted on.
    diagnosis = catalog.diagnose(alertmanager_alert("LogLevelDebug", app="web"))
    assert diagnosis is not None and diagnosis.facts == {"service": "web"}
    bare = catalog.diagnose(alertmanager_alert("LogLevelDebug", job="web"))
    assert bare is not None and bare.facts == {} and "label `service`" in bare.looked_for["service"]


async def test_debug_alert_heals_through_the_config_file_and_verifies(
    rig: Rig, conf_dir: Path, catalog: Catalog
) -> None:
    path = conf_dir / "web.yml"
    executor = rig.with_file(path, YAML_CONFIG, "debug", "logging.level")
    alert = alertmanager_alert("LogLevelDebug", service="web", namespace="prod")
    plan = plan_for(catalog, alert, executor, ["web", "api-*"])

    healed = await heal(executor, plan)

    assert [s.ok for s in healed.steps] == [True], healed.steps
    assert healed.verification.ok, healed.verification
    assert [c.check for c in healed.verification.checks] == ["log_level_is", "http_healthy"]
    assert path.read_bytes() == YAML_CONFIG.replace(LEVEL, "info").encode()
    assert rig.svc.level == "info" and rig.svc.reloads == 1


async def test_debug_alert_heals_through_the_admin_endpoint_and_verifies(
    rig: Rig, catalog: Catalog
) -> None:
    executor = rig.executor(admin_url=rig.svc.url("/admin/log-level"))
    alert = alertmanager_alert("DebugLoggingEnabled", service="web")
    healed = await heal(executor, plan_for(catalog, alert, executor, ["web"]))
    assert healed.verification.ok, healed.verification
    assert rig.svc.level == "INFO" and rig.svc.puts == ["INFO"]


async def test_a_heal_that_slows_the_service_fails_verification_and_rolls_back(
    rig: Rig, conf_dir: Path, catalog: Catalog
) -> None:
    path = conf_dir / "web.env"
    executor = rig.with_file(path, ENV_CONFIG, "DEBUG", "LOG_LEVEL")
    original = path.read_bytes()
    rig.svc.slow_after_reload_s = 0.1
    alert = alertmanager_alert("HighLogVolume", service="web", level="debug")

    healed = await heal(executor, plan_for(catalog, alert, executor, ["web"]))

    assert all(c.ok for c in healed.verification.checks), healed.verification
    (latency_result,) = healed.verification.benchmarks
    assert not latency_result.ok and not healed.verification.ok
    for snapshot in reversed(healed.snapshots):
        await executor.restore(snapshot)
    assert path.read_bytes() == original
    assert rig.svc.level == "DEBUG"


async def test_probe_failed_reloads_and_waits_until_healthy(rig: Rig, catalog: Catalog) -> None:
    rig.svc.health = [503]
    rig.svc.after_reload = [503, 503, 200]
    executor = rig.executor(reload_url=rig.svc.url("/reload"))
    alert = alertmanager_alert("ProbeFailed", service="web", instance=rig.svc.url("/healthz"))
    plan = plan_for(catalog, alert, executor, ["web"])
    assert plan.tier == 2 and plan.required_approvals == 1

    healed = await heal(executor, plan)

    assert [s.ok for s in healed.steps] == [True]
    assert healed.verification.ok, healed.verification
    (healthy,) = healed.verification.checks
    assert "answered HTTP 200 OK" in healthy.detail and "(try 3" in healthy.detail
    assert rig.svc.reloads == 1


async def test_an_unhealthy_service_that_stays_down_fails_verification(
    rig: Rig, catalog: Catalog
) -> None:
    rig.svc.health = [503]
    executor = rig.executor(reload_url=rig.svc.url("/reload"))
    alert = alertmanager_alert("ServiceUnhealthy", service="web")
    plan = plan_for(catalog, alert, executor, ["web"])
    quick = plan.model_copy(
        update={"checks": (PlannedCheck(check="http_healthy", params={"within_s": 0.5}),)}
    )
    healed = await heal(executor, quick)
    assert not healed.verification.ok
    assert "HTTP 503" in healed.verification.checks[0].detail


@pytest.mark.parametrize(
    ("service", "allowlist", "message"),
    [
        ("payments", ["*"], "no such service is configured"),
        ("web", ["api-*"], "is not in the service allowlist"),
    ],
)
def test_alerts_naming_other_services_are_refused(
    rig: Rig, catalog: Catalog, service: str, allowlist: list[str], message: str
) -> None:
    alert = alertmanager_alert("EndpointDown", service=service)
    with pytest.raises(TargetRefused, match=message):
        plan_for(catalog, alert, rig.executor(), allowlist)


@pytest.fixture(autouse=True)
def _no_stray_files(conf_dir: Path) -> Iterator[None]:
    """Every edit is atomic: no temp file is ever left beside a config file."""
    yield
    assert not [p.name for p in conf_dir.iterdir() if p.name.endswith(".grace")]
