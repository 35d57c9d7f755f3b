"""The service executor: health checks and log levels of HTTP services.

The target is a service NAME from the operator's `services:` config (trusted);
the alert label only picks one of them, and only through the allowlist. URLs
and the config file come from that config, never from the alert.

The log level changes either through the service's admin endpoint (GET and
PUT of `{"level": ...}`) or by editing one value in its config file, keeping
every other byte, then asking it to reload. Both are undone by `restore`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal

import aiohttp
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator, model_validator

from engine.executors.common import (
    RepeatParams,
    lookup,
    own,
    private_dir_usable,
    shorten,
    utc,
)
from engine.executors.config_edit import (
    ServiceError,
    copy_config,
    file_level,
    set_file_level,
    styled,
    write_atomically,
)
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
from engine.ports import (
    Clock,
    ExecutorSpec,
    Params,
    TargetRefused,
    TransientError,
    WaitingParams,
)

EXECUTOR_NAME = "service"

_POLL_INTERVAL_S = 0.25
_MAX_BODY_BYTES = 64 * 1024
_EXCERPT_CHARS = 120
# A level is written into YAML, JSON and key=value files: a plain word cannot
# break out of its value or add another key.
_LEVEL = r"^[A-Za-z][A-Za-z0-9_-]{0,31}$"
_KEY = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"


# -- the operator's config --------------------------------------------------------


class ServiceConfig(BaseModel):
    """One service under `services:` in GRACE's config. Trusted: the operator wrote it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    health_url: AnyHttpUrl | None = None
    health_tcp: str | None = Field(default=None, description='"host:port" or "[v6]:port"')
    config_file: Path | None = None
    log_level_key: str = Field(
        default="log_level", pattern=_KEY, description="dotted (logging.level) in YAML and JSON"
    )
    admin_url: AnyHttpUrl | None = Field(
        default=None, description='GET returns {"level": ...}; PUT {"level": ...} sets it'
    )
    reload_url: AnyHttpUrl | None = Field(
        default=None, description="POST asks the service to re-read its config file"
    )

    @field_validator("health_tcp")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is not None:
            _split_host_port(value)
        return value

    @field_validator("health_url", "admin_url", "reload_url")
    @classmethod
    def _no_credentials(cls, value: AnyHttpUrl | None) -> AnyHttpUrl | None:
        # URLs are shown in Slack threads; a password in one would be shown too.
        if value is not None and (value.username or value.password):
            raise ValueError("credentials in URLs are not supported: GRACE shows URLs in Slack")
        return value

    @field_validator("config_file")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_absolute():
            raise ValueError("config_file must be an absolute path")
        return value

    @model_validator(mode="after")
    def _has_a_health_check(self) -> ServiceConfig:
        if self.health_url is None and self.health_tcp is None:
            raise ValueError("a service needs health_url or health_tcp (or both)")
        return self


# -- parameters ----------------------------------------------------------------------

Via = Literal["auto", "config_file", "admin"]


class SetLogLevelParams(Params):
    level: str = Field(pattern=_LEVEL)
    via: Via = "auto"


class ReloadParams(Params):
    pass


class HttpHealthyParams(WaitingParams):
    status: int = Field(default=200, ge=100, le=599)


class TcpOpenParams(WaitingParams):
    pass


class LogLevelIsParams(Params):
    level: str = Field(pattern=_LEVEL)
    via: Via = "auto"


SPEC = ExecutorSpec(
    actions={"set_log_level": SetLogLevelParams, "reload": ReloadParams},
    checks={
        "http_healthy": HttpHealthyParams,
        "tcp_open": TcpOpenParams,
        "log_level_is": LogLevelIsParams,
    },
    benchmarks={"health_latency": RepeatParams},
)


@dataclass(frozen=True)
class _Reply:
    status: int
    reason: str
    body: bytes
    seconds: float

    def summary(self) -> str:
        return f"HTTP {self.status} {self.reason}".rstrip() + f" in {_ms(self.seconds)}"


class ServiceExecutor:
    """Checks services' health over HTTP and TCP and changes their log level
    through an admin endpoint or their config file, undoing it on rollback."""

    name = EXECUTOR_NAME
    spec = SPEC

    def __init__(
        self,
        services: Mapping[str, ServiceConfig],
        snapshot_dir: Path,
        clock: Clock,
        *,
        http_timeout_s: float = 5.0,
    ) -> None:
        self._services = dict(services)
        self._snapshot_dir = Path(snapshot_dir)
        self._clock = clock
        self._http_timeout_s = http_timeout_s

    # -- targets -----------------------------------------------------------

    def resolve_target(self, value: str, allowlist: Sequence[str]) -> Target:
        """Only a configured service whose name an allowlist glob matches."""
        shown = repr(value)
        if not allowlist:
            raise TargetRefused(
                f"service target {shown} refused: no service targets are allowlisted"
            )
        if value not in self._services:
            known = ", ".join(sorted(self._services)) or "none"
            raise TargetRefused(
                f"service target {shown} refused: no such service is configured (known: {known})"
            )
        if not any(fnmatchcase(value, pattern) for pattern in allowlist):
            raise TargetRefused(f"service target {shown} is not in the service allowlist")
        return Target(executor=EXECUTOR_NAME, name=value)

    async def available(self) -> Availability:
        if not self._services:
            return Availability(ok=False, reason="no services are configured under `services:`")
        return await asyncio.to_thread(private_dir_usable, self._snapshot_dir, "snapshot dir")

    def _config(self, target: Target) -> ServiceConfig:
        own(EXECUTOR_NAME, target)
        config = self._services.get(target.name)
        if config is None:
            raise ValueError(f"service {target.name!r} is no longer configured")
        return config

    # -- snapshot and restore ---------------------------------------------

    def describe_snapshot(self, target: Target) -> str:
        config = self._config(target)
        saved: list[str] = []
        undo: list[str] = []
        if config.config_file is not None:
            saved.append(f"a copy of {config.config_file} into {self._snapshot_dir}")
            reload = " and asks the service to reload" if config.reload_url else ""
            undo.append(f"writes the file back if it changed{reload}")
        if config.admin_url is not None:
            saved.append(f"the log level {_shown(config.admin_url)} reports")
            undo.append("sets that level again")
        if not saved:
            return f"nothing: service {target.name!r} has no config file or admin endpoint"
        return f"{' and '.join(saved)}; rollback {' and '.join(undo)}"

    async def snapshot(self, target: Target, incident_id: int) -> Snapshot:
        """Copy the config file and record the running level.

        An admin endpoint that cannot be read is recorded, not raised: a reload
        must still be possible for a service too sick to answer, and a
        set_log_level through the admin endpoint refuses such a snapshot.
        """
        config = self._config(target)
        taken_at = self._clock.now()
        state: dict[str, Any] = {}
        location, size = f"nothing to save for service {target.name}", 0
        if config.config_file is not None:
            stamp = utc(taken_at).strftime("%Y%m%dT%H%M%SZ")
            prefix = f"incident-{incident_id}-{_safe(target.name)}-{stamp}-"
            real, copy, digest, size = await asyncio.to_thread(
                copy_config, config.config_file, self._snapshot_dir, prefix
            )
            location = str(copy)
            state["config_file"] = str(real)
            state["sha256"] = digest
        if config.admin_url is not None:
            try:
                state["admin_level"] = await self._admin_level(target.name, config.admin_url)
            except (TransientError, ServiceError) as exc:
                state["admin_level"] = None
                state["admin_error"] = str(exc)
            if config.config_file is None:
                location = _shown(config.admin_url)
        return Snapshot(
            incident_id=incident_id,
            target=target,
            location=location,
            size_bytes=size,
            taken_at=taken_at,
            state=state,
        )

    async def restore(self, snapshot: Snapshot) -> None:
        """Put the config file back (then reload) and the admin level back,
        each only when it differs now; raise when either cannot be done."""
        name = snapshot.target.name
        config = self._config(snapshot.target)
        if "config_file" in snapshot.state:
            rewritten = await asyncio.to_thread(self._restore_file, snapshot, config)
            if rewritten and config.reload_url is not None:
                await self._act(name, "reload after restoring", "POST", config.reload_url)
        level = snapshot.state.get("admin_level")
        if level is not None and config.admin_url is not None:
            current = await self._admin_level(name, config.admin_url)
            if current != level:
                await self._put_level(name, config.admin_url, level)

    def _restore_file(self, snapshot: Snapshot, config: ServiceConfig) -> bool:
        """True when the live file differed and was rewritten."""
        name = snapshot.target.name
        recorded = str(snapshot.state["config_file"])
        if config.config_file is None or os.path.realpath(config.config_file) != recorded:
            raise ServiceError(
                f"cannot restore service {name!r}: the snapshot is of {recorded}, "
                f"but its config file is now {config.config_file}"
            )
        copy = Path(snapshot.location)
        if copy.parent.resolve() != self._snapshot_dir.resolve():
            raise ServiceError(
                f"cannot restore service {name!r}: {copy} is not in {self._snapshot_dir}"
            )
        if not copy.is_file():
            raise ServiceError(f"cannot restore service {name!r}: snapshot {copy} is missing")
        saved = copy.read_bytes()
        if hashlib.sha256(saved).hexdigest() != snapshot.state["sha256"]:
            raise ServiceError(
                f"refusing to restore service {name!r} from {copy}: "
                "it no longer matches the checksum taken with it"
            )
        live = Path(recorded)
        if live.read_bytes() == saved:
            return False
        write_atomically(live, saved)
        return True

    # -- actions -----------------------------------------------------------

    async def run(self, step: PlannedStep, target: Target, snapshot: Snapshot) -> StepResult:
        config = self._config(target)
        model = lookup(EXECUTOR_NAME, self.spec.actions, "action", step.action)
        params = model.model_validate(step.params)
        started = time.perf_counter()
        try:
            if isinstance(params, SetLogLevelParams):
                ok, detail = await self._set_log_level(target.name, config, params, snapshot)
            elif isinstance(params, ReloadParams):
                ok, detail = await self._reload(target.name, config)
            else:  # pragma: no cover - the spec and this dispatch are edited together
                raise ValueError(f"service action {step.action!r} has no implementation")
        except (ServiceError, OSError) as exc:
            ok, detail = False, f"service {target.name!r}: {exc}"
        return StepResult(
            action=step.action, ok=ok, detail=detail, seconds=time.perf_counter() - started
        )

    async def _set_log_level(
        self, name: str, config: ServiceConfig, params: SetLogLevelParams, snapshot: Snapshot
    ) -> tuple[bool, str]:
        lacks = f"service {name!r} refused: it has no {_lacks(params.via)} configured"
        if _pick(params.via, config) == "admin":
            if config.admin_url is None:
                return False, lacks
            if snapshot.state.get("admin_level") is None:
                why = snapshot.state.get("admin_error", "the snapshot holds no admin level")
                return False, (
                    f"service {name!r} refused: the level before this step could not be "
                    f"saved, so it could not be rolled back ({why})"
                )
            return await self._set_via_admin(name, config.admin_url, params.level)
        if config.config_file is None:
            return False, lacks
        return await self._set_via_file(name, config, config.config_file, params.level)

    async def _set_via_admin(self, name: str, url: AnyHttpUrl, level: str) -> tuple[bool, str]:
        current = await self._admin_level(name, url)
        wanted = styled(level, current)
        if current.casefold() == level.casefold():
            return True, f"service {name!r}: log level already {current} at {_shown(url)}"
        reply = await self._put_level(name, url, wanted)
        return True, (
            f"service {name!r}: log level {current} -> {wanted} at {_shown(url)} "
            f"({reply.summary()})"
        )

    async def _set_via_file(
        self, name: str, config: ServiceConfig, path: Path, level: str
    ) -> tuple[bool, str]:
        before, after = await asyncio.to_thread(set_file_level, path, config.log_level_key, level)
        done = (
            f"log level {before} -> {after}" if before != after else f"log level already {before}"
        )
        done += f" in {path}"
        if config.reload_url is None:
            return True, (
                f"service {name!r}: {done}; no reload_url is configured, so the service "
                "reads it on its next restart or reload"
            )
        reply = await self._act(name, "reload", "POST", config.reload_url)
        return True, f"service {name!r}: {done}; reload accepted ({reply.summary()})"

    async def _reload(self, name: str, config: ServiceConfig) -> tuple[bool, str]:
        if config.reload_url is None:
            return False, f"service {name!r} refused: it has no reload_url configured"
        reply = await self._act(name, "reload", "POST", config.reload_url)
        return True, (
            f"service {name!r}: reload accepted at {_shown(config.reload_url)} ({reply.summary()})"
        )

    # -- checks ------------------------------------------------------------

    async def check(self, check: PlannedCheck, target: Target) -> CheckResult:
        """An unhealthy service is an answer (ok=False), never an exception."""
        config = self._config(target)
        model = lookup(EXECUTOR_NAME, self.spec.checks, "check", check.check)
        params = model.model_validate(check.params)
        name = target.name
        if isinstance(params, HttpHealthyParams):
            ok, detail = await self._http_healthy(name, config, params)
        elif isinstance(params, TcpOpenParams):
            host, port = _tcp_address(config)
            ok, detail = await _poll(lambda: self._probe_tcp(host, port), params.within_s)
            detail = f"service {name!r}: {detail}"
        elif isinstance(params, LogLevelIsParams):
            ok, detail = await self._log_level_is(name, config, params)
        else:  # pragma: no cover - the spec and this dispatch are edited together
            raise ValueError(f"service check {check.check!r} has no implementation")
        return CheckResult(check=check.check, ok=ok, detail=detail)

    async def _http_healthy(
        self, name: str, config: ServiceConfig, params: HttpHealthyParams
    ) -> tuple[bool, str]:
        url = config.health_url
        if url is None:
            return False, f"service {name!r} has no health_url configured"
        ok, detail = await _poll(lambda: self._probe_http(url, params.status), params.within_s)
        return ok, f"service {name!r}: {detail}"

    async def _probe_http(self, url: AnyHttpUrl, expected: int) -> tuple[bool, str]:
        try:
            reply = await self._request("GET", url)
        except (aiohttp.ClientError, OSError) as exc:
            return False, f"{_shown(url)} did not answer: {_why(exc, self._http_timeout_s)}"
        if reply.status == expected:
            return True, f"{_shown(url)} answered {reply.summary()}"
        return False, (
            f"{_shown(url)} answered {reply.summary()}, expected {expected}{_excerpt(reply.body)}"
        )

    async def _probe_tcp(self, host: str, port: int) -> tuple[bool, str]:
        where = f"tcp {_join_host_port(host, port)}"
        try:
            seconds = await self._connect(host, port)
        except OSError as exc:
            return False, f"{where} did not accept a connection: {_why(exc, self._http_timeout_s)}"
        return True, f"{where} accepted a connection in {_ms(seconds)}"

    async def _log_level_is(
        self, name: str, config: ServiceConfig, params: LogLevelIsParams
    ) -> tuple[bool, str]:
        lacks = f"service {name!r} has no {_lacks(params.via)} configured"
        try:
            if _pick(params.via, config) == "admin":
                if config.admin_url is None:
                    return False, lacks
                current = await self._admin_level(name, config.admin_url)
                where = _shown(config.admin_url)
            else:
                if config.config_file is None:
                    return False, lacks
                current = await asyncio.to_thread(
                    file_level, config.config_file, config.log_level_key
                )
                where = str(config.config_file)
        except (ServiceError, TransientError, OSError) as exc:
            return False, f"service {name!r}: cannot read its log level: {exc}"
        ok = current.casefold() == params.level.casefold()
        verdict = "is" if ok else f"is {current}, not"
        return ok, f"service {name!r}: log level at {where} {verdict} {params.level}"

    # -- benchmarks --------------------------------------------------------

    async def measure(self, benchmark: PlannedBenchmark, target: Target) -> float:
        """Median seconds of the HTTP health request (else the TCP connect).

        Only time: whether the answer was healthy is the checks' business.
        """
        config = self._config(target)
        model = lookup(EXECUTOR_NAME, self.spec.benchmarks, "benchmark", benchmark.benchmark)
        params = model.model_validate(benchmark.params)
        if not isinstance(params, RepeatParams):  # pragma: no cover - one benchmark
            raise ValueError(f"service benchmark {benchmark.benchmark!r} has no implementation")
        rounds = [await self._health_latency(target.name, config) for _ in range(params.repeat)]
        return statistics.median(rounds)

    async def _health_latency(self, name: str, config: ServiceConfig) -> float:
        url = config.health_url
        host, port = _tcp_address(config)
        try:
            if url is not None:
                return (await self._request("GET", url)).seconds
            return await self._connect(host, port)
        except (aiohttp.ClientError, OSError) as exc:
            where = _shown(url) if url is not None else f"tcp {_join_host_port(host, port)}"
            why = _why(exc, self._http_timeout_s)
            raise TransientError(f"service {name!r}: health latency of {where}: {why}") from exc

    # -- HTTP and TCP ------------------------------------------------------

    async def _request(
        self, method: str, url: AnyHttpUrl, payload: dict[str, str] | None = None
    ) -> _Reply:
        """One request on its own connection, so its time includes the connect,
        as a client's would. Redirects are answers, not followed."""
        timeout = aiohttp.ClientTimeout(total=self._http_timeout_s)
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            started = time.perf_counter()
            async with session.request(
                method, str(url), json=payload, allow_redirects=False
            ) as response:
                body = await response.content.read(_MAX_BODY_BYTES)
            seconds = time.perf_counter() - started
        return _Reply(response.status, response.reason or "", body, seconds)

    async def _connect(self, host: str, port: int) -> float:
        started = time.perf_counter()
        async with asyncio.timeout(self._http_timeout_s):
            _, writer = await asyncio.open_connection(host, port)
        seconds = time.perf_counter() - started
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return seconds

    async def _act(
        self,
        name: str,
        what: str,
        method: str,
        url: AnyHttpUrl,
        payload: dict[str, str] | None = None,
    ) -> _Reply:
        """A request that changes (or reads for changing) the service: a
        refused connection, a timeout, a 5xx, 408 or 429 are worth retrying;
        any other answer but 2xx is final."""
        where = f"service {name!r}: {what} at {_shown(url)}"
        try:
            reply = await self._request(method, url, payload)
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
            raise TransientError(f"{where} failed: {_why(exc, self._http_timeout_s)}") from exc
        if reply.status >= 500 or reply.status in (408, 429):
            raise TransientError(f"{where} failed: {reply.summary()}{_excerpt(reply.body)}")
        if not 200 <= reply.status < 300:
            refused = f"{what} at {_shown(url)} was refused: {reply.summary()}"
            raise ServiceError(refused + _excerpt(reply.body))
        return reply

    async def _admin_level(self, name: str, url: AnyHttpUrl) -> str:
        reply = await self._act(name, "reading the log level", "GET", url)
        try:
            data = json.loads(reply.body)
        except ValueError:
            data = None
        level = data.get("level") if isinstance(data, dict) else None
        if not isinstance(level, str) or not level:
            raise ServiceError(
                f'{_shown(url)} did not answer {{"level": ...}}{_excerpt(reply.body)}'
            )
        return level

    async def _put_level(self, name: str, url: AnyHttpUrl, level: str) -> _Reply:
        return await self._act(name, "setting the log level", "PUT", url, {"level": level})


# -- choosing the way ------------------------------------------------------------------


def _pick(via: Via, config: ServiceConfig) -> Literal["admin", "config_file"]:
    """auto: the admin endpoint when there is one, as it knows the running level."""
    if via != "auto":
        return via
    return "admin" if config.admin_url is not None else "config_file"


def _lacks(via: Via) -> str:
    """What a service lacks when `via` finds nothing to work with."""
    return {"auto": "admin_url or config_file", "admin": "admin_url"}.get(via, "config_file")


# -- polling and showing -----------------------------------------------------------


async def _poll(
    probe: Callable[[], Awaitable[tuple[bool, str]]], within_s: float
) -> tuple[bool, str]:
    """Probe until it passes or `within_s` has passed; the last answer says how it went."""
    started = time.monotonic()
    tries = 0
    while True:
        tries += 1
        ok, detail = await probe()
        left = within_s - (time.monotonic() - started)
        if ok or left <= 0:
            break
        await asyncio.sleep(min(_POLL_INTERVAL_S, left))
    if tries > 1:
        detail += f" (try {tries}, after {time.monotonic() - started:.1f} s)"
    return ok, detail


def _shown(url: AnyHttpUrl) -> str:
    """The URL without its query, which may carry a token, for threads and logs."""
    text = str(url)
    return text.split("?", 1)[0] + ("?…" if url.query else "")


def _excerpt(body: bytes) -> str:
    """The start of a body, whitespace folded and control characters escaped."""
    if not body:
        return ""
    return f"; body: {shorten(body.decode('utf-8', 'replace'), _EXCERPT_CHARS)!r}"


def _why(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout_s:g} s"
    return str(exc) or type(exc).__name__


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "service"


def _split_host_port(value: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` into its parts, or ValueError."""
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not host:port")
    return host, int(port)


def _join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _tcp_address(config: ServiceConfig) -> tuple[str, int]:
    """health_tcp, else the host and port of health_url (one of them is always set)."""
    if config.health_tcp is not None:
        return _split_host_port(config.health_tcp)
    assert config.health_url is not None and config.health_url.host is not None
    host = config.health_url.host.strip("[]")
    return host, config.health_url.port or (443 if config.health_url.scheme == "https" else 80)
