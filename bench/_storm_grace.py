"""The alert storm against GRACE: GRACE as its own process with a fresh database,
the Slack stand-in in this process, then the first card, Slack's pace, and
every alert accounted for in the answers, the metric and the database."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import sqlite3
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from _storm_plan import HOST, STORM, Bodies, Mode
from _storm_runs import (
    Run,
    Server,
    max_in_window,
    parse_metrics,
    run_load,
    stop_process,
    wait_until,
)

from bot.devslack import DevSlack

ROOT = Path(__file__).resolve().parent.parent
CHANNEL = "C0ALERTS"
SLACK_RATE, SLACK_BURST = 1.0, 3  # Slack's per-channel limit: about 1 write/s, short bursts


@dataclass
class _Grace:
    """One GRACE process, the Slack stand-in it talks to, its workdir, and a
    session to read its metrics."""

    slack: DevSlack
    workdir: Path
    hook_token: str
    proc: asyncio.subprocess.Process
    url: str = ""
    session: aiohttp.ClientSession = field(default_factory=aiohttp.ClientSession)
    exited: asyncio.Task[int] = field(init=False)

    def __post_init__(self) -> None:
        self.exited = asyncio.create_task(self.proc.wait())

    @property
    def out_log(self) -> Path:
        return self.workdir / "stdout.log"

    @property
    def err_log(self) -> Path:
        return self.workdir / "stderr.log"

    def started(self) -> str | None:
        """GRACE's URL once it says it runs, "exited" if it stopped first."""
        match = re.search(r"GRACE is running on (http://\S+)", self.out_log.read_text())
        return match.group(1) if match else ("exited" if self.exited.done() else None)

    async def metrics(self) -> dict[str, float]:
        async with self.session.get(f"{self.url}/metrics") as response:
            return parse_metrics(await response.text())

    def writes_since(self, start: int) -> list[Any]:
        return [
            c
            for c in self.slack.calls[start:]
            if c.method.startswith("chat.") and c.response.get("ok")
        ]

    def first_card(self, start: int, first: float) -> Any:
        return next(
            (
                c
                for c in self.slack.calls[start:]
                if c.method == "chat.postMessage"
                and c.response.get("ok")
                and not c.args.get("thread_ts")
                and c.at >= first
            ),
            None,
        )

    async def settle(self, run: Run) -> None:
        """Warm-up writes delivered, and Slack's bucket full again."""

        async def quiet() -> bool:
            m = await self.metrics()
            last = max((c.at for c in self.writes_since(0)), default=0.0)
            return (
                m.get("grace_outbox_pending", 1) == 0
                and time.monotonic() - last > SLACK_BURST / SLACK_RATE + 0.5
            )

        if not await wait_until(quiet, within=60, step=0.25):
            run.notes.append("warm-up writes still pending after 60 s")

    async def close(self, run: Run, keep: bool) -> None:
        await self.session.close()
        await stop_process(self.proc)
        await self.slack.stop()
        if not keep:
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            run.notes.append(f"kept {self.workdir}")


async def run_grace(mode: Mode, bodies: Bodies, args: argparse.Namespace) -> Run:
    run = Run("GRACE", mode)
    grace = await _start(mode)
    try:
        url = await wait_until(grace.started, within=60)
        if url is None or url == "exited":
            tail = grace.err_log.read_text()[-2000:]
            run.error = f"GRACE did not start ({'exited' if url else 'timeout'}): {tail}"
            return run
        grace.url = url
        watch = asyncio.create_task(_all_visible(grace, run, mode.expected_incidents))
        metrics_before, calls_start = await _storm(grace, run, bodies, args)
        observe_until = await _first_card(grace, run, calls_start, args.observe)
        await watch
        _slack_pace(grace, run, calls_start, max(observe_until, time.monotonic()))
        await _account(grace, run, metrics_before)
        return run
    finally:
        await grace.close(run, args.keep)


async def _start(mode: Mode) -> _Grace:
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
        **_settings(workdir / "grace.db", hook_token),
    }
    env.pop("GRACE_CONFIG", None)
    with (workdir / "stdout.log").open("wb") as out, (workdir / "stderr.log").open("wb") as err:
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
    return _Grace(slack, workdir, hook_token, proc)


def _settings(db: Path, hook_token: str) -> dict[str, str]:
    """GRACE's settings for one run: a fresh database, any free port (it says which
    when it runs), Slack's limit as the stand-in enforces it."""
    return {
        "GRACE_DB": str(db),
        "GRACE_HOST": HOST,
        "GRACE_PORT": "0",
        "GRACE_ALERT_CHANNELS": CHANNEL,
        "GRACE_WEBHOOK_TOKEN": hook_token,
        "GRACE_SLACK_RATE": str(SLACK_RATE),
        "GRACE_SLACK_BURST": str(SLACK_BURST),
    }


async def _storm(
    grace: _Grace, run: Run, bodies: Bodies, args: argparse.Namespace
) -> tuple[dict[str, float], int]:
    """The storm, after the warm-up has settled; returns GRACE's metrics and the
    count of Slack calls as they were when it began."""
    mode = run.mode
    headers = {
        "Authorization": f"Bearer {grace.hook_token}",
        "Content-Type": "application/json",
    }
    port = int(grace.url.rsplit(":", 1)[1])
    before = None

    async def settle_and_snapshot() -> None:
        nonlocal before
        await grace.settle(run)
        before = (await grace.metrics(), len(grace.slack.calls))

    profile = (args.profile_dir / f"grace-{mode.name}.txt") if args.profile_dir else None
    await run_load(
        run,
        Server(port, "/alerts/alertmanager", headers, grace.proc.pid),
        lambda ks, name: bodies.grace(mode, ks, name),
        args,
        settle_and_snapshot,
        profile,
    )
    if profile is not None:
        run.notes.append(f"py-spy samples (collapsed stacks): {profile}")
    assert before is not None
    return before


async def _first_card(grace: _Grace, run: Run, calls_start: int, observe: float) -> float:
    """The first card, then a few seconds of Slack traffic to see its pace;
    returns when the watch ends."""
    first = run.load.first_sent
    await wait_until(
        lambda: grace.first_card(calls_start, first),
        within=max(0.0, first + 10 - time.monotonic()),
    )
    observe_until = max(run.load.last_done + 3.0, first + observe)
    await asyncio.sleep(max(0.0, observe_until - time.monotonic()))
    card = grace.first_card(calls_start, first)
    run.first_event_ms = (card.at - first) * 1000 if card else None
    if card and STORM not in json.dumps(card.args):
        run.notes.append("the first card after the storm began does not name StormAlert")
    return observe_until


async def _all_visible(grace: _Grace, run: Run, expected: int) -> None:
    """When every incident became visible in Slack: its own card, or a line of a
    storm rollup, as the stand-in holds the channel. Watched from before the
    storm (the warm-up opens no incident) for at most two minutes."""
    if await wait_until(lambda: len(_visible(grace.slack)) >= expected, within=120, step=0.05):
        done = time.monotonic()
        # The load's own timings come when it has finished.
        if await wait_until(lambda: run.load is not None and run.load.samples, within=600):
            assert run.load is not None
            run.all_visible_ms = (done - run.load.first_sent) * 1000
    seen = _visible(grace.slack)
    rolled = sum(1 for m in grace.slack.messages(CHANNEL) if m.text.startswith("Alert storm"))
    run.notes.append(f"visible: {len(seen)} of {expected} incidents; {rolled} rollup message(s)")


def _visible(slack: DevSlack) -> set[int]:
    """Incident numbers Slack shows: a card names its incident, a rollup line too."""
    seen: set[int] = set()
    for message in slack.messages(CHANNEL):
        text = slack.render_message(message)
        if message.text.startswith("Alert storm"):
            seen |= {int(n) for n in _ROLLUP_LINE.findall(text)}
        elif message.blocks:
            seen |= {int(n) for n in _CARD_CONTEXT.findall(text)}
    return seen


_ROLLUP_LINE = re.compile(r"^• #(\d+) ", re.MULTILINE)
_CARD_CONTEXT = re.compile(r"^Incident #(\d+) ·", re.MULTILINE)


def _slack_pace(grace: _Grace, run: Run, calls_start: int, observe_until: float) -> None:
    """What Slack saw until observe_until: its busiest second on one channel, any
    429 with the writes before it, and when each write was answered."""
    first = run.load.first_sent
    writes = [c for c in grace.writes_since(calls_start) if c.at <= observe_until]
    run.max_writes_1s = _most_writes_in_a_second(writes)
    run.writes_per_s = len(writes) / (observe_until - first)
    refusals = [
        c for c in grace.slack.calls[calls_start:] if c.response.get("error") == "ratelimited"
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


def _most_writes_in_a_second(writes: list[Any]) -> int:
    """On any one channel: Slack's limit is per channel."""
    per_channel: dict[str, list[float]] = defaultdict(list)
    for call in writes:
        per_channel[str(call.response.get("channel") or call.args.get("channel"))].append(call.at)
    return max((max_in_window(t) for t in per_channel.values()), default=0)


async def _account(grace: _Grace, run: Run, metrics_before: dict[str, float]) -> None:
    """Accounting: the answers, the metric, the database."""
    metrics_after = await grace.metrics()
    received, opened = _answered(run)
    key = 'grace_alerts_received_total{source="alertmanager"}'
    metric = metrics_after.get(key, 0) - metrics_before.get(key, 0)
    pending = metrics_after.get("grace_outbox_pending")
    run.notes.append(
        f"outbox pending after the storm: {pending:.0f}"
        if pending is not None
        else "no grace_outbox_pending metric"
    )
    await stop_process(grace.proc)
    db_alerts, db_sum, db_incidents = _grace_db(grace.workdir / "grace.db", run)
    run.incidents = db_incidents if db_incidents is not None else opened
    run.checks = [
        run.sent_check(),
        f"answers said received {received:,}, opened {opened}",
        f"grace_alerts_received_total moved by {metric:,.0f}",
        f"database: {db_alerts} StormAlert rows, incidents' alert_count sums to {db_sum},"
        f" {db_incidents} StormAlert incidents",
    ]
    run.accounted = run.sent_all and received == metric == db_sum == db_alerts == run.mode.alerts
    _note_odd_answers(run, opened, db_incidents)


def _note_odd_answers(run: Run, opened: int, db_incidents: int | None) -> None:
    if opened != db_incidents:
        run.notes.append(f"answers say {opened} incidents opened, the database {db_incidents}")
    run.note_client_errors()
    statuses = _count(str(s.status) for s in run.load.samples if s.status != 200)
    if statuses:
        bad = next(s for s in run.load.samples if s.status != 200)
        run.notes.append(f"non-200 answers: {statuses}; e.g. {bad.body[:200]!r}")


def _answered(run: Run) -> tuple[int, int]:
    """(received, opened) as GRACE's answers to the storm said."""
    received = opened = 0
    for sample in run.ok_samples:
        answer = json.loads(sample.body)
        received += int(answer.get("received", 0))
        opened += int(answer.get("opened", 0))
    return received, opened


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
