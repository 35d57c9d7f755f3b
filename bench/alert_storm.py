"""Alert storm: how fast GRACE takes Alertmanager's webhooks, and what Slack sees of it.

10,000 Alertmanager alerts over 500 fingerprints, posted as fast as a local
client can, in two modes, each against a fresh GRACE database:

- single:  one alert per request, each alert its own group (500 incidents);
- batched: 100 alerts of one group per request, grouped by alertname (5 incidents).

It prints the ingestion rate, p50/p99 request latency, the time from the first
alert to its card in Slack, incidents opened, the highest Slack write rate per
channel (and any 429 the Slack stand-in gave), and checks that every alert is
accounted for. With --against-alertmanager it sends the same storm, in the same
run and with the same client, to a local Alertmanager and prints GRACE's rates
as a ratio of it.

    .venv/bin/python bench/alert_storm.py [--against-alertmanager]

How it measures:

- GRACE runs as its own process (`python -m bot run`) with a fresh database
  per run, talking to the Slack stand-in (bot.devslack) in this process, which
  enforces Slack's per-channel limit (1 write/s, burst 3) and stamps every call
  with time.monotonic(), the clock the client uses too.
- The client (bench/_load.py) is --procs processes x --conns keep-alive
  connections, closed loop, pre-built requests; the same for both systems.
  Each connection warms up first: for GRACE with *resolved* alerts of a group
  of their own, which are stored and counted but open no incident, so the
  storm starts with an empty outbox and Slack's bucket full.
- Alertmanager (Debian's prometheus-alertmanager) gets the same alerts on
  POST /api/v2/alerts without startsAt/endsAt, so it stamps them on receipt
  and notifies after group_wait (1 s) as for a storm that starts now; its
  notifications go to a webhook receiver in this process.
- Each system and mode runs --runs times (fresh servers each, interleaved);
  speed is shown for the median run, correctness must hold in every run.

A benchmark, not a test: it exits 0 whatever it measured and says FAIL when a
target is missed. Loopback only; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

import aiohttp  # noqa: E402
from _load import Load, LoadResult, percentile, request_bytes  # noqa: E402
from aiohttp import web  # noqa: E402

from bot.devslack import DevSlack  # noqa: E402
from engine.intake.alertmanager import (  # noqa: E402
    ZERO_TIME,
    AlertmanagerAlert,
    AlertmanagerPayload,
)

HOST = "127.0.0.1"
CHANNEL = "C0ALERTS"
SLACK_RATE, SLACK_BURST = 1.0, 3  # Slack's per-channel limit: about 1 write/s, short bursts
ALERTNAMES = 5
STORM = "StormAlert"
WARMUP = "WarmupAlert"
AM_BINARIES = ("/usr/bin/prometheus-alertmanager", "prometheus-alertmanager", "alertmanager")
AM_GROUP_WAIT_S = 1.0

# Targets (GRACE issue 3).
MIN_RATIO = 0.5
MAX_P99_MS = 50.0
MAX_FIRST_CARD_MS = 200.0


# --------------------------------------------------------------------- the storm


@dataclass(frozen=True)
class Mode:
    name: str  # "single" or "batched"
    fingerprints: int
    repeats: int
    batch: int

    @property
    def alerts(self) -> int:
        return self.fingerprints * self.repeats

    @property
    def expected_incidents(self) -> int:
        return self.fingerprints if self.name == "single" else ALERTNAMES

    def describe(self) -> str:
        if self.name == "single":
            return (
                f"one alert per request, each its own group: {self.alerts:,} requests, "
                f"{self.expected_incidents} incidents expected"
            )
        requests = self.alerts // self.batch
        return (
            f"{self.batch} alerts of one group per request (group by alertname): "
            f"{requests:,} requests, {self.expected_incidents} incidents expected"
        )


def labels_of(k: int, name: str = STORM) -> dict[str, str]:
    alertname = f"{name}{k % ALERTNAMES}" if name == STORM else name
    return {"alertname": alertname, "instance": f"host-{k}", "severity": "warning"}


def fingerprint_of(labels: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]


def _group_key(labels: dict[str, str], by: Sequence[str]) -> str:
    inner = ",".join(f'{key}="{labels[key]}"' for key in by)
    return "{}:{" + inner + "}"


def storm_groups(mode: Mode, name: str = STORM, count: int | None = None) -> list[list[int]]:
    """The alerts (by index k) of each request, in sending order: every repeat
    sends every fingerprint once, so the first repeat opens every incident."""
    count = mode.fingerprints if count is None else count
    if mode.name == "single":
        one_round = [[k] for k in range(count)]
    else:
        names = ALERTNAMES if name == STORM else 1
        one_round = []
        for g in range(names):
            members = [k for k in range(count) if k % names == g]
            one_round += [members[i : i + mode.batch] for i in range(0, len(members), mode.batch)]
    return one_round


class Bodies:
    """Request bodies for GRACE (webhook v4) and Alertmanager (API v2), built once."""

    def __init__(self, started: dt.datetime) -> None:
        self.starts = started
        self._grace: dict[tuple[str, tuple[int, ...], str], bytes] = {}
        self._am: dict[tuple[str, tuple[int, ...]], bytes] = {}

    def grace(self, mode: Mode, ks: Sequence[int], name: str = STORM) -> bytes:
        key = (mode.name, tuple(ks), name)
        if key not in self._grace:
            # The warm-up sends resolved alerts: GRACE stores and counts them, but
            # with no incident of their group active they open none, so they leave
            # the outbox empty and Slack's bucket full for the storm's first card.
            status = "resolved" if name == WARMUP else "firing"
            alerts = [
                AlertmanagerAlert(
                    status=status,
                    labels=labels_of(k, name),
                    annotations={"summary": f"storm alert {k}"},
                    # Each alert has its own start, kept through every repeat, as
                    # Alertmanager sends them.
                    startsAt=self.starts + dt.timedelta(milliseconds=k),
                    endsAt=self.starts if status == "resolved" else ZERO_TIME,
                    generatorURL=f"http://{HOST}:9090/graph?g0.expr=storm{k}",
                    fingerprint=fingerprint_of(labels_of(k, name)),
                )
                for k in ks
            ]
            first = alerts[0].labels
            # The warm-up is one group in both modes: one incident, one card.
            single = mode.name == "single" and name == STORM
            by = ("alertname", "instance") if single else ("alertname",)
            common = {key: first[key] for key in ("alertname", "severity")}
            if single:
                common = dict(first)
            payload = AlertmanagerPayload(
                groupKey=_group_key(first, by),
                status=status,
                receiver="grace",
                groupLabels={key: first[key] for key in by},
                commonLabels=common,
                externalURL=f"http://{HOST}:9093",
                alerts=alerts,
            )
            self._grace[key] = payload.model_dump_json().encode()
        return self._grace[key]

    def alertmanager(self, ks: Sequence[int], name: str = STORM) -> bytes:
        key = (name, tuple(ks))
        if key not in self._am:
            # startsAt and endsAt are left out, so Alertmanager stamps them on receipt
            # (startsAt = now, endsAt = now + resolve_timeout): a storm that starts
            # now. A startsAt older than group_wait makes it notify at once instead.
            alerts = [
                {
                    "labels": labels_of(k, name),
                    "annotations": {"summary": f"storm alert {k}"},
                    "generatorURL": f"http://{HOST}:9090/graph?g0.expr=storm{k}",
                }
                for k in ks
            ]
            self._am[key] = json.dumps(alerts, separators=(",", ":")).encode()
        return self._am[key]


def plan_requests(
    mode: Mode, body: Callable[[Sequence[int], str], bytes], warmup_requests: int
) -> tuple[list[bytes], list[bytes], list[int]]:
    """(warm-up bodies, storm bodies, alerts per storm request). The warm-up is
    one group of its own (one incident), so it leaves the storm's cards alone."""
    groups = storm_groups(mode)
    storm = [body(ks, STORM) for _ in range(mode.repeats) for ks in groups]
    sizes = [len(ks) for _ in range(mode.repeats) for ks in groups]
    warm_groups = storm_groups(mode, WARMUP, count=mode.batch if mode.name == "batched" else 50)
    warm = [body(warm_groups[i % len(warm_groups)], WARMUP) for i in range(warmup_requests)]
    return warm, storm, sizes


# --------------------------------------------------------------------- measuring


@dataclass
class Run:
    system: str
    mode: Mode
    load: LoadResult | None = None
    alerts_sent: int = 0
    requests_sent: int = 0
    server_cpu_s: float = 0.0
    first_event_ms: float | None = None  # first card (GRACE) / first notification (Alertmanager)
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
    def duration(self) -> float:
        if not self.load or not self.load.samples:
            return float("nan")
        return self.load.last_done - self.load.first_sent

    @property
    def alerts_per_s(self) -> float:
        return self.alerts_sent / self.duration if self.load else float("nan")

    @property
    def requests_per_s(self) -> float:
        return len(self.load.samples) / self.duration if self.load else float("nan")

    def latency_ms(self, p: float) -> float:
        return (
            percentile([s.latency for s in self.load.samples], p) * 1000
            if self.load
            else float("nan")
        )


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


async def stop_process(proc: asyncio.subprocess.Process, grace_s: float = 30.0) -> None:
    if proc.returncode is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), grace_s)
    except TimeoutError:
        proc.kill()  # the process this bench started, by its own handle
        await proc.wait()


async def run_load(
    port: int,
    path: str,
    headers: dict[str, str],
    warm: list[bytes],
    storm: list[bytes],
    args: argparse.Namespace,
    settle: Callable[[], Any],
    server_pid: int,
    profile_to: Path | None = None,
) -> tuple[LoadResult, float]:
    """Warm up, let the server settle, then the measured storm. Returns the
    load result and the server's CPU seconds during the storm."""
    load = Load(
        HOST,
        port,
        [request_bytes(HOST, port, path, b, headers) for b in warm],
        [request_bytes(HOST, port, path, b, headers) for b in storm],
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
            profile_to.parent.mkdir(parents=True, exist_ok=True)
            with profile_to.with_suffix(".log").open("wb") as spy_log:
                gil = ["--gil"] if args.py_spy_gil else []
                spy = await asyncio.create_subprocess_exec(
                    args.py_spy,
                    "record",
                    "-p",
                    str(server_pid),
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
        cpu_before = proc_cpu_s(server_pid)
        load.go()
        result = await asyncio.to_thread(load.wait_result)
        cpu = proc_cpu_s(server_pid) - cpu_before
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(spy.wait(), 20)
            except TimeoutError:
                spy.kill()
                await spy.wait()
        return result, cpu
    finally:
        await asyncio.to_thread(load.close)


def parse_metrics(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[name] = float(value)
    return out


# --------------------------------------------------------------------- GRACE


async def run_grace(mode: Mode, bodies: Bodies, args: argparse.Namespace) -> Run:
    run = Run("GRACE", mode)
    token, secret = f"xoxb-bench-{secrets.token_hex(8)}", secrets.token_hex(16)
    hook_token = secrets.token_hex(16)
    slack = DevSlack(
        token=token,
        signing_secret=secret,
        channels={CHANNEL: "alerts"},
        post_rate_per_channel=SLACK_RATE,
        post_burst=SLACK_BURST,
    )
    await slack.start()
    workdir = Path(tempfile.mkdtemp(prefix=f"grace-storm-{mode.name}-"))
    env = {
        **os.environ,
        "SLACK_BOT_TOKEN": token,
        "SLACK_SIGNING_SECRET": secret,
        "SLACK_API_URL": slack.api_url,
        "GRACE_DB": str(workdir / "grace.db"),
        "GRACE_HOST": HOST,
        "GRACE_PORT": "0",
        "GRACE_ALERT_CHANNELS": CHANNEL,
        "GRACE_WEBHOOK_TOKEN": hook_token,
        "GRACE_SLACK_RATE": str(SLACK_RATE),
        "GRACE_SLACK_BURST": str(SLACK_BURST),
    }
    env.pop("GRACE_CONFIG", None)
    out_log, err_log = workdir / "stdout.log", workdir / "stderr.log"
    with out_log.open("wb") as out, err_log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            str(ROOT / ".venv" / "bin" / "python"),
            "-m",
            "bot",
            "run",
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=err,
            stdin=asyncio.subprocess.DEVNULL,
        )
    session = aiohttp.ClientSession()
    exited = asyncio.create_task(proc.wait())
    try:

        def started() -> str | None:
            match = re.search(r"GRACE is running on (http://\S+)", out_log.read_text())
            return match.group(1) if match else ("exited" if exited.done() else None)

        url = await wait_until(started, within=60)
        if url is None or url == "exited":
            tail = err_log.read_text()[-2000:]
            run.error = f"GRACE did not start ({'exited' if url else 'timeout'}): {tail}"
            return run
        port = int(url.rsplit(":", 1)[1])

        async def metrics() -> dict[str, float]:
            async with session.get(f"{url}/metrics") as response:
                return parse_metrics(await response.text())

        def writes_since(start: int) -> list[Any]:
            return [
                c
                for c in slack.calls[start:]
                if c.method.startswith("chat.") and c.response.get("ok")
            ]

        async def settle() -> None:
            """Warm-up writes delivered, and Slack's bucket full again."""

            async def quiet() -> bool:
                m = await metrics()
                last = max((c.at for c in writes_since(0)), default=0.0)
                return (
                    m.get("grace_outbox_pending", 1) == 0
                    and time.monotonic() - last > SLACK_BURST / SLACK_RATE + 0.5
                )

            if not await wait_until(quiet, within=60, step=0.25):
                run.notes.append("warm-up writes still pending after 60 s")

        warm_n = max(400 if mode.name == "single" else 20, 2 * args.procs * args.conns)
        warm, storm, sizes = plan_requests(
            mode, lambda ks, name: bodies.grace(mode, ks, name), warm_n
        )
        headers = {"Authorization": f"Bearer {hook_token}", "Content-Type": "application/json"}
        before = None

        async def settle_and_snapshot() -> None:
            nonlocal before
            await settle()
            before = (await metrics(), len(slack.calls))

        profile = (args.profile_dir / f"grace-{mode.name}.txt") if args.profile_dir else None
        run.load, run.server_cpu_s = await run_load(
            port,
            "/alerts/alertmanager",
            headers,
            warm,
            storm,
            args,
            settle_and_snapshot,
            proc.pid,
            profile,
        )
        if profile is not None:
            run.notes.append(f"py-spy samples (collapsed stacks): {profile}")
        assert before is not None
        metrics_before, calls_start = before
        run.requests_sent = len(storm) - run.load.unsent
        run.alerts_sent = (
            sum(sizes) - sum(sizes[-run.load.unsent :]) if run.load.unsent else sum(sizes)
        )
        first = run.load.first_sent

        # The first card, then a few seconds of Slack traffic to see its pace.
        def first_card() -> Any:
            return next(
                (
                    c
                    for c in slack.calls[calls_start:]
                    if c.method == "chat.postMessage"
                    and c.response.get("ok")
                    and not c.args.get("thread_ts")
                    and c.at >= first
                ),
                None,
            )

        await wait_until(first_card, within=max(0.0, first + 10 - time.monotonic()))
        observe_until = max(run.load.last_done + 3.0, first + args.observe)
        await asyncio.sleep(max(0.0, observe_until - time.monotonic()))
        card = first_card()
        run.first_event_ms = (card.at - first) * 1000 if card else None
        if card and STORM not in json.dumps(card.args):
            run.notes.append("the first card after the storm began does not name StormAlert")

        writes = [c for c in writes_since(calls_start) if c.at <= observe_until]
        per_channel: dict[str, list[float]] = defaultdict(list)
        for call in writes:
            per_channel[str(call.response.get("channel") or call.args.get("channel"))].append(
                call.at
            )
        run.max_writes_1s = max((max_in_window(t) for t in per_channel.values()), default=0)
        run.writes_per_s = len(writes) / (observe_until - first)
        refusals = [
            c for c in slack.calls[calls_start:] if c.response.get("error") == "ratelimited"
        ]
        run.ratelimited = len(refusals)
        for refusal in refusals[:3]:
            before_it = [f"+{c.at - first:.3f}" for c in writes if c.at < refusal.at][-3:]
            run.notes.append(
                f"429 on {refusal.method} at +{refusal.at - first:.3f} s; "
                f"the 3 writes before it answered at {', '.join(before_it)} s"
            )
        run.notes.append(
            f"Slack: {len(writes)} writes in {observe_until - first:.1f} s "
            f"({', '.join(f'{m} {n}' for m, n in _count(c.method for c in writes).items())}),"
            f" answered at {', '.join(f'+{c.at - first:.3f}' for c in writes[:12])} s"
        )

        # Accounting: the answers, the metric, the database.
        metrics_after = await metrics()
        received = opened = 0
        for sample in run.ok_samples:
            answer = json.loads(sample.body)
            received += int(answer.get("received", 0))
            opened += int(answer.get("opened", 0))
        key = 'grace_alerts_received_total{source="alertmanager"}'
        metric = metrics_after.get(key, 0) - metrics_before.get(key, 0)
        failed = len(run.load.samples) - len(run.ok_samples)
        pending = metrics_after.get("grace_outbox_pending")
        run.notes.append(
            f"outbox pending after the storm: {pending:.0f}"
            if pending is not None
            else "no grace_outbox_pending metric"
        )
        await stop_process(proc)
        db_alerts, db_sum, db_incidents = _grace_db(workdir / "grace.db", run)
        run.incidents = db_incidents if db_incidents is not None else opened
        run.checks = [
            f"sent {run.alerts_sent:,} alerts in {run.requests_sent:,} requests"
            f" ({failed} failed, {run.load.unsent} unsent)",
            f"answers said received {received:,}, opened {opened}",
            f"grace_alerts_received_total moved by {metric:,.0f}",
            f"database: {db_alerts} StormAlert rows, incidents' alert_count sums to {db_sum},"
            f" {db_incidents} StormAlert incidents",
        ]
        run.accounted = (
            failed == 0
            and run.load.unsent == 0
            and run.alerts_sent == received == metric == db_sum == db_alerts == mode.alerts
        )
        if opened != db_incidents:
            run.notes.append(f"answers say {opened} incidents opened, the database {db_incidents}")
        if run.load.errors:
            run.notes.append(f"client errors: {run.load.errors[:3]}")
        statuses = _count(str(s.status) for s in run.load.samples if s.status != 200)
        if statuses:
            bad = next(s for s in run.load.samples if s.status != 200)
            run.notes.append(f"non-200 answers: {statuses}; e.g. {bad.body[:200]!r}")
        return run
    finally:
        await session.close()
        await stop_process(proc)
        await slack.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            run.notes.append(f"kept {workdir}")


def _grace_db(path: Path, run: Run) -> tuple[int | None, int | None, int | None]:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            (alerts,) = conn.execute(
                "SELECT count(*) FROM alerts WHERE name LIKE ?", (f"{STORM}%",)
            ).fetchone()
            total, incidents = conn.execute(
                "SELECT coalesce(sum(alert_count), 0), count(*) FROM incidents"
                " WHERE alert_name LIKE ?",
                (f"{STORM}%",),
            ).fetchone()
        finally:
            conn.close()
        return alerts, total, incidents
    except sqlite3.Error as exc:
        run.notes.append(f"database cross-check failed: {exc}")
        return None, None, None


def _count(items: Any) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for item in items:
        out[item] += 1
    return dict(out)


# --------------------------------------------------------------------- Alertmanager


def alertmanager_binary() -> str | None:
    for name in AM_BINARIES:
        found = shutil.which(name)
        if found:
            return found
    return None


async def run_alertmanager(
    mode: Mode, bodies: Bodies, args: argparse.Namespace, binary: str
) -> Run:
    run = Run("Alertmanager", mode)
    notifications: list[tuple[float, list[str]]] = []
    group_keys: set[str] = set()

    async def receive(request: web.Request) -> web.Response:
        at = time.monotonic()
        payload = await request.json()
        items = [
            a["labels"].get("alertname", "") + "/" + a["labels"].get("instance", "")
            for a in payload["alerts"]
        ]
        notifications.append((at, items))
        if any(i.startswith(STORM) for i in items):
            group_keys.add(payload.get("groupKey", ""))
        return web.Response(text="ok")

    receiver = web.Application()
    receiver.router.add_post("/am", receive)
    runner = web.AppRunner(receiver, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, HOST, 0).start()
    receiver_port = runner.addresses[0][1]
    workdir = Path(tempfile.mkdtemp(prefix=f"am-storm-{mode.name}-"))
    group_by = '["alertname", "instance"]' if mode.name == "single" else '["alertname"]'
    (workdir / "alertmanager.yml").write_text(
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
    port = free_port()
    err_log = workdir / "alertmanager.log"
    with err_log.open("wb") as err:
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
    session = aiohttp.ClientSession()
    base = f"http://{HOST}:{port}"
    try:

        async def ready() -> bool:
            if proc.returncode is not None:
                return True
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{base}/-/ready") as response:
                    return response.status == 200
            return False

        if not await wait_until(ready, within=30, step=0.1) or proc.returncode is not None:
            run.error = f"Alertmanager did not start: {err_log.read_text()[-2000:]}"
            return run

        warm_n = max(400 if mode.name == "single" else 20, 2 * args.procs * args.conns)
        warm, storm, sizes = plan_requests(mode, bodies.alertmanager, warm_n)

        async def settle() -> None:
            await asyncio.sleep(AM_GROUP_WAIT_S + 0.5)  # the warm-up's notification goes out

        run.load, run.server_cpu_s = await run_load(
            port,
            "/api/v2/alerts",
            {"Content-Type": "application/json"},
            warm,
            storm,
            args,
            settle,
            proc.pid,
        )
        run.requests_sent = len(storm) - run.load.unsent
        run.alerts_sent = (
            sum(sizes) - sum(sizes[-run.load.unsent :]) if run.load.unsent else sum(sizes)
        )
        first = run.load.first_sent
        storm_instances = {
            f"{labels_of(k)['alertname']}/host-{k}" for k in range(mode.fingerprints)
        }

        def notified() -> set[str]:
            return {
                i
                for at, items in notifications
                if at >= first
                for i in items
                if i.startswith(STORM)
            }

        await wait_until(
            lambda: notified() >= storm_instances,
            within=max(0.0, run.load.last_done + AM_GROUP_WAIT_S + 10 - time.monotonic()),
            step=0.1,
        )
        firsts = [
            at
            for at, items in notifications
            if at >= first and any(i.startswith(STORM) for i in items)
        ]
        run.first_event_ms = (min(firsts) - first) * 1000 if firsts else None
        async with session.get(f"{base}/api/v2/alerts") as response:
            held = [
                a
                for a in await response.json()
                if a["labels"].get("alertname", "").startswith(STORM)
            ]
        failed = len(run.load.samples) - len(run.ok_samples)
        storm_notes = [
            n for n in notifications if n[0] >= first and any(i.startswith(STORM) for i in n[1])
        ]
        run.incidents = len(group_keys)
        run.checks = [
            f"sent {run.alerts_sent:,} alerts in {run.requests_sent:,} requests"
            f" ({failed} failed, {run.load.unsent} unsent)",
            f"Alertmanager holds {len(held)} distinct StormAlert alerts",
            f"{len(storm_notes)} webhook notifications of {len(group_keys)} groups"
            f" covering {len(notified())} fingerprints",
        ]
        run.accounted = (
            failed == 0
            and run.load.unsent == 0
            and run.alerts_sent == mode.alerts
            and len(held) == mode.fingerprints
            and notified() >= storm_instances
            and len(group_keys) == mode.expected_incidents
        )
        if run.load.errors:
            run.notes.append(f"client errors: {run.load.errors[:3]}")
        return run
    finally:
        await session.close()
        await stop_process(proc)
        await runner.cleanup()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------- report


def _fmt(value: float | None, spec: str, none: str = "-") -> str:
    if value is None or value != value:  # None or NaN
        return none
    return format(value, spec)


def table(runs: Sequence[Run]) -> str:
    head = [
        "system",
        "mode",
        "alerts/s",
        "req/s",
        "p50 ms",
        "p99 ms",
        "first ms",
        "incidents",
        "Slack max/1s",
        "429s",
        "server CPU",
        "client CPU",
        "accounted",
    ]
    rows = [head]
    for r in runs:
        if r.error or not r.load:
            rows.append([r.system, r.mode.name, "ERROR"] + [""] * (len(head) - 3))
            continue
        rows.append(
            [
                r.system,
                r.mode.name,
                _fmt(r.alerts_per_s, ",.0f"),
                _fmt(r.requests_per_s, ",.0f"),
                _fmt(r.latency_ms(50), ".2f"),
                _fmt(r.latency_ms(99), ".2f"),
                _fmt(r.first_event_ms, ",.0f", "none"),
                _fmt(r.incidents, "d"),
                _fmt(r.max_writes_1s, "d"),
                _fmt(r.ratelimited, "d"),
                f"{r.server_cpu_s / r.duration:.0%}",
                f"{r.load.cpu_s / r.duration:.0%}",
                "yes" if r.accounted else "NO",
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [
        "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def verdicts(runs: Sequence[Run], against: bool) -> list[tuple[str, bool | None, str]]:
    out: list[tuple[str, bool | None, str]] = []
    grace = {r.mode.name: r for r in runs if r.system == "GRACE"}
    am = {r.mode.name: r for r in runs if r.system == "Alertmanager"}
    for mode, g in grace.items():
        if g.error or not g.load:
            out.append((f"{mode}: GRACE ran", False, g.error or "no result"))
            continue
        rate = "alerts/s" if mode == "batched" else "requests/s"
        a = am.get(mode)
        if a is not None and a.load and not a.error:
            mine = g.alerts_per_s if mode == "batched" else g.requests_per_s
            theirs = a.alerts_per_s if mode == "batched" else a.requests_per_s
            ratio = mine / theirs
            out.append(
                (
                    f"{mode}: {rate} >= {MIN_RATIO}x Alertmanager's",
                    ratio >= MIN_RATIO,
                    f"{mine:,.0f} / {theirs:,.0f} = {ratio:.2f}x",
                )
            )
        else:
            why = "run with --against-alertmanager" if not against else "Alertmanager failed"
            out.append((f"{mode}: {rate} >= {MIN_RATIO}x Alertmanager's", None, why))
        p99 = g.latency_ms(99)
        out.append((f"{mode}: p99 < {MAX_P99_MS:g} ms", p99 < MAX_P99_MS, f"{p99:.1f} ms"))
        first = g.first_event_ms
        out.append(
            (
                f"{mode}: first card < {MAX_FIRST_CARD_MS:g} ms",
                first is not None and first < MAX_FIRST_CARD_MS,
                f"{first:,.0f} ms" if first is not None else "no card",
            )
        )
        writes_ok = (
            g.max_writes_1s is not None and g.max_writes_1s <= SLACK_BURST and g.ratelimited == 0
        )
        out.append(
            (
                f"{mode}: Slack writes <= limit ({SLACK_RATE:g}/s, burst {SLACK_BURST})",
                writes_ok,
                f"max {g.max_writes_1s} in 1 s, {g.ratelimited} x 429",
            )
        )
        out.append((f"{mode}: nothing lost", g.accounted, "; ".join(g.checks)))
        out.append(
            (
                f"{mode}: incidents opened == {g.mode.expected_incidents}",
                g.incidents == g.mode.expected_incidents,
                f"{g.incidents} opened",
            )
        )
    return out


def report(runs: Sequence[Run], args: argparse.Namespace) -> str:
    lines = [table(runs), ""]
    lines.append(
        "first ms: GRACE = first alert sent -> its card in Slack; Alertmanager = "
        f"-> its first webhook notification (group_wait {AM_GROUP_WAIT_S:g}s)"
    )
    lines.append(
        "Slack max/1s: most successful chat.* writes to one channel in any 1 s window; "
        "429s: rate-limit refusals the Slack stand-in gave"
    )
    lines.append(
        "server CPU / client CPU: CPU time during the storm / its wall time "
        "(100% = one core; this machine has "
        f"{os.cpu_count()})"
    )
    for r in runs:
        lines.append(f"\n{r.system} {r.mode.name}: {r.mode.describe()}")
        if r.error:
            lines.append(f"  ERROR: {r.error}")
        for text in r.checks + r.notes:
            lines.append(f"  - {text}")
    grace = {r.mode.name: r for r in runs if r.system == "GRACE" and r.load}
    am = {r.mode.name: r for r in runs if r.system == "Alertmanager" and r.load}
    if am:
        lines.append("\nGRACE / Alertmanager, same run, same client:")
        for mode in grace:
            if mode in am:
                g, a = grace[mode], am[mode]
                lines.append(
                    f"  {mode:8} alerts/s {g.alerts_per_s / a.alerts_per_s:.2f}x  "
                    f"requests/s {g.requests_per_s / a.requests_per_s:.2f}x  "
                    f"p99 {g.latency_ms(99):.1f} ms vs {a.latency_ms(99):.1f} ms"
                )
    lines.append("\nTargets:")
    failed = False
    for name, ok, detail in verdicts(runs, args.against_alertmanager):
        word = "n/a " if ok is None else ("PASS" if ok else "FAIL")
        failed |= ok is False
        lines.append(f"  {word}  {name}: {detail}")
    lines.append("\nOVERALL: " + ("FAIL (see above)" if failed else "PASS"))
    return "\n".join(lines)


# --------------------------------------------------------------------- main


async def amain(args: argparse.Namespace) -> int:
    modes = [Mode(name, args.fingerprints, args.repeats, args.batch) for name in args.modes]
    bodies = Bodies(dt.datetime.now(dt.UTC).replace(microsecond=0))
    binary = None
    if args.against_alertmanager:
        binary = alertmanager_binary()
        if binary is None:
            print(
                "Alertmanager is not installed. Install Debian's package, then run again:\n"
                "  apt-get update && apt-get install -y prometheus-alertmanager"
            )
            return 0
    print(
        f"alert storm: {args.fingerprints * args.repeats:,} alerts over "
        f"{args.fingerprints} fingerprints; client: {args.procs} processes x "
        f"{args.conns} keep-alive connections; {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    runs: list[Run] = []
    for mode in modes:
        print(f"\n[{mode.name}] {mode.describe()}")
        trials: dict[str, list[Run]] = defaultdict(list)
        for i in range(args.runs):
            # Interleaved, so both systems see the same machine conditions.
            if not args.no_grace:
                print(f"  run {i + 1}/{args.runs} GRACE ...", flush=True)
                trials["GRACE"].append(await run_grace(mode, bodies, args))
                _progress(trials["GRACE"][-1])
            if binary is not None:
                print(f"  run {i + 1}/{args.runs} Alertmanager ...", flush=True)
                trials["Alertmanager"].append(await run_alertmanager(mode, bodies, args, binary))
                _progress(trials["Alertmanager"][-1])
        runs += [combine(t) for t in trials.values()]
    print("\n" + report(runs, args))
    return 0


def combine(trials: list[Run]) -> Run:
    """One row for several runs of a system and mode: speed (rates, latency, first
    card) from the median run by alerts/s; correctness (Slack limit, accounting,
    incidents) must hold in every run, so the worst of them is shown."""
    done = [r for r in trials if r.load and not r.error]
    if not done:
        return trials[0]
    done.sort(key=lambda r: r.alerts_per_s)
    median = done[(len(done) - 1) // 2]
    if len(trials) == 1:
        return median
    out = dataclasses.replace(median, checks=list(median.checks), notes=list(median.notes))
    out.accounted = all(r.accounted for r in trials)
    incidents = [r.incidents for r in done]
    if len(set(incidents)) > 1:
        off = [i for i in incidents if i != median.mode.expected_incidents]
        out.incidents = off[0] if off else median.incidents
        out.notes.append(f"incidents per run: {incidents}")
    if median.system == "GRACE":
        out.ratelimited = sum(r.ratelimited or 0 for r in done)
        out.max_writes_1s = max(r.max_writes_1s or 0 for r in done)
    errors = [r.error for r in trials if r.error]
    if errors:
        out.accounted = False
        out.notes.append(f"{len(errors)} of {len(trials)} runs failed: {errors[0]}")

    def spread(values: list[float], spec: str) -> str:
        return " / ".join(format(v, spec) for v in values)

    firsts = [r.first_event_ms if r.first_event_ms is not None else float("inf") for r in done]
    out.first_event_ms = sorted(firsts)[(len(firsts) - 1) // 2]
    if out.first_event_ms == float("inf"):
        out.first_event_ms = None
    out.notes.insert(
        0,
        (
            f"{len(done)} runs; rates and latencies of the median run by alerts/s, "
            f"first ms the median of the runs: alerts/s "
            f"{spread([r.alerts_per_s for r in done], ',.0f')}; p99 ms "
            f"{spread([r.latency_ms(99) for r in done], '.1f')}; first ms "
            f"{spread(firsts, ',.0f')}"
        ),
    )
    for r in trials:
        if r is not median:
            out.notes += [f"(another run) {n}" for n in r.notes if n.startswith(("429", "client"))]
    return out


def _progress(run: Run) -> None:
    if run.error or not run.load:
        print(f"    ERROR: {run.error}")
    else:
        print(
            f"    {run.alerts_per_s:,.0f} alerts/s, {run.requests_per_s:,.0f} req/s, "
            f"p99 {run.latency_ms(99):.1f} ms",
            flush=True,
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--against-alertmanager",
        action="store_true",
        help="also send the same storm to a local Alertmanager and compare",
    )
    parser.add_argument(
        "--modes", nargs="+", choices=["single", "batched"], default=["single", "batched"]
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=3,
        help="runs per system and mode (fresh servers each); the median is shown",
    )
    parser.add_argument("--fingerprints", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batch", type=int, default=100, help="alerts per batched request")
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument(
        "--conns", type=int, default=8, help="keep-alive connections per client process"
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=120.0,
        help="seconds the storm may take before the client gives up",
    )
    parser.add_argument(
        "--observe",
        type=float,
        default=10.0,
        help="seconds of Slack traffic to watch from the first alert on",
    )
    parser.add_argument(
        "--py-spy", metavar="PATH", help="py-spy binary: profile GRACE during each storm"
    )
    parser.add_argument(
        "--py-spy-gil",
        action="store_true",
        help="sample only the thread holding the GIL (where Python time goes)",
    )
    parser.add_argument(
        "--profile-dir", type=Path, default=None, help="where --py-spy writes its collapsed stacks"
    )
    parser.add_argument(
        "--no-grace", action="store_true", help="Alertmanager alone (with --against-alertmanager)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories")
    args = parser.parse_args(argv)
    if args.fingerprints % ALERTNAMES or (args.fingerprints // ALERTNAMES) % args.batch:
        parser.error(f"--fingerprints must be a multiple of {ALERTNAMES} x --batch")
    if args.py_spy and args.profile_dir is None:
        args.profile_dir = Path(tempfile.mkdtemp(prefix="grace-storm-profile-"))
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
