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
import hashlib
import os
import re
import time
from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from engine.executors.common import not_allowlisted, own, private_dir_usable, refused, utc
from engine.executors.plugin import Context, ExecutorPlugin, register_executor

# Importing them declares their operations in OPS.
from engine.executors.service import health, log_level  # noqa: F401
from engine.executors.service.client import ServiceHttp, shown
from engine.executors.service.config import ServiceConfig, ServicesConfig
from engine.executors.service.config_edit import ServiceError, copy_config, write_atomically
from engine.executors.service.operations import EXECUTOR_NAME, OPS, Service
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
from engine.ports import Clock, Executor, TransientError

SPEC = OPS.spec


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
        self._http = ServiceHttp(http_timeout_s)

    # -- targets -----------------------------------------------------------

    def resolve_target(self, value: str, allowlist: Sequence[str]) -> Target:
        """Only a configured service whose name an allowlist glob matches."""
        if not allowlist:
            raise refused(EXECUTOR_NAME, value, "no service targets are allowlisted")
        if value not in self._services:
            known = ", ".join(sorted(self._services)) or "none"
            raise refused(EXECUTOR_NAME, value, f"no such service is configured (known: {known})")
        if not any(fnmatchcase(value, pattern) for pattern in allowlist):
            raise not_allowlisted(EXECUTOR_NAME, value)
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

    def _service(self, target: Target) -> Service:
        return Service(target.name, self._config(target), self._http)

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
            saved.append(f"the log level {shown(config.admin_url)} reports")
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
                state["admin_level"] = await self._http.admin_level(target.name, config.admin_url)
            except (TransientError, ServiceError) as exc:
                state["admin_level"] = None
                state["admin_error"] = str(exc)
            if config.config_file is None:
                location = shown(config.admin_url)
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
                await self._http.act(name, "reload after restoring", "POST", config.reload_url)
        level = snapshot.state.get("admin_level")
        if level is not None and config.admin_url is not None:
            current = await self._http.admin_level(name, config.admin_url)
            if current != level:
                await self._http.put_level(name, config.admin_url, level)

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

    # -- operations --------------------------------------------------------

    async def run(self, step: PlannedStep, target: Target, snapshot: Snapshot) -> StepResult:
        service = self._service(target)
        handler, params = OPS.actions.resolve(step.action, step.params)
        started = time.perf_counter()
        try:
            ok, detail = await handler(params, service, snapshot)
        except (ServiceError, OSError) as exc:
            ok, detail = False, f"service {target.name!r}: {exc}"
        return StepResult(
            action=step.action, ok=ok, detail=detail, seconds=time.perf_counter() - started
        )

    async def check(self, check: PlannedCheck, target: Target) -> CheckResult:
        """An unhealthy service is an answer (ok=False), never an exception."""
        service = self._service(target)
        handler, params = OPS.checks.resolve(check.check, check.params)
        ok, detail = await handler(params, service)
        return CheckResult(check=check.check, ok=ok, detail=detail)

    async def measure(self, benchmark: PlannedBenchmark, target: Target) -> float:
        service = self._service(target)
        handler, params = OPS.benchmarks.resolve(benchmark.benchmark, benchmark.params)
        return float(await handler(params, service))


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "service"


def _build(config: ServicesConfig, context: Context) -> Executor:
    return ServiceExecutor(config.services, context.snapshots / "service", context.clock)


PLUGIN = register_executor(
    ExecutorPlugin(
        name=EXECUTOR_NAME,
        operations=OPS,
        config=ServicesConfig,
        factory=_build,
        summary="health checks and log levels of HTTP services",
    )
)
