"""What one run of the alert storm against one system measured, and the machinery
every run shares: ports, processes, polling, the load client, metrics."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _load import Load, LoadResult, percentile, request_bytes
from _storm_plan import HOST, Mode, plan_requests


@dataclass
class Run:
    system: str
    mode: Mode
    load: LoadResult | None = None
    alerts_sent: int = 0
    requests_sent: int = 0
    server_cpu_s: float = 0.0
    first_event_ms: float | None = None  # first card (GRACE) / first notification (Alertmanager)
    all_visible_ms: float | None = None  # GRACE: until every incident has a card or rollup line
    incidents: int | None = None
    max_writes_1s: int | None = None
    writes_per_s: float | None = None
    ratelimited: int | None = None
    accounted: bool = False
    checks: list[str] = field(default_factory=list)  # how "accounted" was decided
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok_samples(self) -> list[Any]:
        return [s for s in self.load.samples if s.status == 200] if self.load else []

    @property
    def failed(self) -> int:
        return len(self.load.samples) - len(self.ok_samples) if self.load else 0

    @property
    def duration(self) -> float:
        if not self.load or not self.load.samples:
            return float("nan")
        return self.load.last_done - self.load.first_sent

    @property
    def alerts_per_s(self) -> float:
        return self.alerts_sent / self.duration if self.load else float("nan")

    @property
    def alerts_per_cpu_s(self) -> float:
        """Alerts per second of the server's own CPU: a rate that does not count
        how many cores the server could spread over."""
        return self.alerts_sent / self.server_cpu_s if self.server_cpu_s else float("nan")

    @property
    def requests_per_s(self) -> float:
        return len(self.load.samples) / self.duration if self.load else float("nan")

    def latency_ms(self, p: float) -> float:
        return (
            percentile([s.latency for s in self.load.samples], p) * 1000
            if self.load
            else float("nan")
        )

    @property
    def sent_all(self) -> bool:
        """Every alert of the storm sent, and every request answered 200."""
        return (
            self.failed == 0
            and self.load is not None
            and self.load.unsent == 0
            and self.alerts_sent == self.mode.alerts
        )

    def sent_check(self) -> str:
        unsent = self.load.unsent if self.load else 0
        return (
            f"sent {self.alerts_sent:,} alerts in {self.requests_sent:,} requests"
            f" ({self.failed} failed, {unsent} unsent)"
        )

    def note_client_errors(self) -> None:
        if self.load and self.load.errors:
            self.notes.append(f"client errors: {self.load.errors[:3]}")


@dataclass(frozen=True)
class Server:
    """Where a storm goes: the webhook's port, path and headers, and the process
    behind it (whose CPU is measured and which py-spy attaches to)."""

    port: int
    path: str
    headers: dict[str, str]
    pid: int


def proc_cpu_s(pid: int) -> float:
    """User+system CPU seconds of a process, all its threads."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def max_in_window(times: Sequence[float], width: float = 1.0) -> int:
    """The most events in any half-open window [t, t + width)."""
    ordered, best, j = sorted(times), 0, 0
    for i, t in enumerate(ordered):
        while j < len(ordered) and ordered[j] < t + width:
            j += 1
        best = max(best, j - i)
    return best


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


async def wait_until(predicate: Callable[[], Any], within: float, step: float = 0.05) -> Any:
    """Poll predicate (sync or async) until it is truthy or `within` seconds pass."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        await asyncio.sleep(step)
    return None


async def stop_process(
    proc: asyncio.subprocess.Process, grace_s: float = 30.0, sig: int = signal.SIGTERM
) -> None:
    if proc.returncode is not None:
        return
    proc.send_signal(sig)
    try:
        await asyncio.wait_for(proc.wait(), grace_s)
    except TimeoutError:
        proc.kill()  # the process this bench started, by its own handle
        await proc.wait()


async def run_load(
    run: Run,
    server: Server,
    body: Callable[[Sequence[int], str], bytes],
    args: argparse.Namespace,
    settle: Callable[[], Any],
    profile_to: Path | None = None,
) -> None:
    """Warm up, let the server settle, then the measured storm. Records in run
    the load result, the server's CPU seconds during the storm and what it sent."""
    warm, storm, sizes = plan_requests(run.mode, body, args.procs * args.conns)
    load = Load(
        HOST,
        server.port,
        [request_bytes(HOST, server.port, server.path, b, server.headers) for b in warm],
        [request_bytes(HOST, server.port, server.path, b, server.headers) for b in storm],
        procs=args.procs,
        conns=args.conns,
        time_limit=args.time_limit,
    )
    try:
        warm_errors = await asyncio.to_thread(load.wait_ready)
        if warm_errors:
            print(f"    warm-up errors: {warm_errors[:3]}")
        await settle()
        spy = None
        if profile_to is not None and args.py_spy:
            spy = await _start_py_spy(args, server.pid, profile_to)
        cpu_before = proc_cpu_s(server.pid)
        load.go()
        result = await asyncio.to_thread(load.wait_result)
        run.server_cpu_s = proc_cpu_s(server.pid) - cpu_before
        if spy is not None:
            await stop_process(spy, 20, signal.SIGINT)
    finally:
        await asyncio.to_thread(load.close)
    run.load = result
    # The client's deadline may leave the storm's last requests unsent.
    sent = sizes[: len(sizes) - result.unsent]
    run.requests_sent, run.alerts_sent = len(sent), sum(sent)


async def _start_py_spy(
    args: argparse.Namespace, pid: int, profile_to: Path
) -> asyncio.subprocess.Process:
    profile_to.parent.mkdir(parents=True, exist_ok=True)
    with profile_to.with_suffix(".log").open("wb") as spy_log:
        gil = ["--gil"] if args.py_spy_gil else []
        spy = await asyncio.create_subprocess_exec(
            args.py_spy,
            "record",
            "-p",
            str(pid),
            "-r",
            "250",
            "-f",
            "raw",
            "-o",
            str(profile_to),
            "--nonblocking",
            *gil,
            stdout=spy_log,
            stderr=spy_log,
        )
    await asyncio.sleep(1.0)  # let py-spy attach before the storm starts
    return spy


def parse_metrics(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[name] = float(value)
    return out
