"""The alert storm against a local Alertmanager: the same alerts on its API, its
webhook notifications received in this process, every alert accounted for."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from _storm_plan import HOST, STORM, Bodies, Mode, labels_of
from _storm_runs import Run, Server, free_port, run_load, stop_process, wait_until
from aiohttp import web

AM_BINARIES = ("/usr/bin/prometheus-alertmanager", "prometheus-alertmanager", "alertmanager")
AM_GROUP_WAIT_S = 1.0


def alertmanager_binary() -> str | None:
    for name in AM_BINARIES:
        found = shutil.which(name)
        if found:
            return found
    return None


class _Notifications:
    """Alertmanager's webhook notifications as they arrive: when, and which
    alerts ("alertname/instance"); and the groups of those about the storm."""

    def __init__(self) -> None:
        self.received: list[tuple[float, list[str]]] = []
        self.group_keys: set[str] = set()

    async def receive(self, request: web.Request) -> web.Response:
        at = time.monotonic()
        payload = await request.json()
        items = [
            a["labels"].get("alertname", "") + "/" + a["labels"].get("instance", "")
            for a in payload["alerts"]
        ]
        self.received.append((at, items))
        if any(i.startswith(STORM) for i in items):
            self.group_keys.add(payload.get("groupKey", ""))
        return web.Response(text="ok")

    def storm(self, since: float) -> list[tuple[float, list[str]]]:
        """The notifications from `since` on that name a storm alert."""
        return [
            n for n in self.received if n[0] >= since and any(i.startswith(STORM) for i in n[1])
        ]

    def notified(self, since: float) -> set[str]:
        return {
            i for at, items in self.received if at >= since for i in items if i.startswith(STORM)
        }


@dataclass
class _Alertmanager:
    """One Alertmanager process, its workdir, the receiver of its notifications,
    and a session to ask its API."""

    runner: web.AppRunner
    workdir: Path
    port: int
    proc: asyncio.subprocess.Process
    session: aiohttp.ClientSession = field(default_factory=aiohttp.ClientSession)

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def ready(self) -> bool:
        if self.proc.returncode is not None:
            return True
        with contextlib.suppress(aiohttp.ClientError):
            async with self.session.get(f"{self.base}/-/ready") as response:
                return response.status == 200
        return False

    async def storm_alerts(self) -> list[dict[str, Any]]:
        """The storm's alerts Alertmanager holds."""
        async with self.session.get(f"{self.base}/api/v2/alerts") as response:
            return [
                a
                for a in await response.json()
                if a["labels"].get("alertname", "").startswith(STORM)
            ]

    async def close(self, keep: bool) -> None:
        await self.session.close()
        await stop_process(self.proc)
        await self.runner.cleanup()
        if not keep:
            shutil.rmtree(self.workdir, ignore_errors=True)


async def run_alertmanager(
    mode: Mode, bodies: Bodies, args: argparse.Namespace, binary: str
) -> Run:
    run = Run("Alertmanager", mode)
    notifications = _Notifications()
    am = await _start(mode, binary, notifications)
    try:
        if not await wait_until(am.ready, within=30, step=0.1) or am.proc.returncode is not None:
            log = (am.workdir / "alertmanager.log").read_text()[-2000:]
            run.error = f"Alertmanager did not start: {log}"
            return run
        await run_load(
            run,
            Server(am.port, "/api/v2/alerts", {"Content-Type": "application/json"}, am.proc.pid),
            bodies.alertmanager,
            args,
            _warmup_notified,
        )
        await _wait_notified(run, notifications)
        await _account(am, run, notifications)
        return run
    finally:
        await am.close(args.keep)


async def _start(mode: Mode, binary: str, notifications: _Notifications) -> _Alertmanager:
    runner = await _serve(notifications)
    workdir = Path(tempfile.mkdtemp(prefix=f"am-storm-{mode.name}-"))
    _write_config(workdir / "alertmanager.yml", mode, receiver_port=runner.addresses[0][1])
    port = free_port()
    with (workdir / "alertmanager.log").open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            binary,
            f"--config.file={workdir / 'alertmanager.yml'}",
            f"--storage.path={workdir / 'data'}",
            f"--web.listen-address={HOST}:{port}",
            "--cluster.listen-address=",
            "--log.level=warn",
            stdout=err,
            stderr=err,
            stdin=asyncio.subprocess.DEVNULL,
        )
    return _Alertmanager(runner, workdir, port, proc)


async def _serve(notifications: _Notifications) -> web.AppRunner:
    """The webhook receiver Alertmanager notifies, on a port of its own."""
    receiver = web.Application()
    receiver.router.add_post("/am", notifications.receive)
    runner = web.AppRunner(receiver, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, HOST, 0).start()
    return runner


def _write_config(path: Path, mode: Mode, receiver_port: int) -> None:
    group_by = '["alertname", "instance"]' if mode.name == "single" else '["alertname"]'
    path.write_text(
        "route:\n"
        "  receiver: bench\n"
        f"  group_by: {group_by}\n"
        f"  group_wait: {AM_GROUP_WAIT_S:g}s\n"
        "  group_interval: 10s\n"
        "  repeat_interval: 1h\n"
        "receivers:\n"
        "  - name: bench\n"
        "    webhook_configs:\n"
        f"      - url: http://{HOST}:{receiver_port}/am\n"
        "        send_resolved: false\n"
        "        max_alerts: 0\n"
    )


async def _warmup_notified() -> None:
    await asyncio.sleep(AM_GROUP_WAIT_S + 0.5)  # the warm-up's notification goes out


def _storm_instances(mode: Mode) -> set[str]:
    return {f"{labels_of(k)['alertname']}/host-{k}" for k in range(mode.fingerprints)}


async def _wait_notified(run: Run, notifications: _Notifications) -> None:
    """Every fingerprint notified, or group_wait and 10 s more after the storm;
    the first notification's time."""
    first, instances = run.load.first_sent, _storm_instances(run.mode)
    await wait_until(
        lambda: notifications.notified(first) >= instances,
        within=max(0.0, run.load.last_done + AM_GROUP_WAIT_S + 10 - time.monotonic()),
        step=0.1,
    )
    firsts = [at for at, _ in notifications.storm(first)]
    run.first_event_ms = (min(firsts) - first) * 1000 if firsts else None


async def _account(am: _Alertmanager, run: Run, notifications: _Notifications) -> None:
    mode, first = run.mode, run.load.first_sent
    held = await am.storm_alerts()
    notified = notifications.notified(first)
    group_keys = notifications.group_keys
    run.incidents = len(group_keys)
    run.checks = [
        run.sent_check(),
        f"Alertmanager holds {len(held)} distinct StormAlert alerts",
        f"{len(notifications.storm(first))} webhook notifications of {len(group_keys)} groups"
        f" covering {len(notified)} fingerprints",
    ]
    run.accounted = (
        run.sent_all
        and len(held) == mode.fingerprints
        and notified >= _storm_instances(mode)
        and len(group_keys) == mode.expected_incidents
    )
    run.note_client_errors()
