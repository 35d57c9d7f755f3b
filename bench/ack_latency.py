"""Ack latency: GRACE's interaction path under load, against a bare Bolt app that only acks.

Signed Approve and Dry run clicks (block_actions, form-encoded `payload=`) and
`/grace` commands (form-encoded) go to GRACE's /slack/events and, in the same
run with the same client and the same bodies, to a bare Bolt `AsyncApp`
whose listeners only `await ack()`. For each server and concurrency it prints
requests/s and p50/p99/max ack latency, then GRACE/bare ratios against the
issue's targets: at least 0.8x the bare app's throughput, p99 at most 1.25x
its p99, every ack far inside Slack's 3 s.

    .venv/bin/python bench/ack_latency.py [--requests 4000] [--rounds 3]
        [--concurrency 16 64] [--py-spy PATH]

How it measures:

- GRACE is `grace run` (uvloop, frozen start-up heap) on a fresh database with
  --incidents tier-2 incidents awaiting approval, cards posted; the Slack
  stand-in runs in this process at Slack's pace (bench/_ack_servers.py). The
  bare app is another process, Bolt's aiohttp adapter on uvloop.
- The mix (bench/_ack_requests.py): 30% Approve clicks by channel members who
  are not approvers (committed to the inbox, refused privately after the
  ack), 30% Dry run clicks (committed, the plan shown privately after), and
  `/grace help`, `status`, `incidents` and `heal ... --dry-run` (committed),
  10% each. Every click and command is new to GRACE (its own trigger_id and
  action_ts): none is answered as a retry. Nobody approves, so every round
  meets the same state.
- The client is bench/_load.py: --procs processes with concurrency/procs
  keep-alive connections each, one request in flight per connection, closed
  loop, pre-built requests; warm-up first, then the measured part. Latency is
  from writing a request to reading its whole answer (the ack).
- Each round builds a fresh mix and sends it to both servers, the first
  server alternating by round. GRACE starts each phase with its inbox handled;
  after it, the time until every delivery committed during it was handled is
  printed, and the inbox is checked to hold one row per committed request.
- On 2 cores: one server process measured at a time (the other idles), the
  client in its own process(es), the stand-in idle here at Slack's pace.
  GRACE's SQLite writer thread may use the second core beside the client.

A benchmark, not a test: it exits 0 whatever it measured and says FAIL when a
target is missed. Loopback only; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from _ack_requests import COMMITTED, MIX, Delivery, build_mix, signed_requests  # noqa: E402
from _ack_servers import HOST, Bare, Grace, start_bare, start_grace  # noqa: E402
from _load import Load, LoadResult, _split, percentile  # noqa: E402
from _storm_runs import _start_py_spy, proc_cpu_s, stop_process, wait_until  # noqa: E402

ACK_LIMIT_S = 3.0  # Slack shows the person an error when the ack takes longer
MIN_THROUGHPUT, MAX_P99 = 0.8, 1.25  # the targets, GRACE / bare
DRAIN_WITHIN_S = 300.0


@dataclass
class Phase:
    """One server's measured part of one round at one concurrency."""

    server: str
    concurrency: int
    round: int
    load: LoadResult
    cpu_s: float
    drained_s: float = 0.0  # GRACE: after its last ack, until its inbox was handled
    note: str = ""

    @property
    def ok(self) -> list[float]:
        return [s.latency for s in self.load.samples if s.status == 200]

    @property
    def failed(self) -> int:
        return len(self.load.samples) - len(self.ok) + self.load.unsent

    @property
    def seconds(self) -> float:
        return self.load.last_done - self.load.first_sent

    @property
    def rate(self) -> float:
        return len(self.ok) / self.seconds

    def ms(self, p: float) -> float:
        return percentile(self.ok, p) * 1000

    def by_kind(self, kinds: Sequence[str], procs: int) -> str:
        """p50/p99/max per kind of request, when every request was sent (the client
        keeps its samples in the order it split the requests: bench/_load.py)."""
        if self.load.unsent:
            return ""
        conns = self.concurrency // procs
        order = [k for part in _split(kinds, procs) for conn in _split(part, conns) for k in conn]
        latencies: dict[str, list[float]] = {}
        for kind, sample in zip(order, self.load.samples, strict=True):
            latencies.setdefault(kind, []).append(sample.latency * 1000)
        return "  ".join(
            f"{kind} {percentile(v, 50):.1f}/{percentile(v, 99):.1f}/{max(v):.1f}"
            for kind, v in sorted(latencies.items())
        )

    def line(self) -> str:
        drained = f"  inbox handled {self.drained_s:.2f} s after" if self.server == "GRACE" else ""
        return (
            f"round {self.round}  c={self.concurrency:<3} {self.server:5s} {self.rate:7,.0f} req/s"
            f"  p50 {self.ms(50):6.2f}  p99 {self.ms(99):6.2f}  max {self.ms(100):7.2f} ms"
            f"  CPU {self.cpu_s / self.seconds:4.0%} (client {self.load.cpu_s / self.seconds:3.0%})"
            f"  {len(self.ok):,} ok {self.failed} failed"
            f"{drained}{self.note}"
        )


async def measure(
    server: Grace | Bare,
    deliveries: tuple[list[Delivery], list[Delivery]],
    secret: str,
    concurrency: int,
    round_: int,
    args: argparse.Namespace,
) -> Phase:
    """Warm up, let GRACE's inbox settle, then the measured part."""
    grace = server if isinstance(server, Grace) else None
    name = "GRACE" if grace else "bare"
    warm, storm = (signed_requests(d, secret, HOST, server.port) for d in deliveries)
    committed_before = grace.committed() if grace else 0
    load = Load(
        HOST,
        server.port,
        warm,
        storm,
        procs=args.procs,
        conns=concurrency // args.procs,
        time_limit=args.time_limit,
    )
    try:
        warm_errors = await asyncio.to_thread(load.wait_ready)
        if warm_errors:
            print(f"    {name} warm-up errors: {warm_errors[:3]}")
        if grace and not await wait_until(lambda: grace.unhandled() == 0, DRAIN_WITHIN_S, 0.1):
            print(f"    GRACE's inbox still had {grace.unhandled()} deliveries after warm-up")
        spy = None
        if grace and args.py_spy:
            to = args.profile_dir / f"grace-c{concurrency}-r{round_}.txt"
            spy = await _start_py_spy(args, server.pid, to)
        cpu_before = proc_cpu_s(server.pid)
        load.go()
        result = await asyncio.to_thread(load.wait_result)
        cpu_s = proc_cpu_s(server.pid) - cpu_before
        if spy is not None:
            await stop_process(spy, 20, 2)  # SIGINT: py-spy writes its samples and exits
    finally:
        await asyncio.to_thread(load.close)
    phase = Phase(name, concurrency, round_, result, cpu_s)
    if grace:
        await _drained(grace, phase, committed_before, deliveries)
    return phase


async def _drained(
    grace: Grace,
    phase: Phase,
    committed_before: int,
    deliveries: tuple[list[Delivery], list[Delivery]],
) -> None:
    """How long after its last ack GRACE had handled all it committed, and whether it
    committed one inbox row per request that changes something."""
    handled = await wait_until(lambda: grace.unhandled() == 0, DRAIN_WITHIN_S, 0.05)
    phase.drained_s = time.monotonic() - phase.load.last_done
    if not handled:
        phase.note += f"  {grace.unhandled()} deliveries unhandled after {DRAIN_WITHIN_S:.0f} s"
    expected = sum(d.kind in COMMITTED for part in deliveries for d in part)
    committed = grace.committed() - committed_before
    if committed != expected:
        phase.note += f"  inbox: {committed} rows for {expected} committed requests"


def _spread(phases: Sequence[Phase], value: Callable[[Phase], float]) -> tuple[float, str]:
    values = [value(p) for p in phases]
    return statistics.median(values), " / ".join(f"{v:,.2f}" for v in values)


def summary(phases: Sequence[Phase], concurrencies: Sequence[int]) -> list[str]:
    """Medians over rounds, the spread, GRACE/bare ratios and the targets."""
    out, verdicts = [], []
    for c in concurrencies:
        grace = [p for p in phases if p.concurrency == c and p.server == "GRACE"]
        bare = [p for p in phases if p.concurrency == c and p.server == "bare"]
        out.append(f"concurrency {c} ({len(grace)} rounds each; median, then every round):")
        for name, runs in (("GRACE", grace), ("bare", bare)):
            rate, rates = _spread(runs, lambda p: p.rate)
            p99, p99s = _spread(runs, lambda p: p.ms(99))
            p50, _ = _spread(runs, lambda p: p.ms(50))
            out.append(
                f"  {name:5s} {rate:7,.0f} req/s ({rates})  p50 {p50:.2f} ms"
                f"  p99 {p99:.2f} ms ({p99s})  max {max(p.ms(100) for p in runs):.2f} ms"
            )
        rate_ratio = _spread(grace, lambda p: p.rate)[0] / _spread(bare, lambda p: p.rate)[0]
        p99_ratio = _spread(grace, lambda p: p.ms(99))[0] / _spread(bare, lambda p: p.ms(99))[0]
        paired = zip(grace, bare, strict=True)
        by_round = [(g.rate / b.rate, g.ms(99) / b.ms(99)) for g, b in paired]
        out.append(
            f"  GRACE/bare: throughput {rate_ratio:.2f}x"
            f" (rounds {' / '.join(f'{r:.2f}' for r, _ in by_round)}),"
            f" p99 {p99_ratio:.2f}x (rounds {' / '.join(f'{q:.2f}' for _, q in by_round)})"
        )
        verdicts.append(
            _verdict(
                rate_ratio >= MIN_THROUGHPUT,
                f"c={c}: throughput >= {MIN_THROUGHPUT}x bare's: {rate_ratio:.2f}x",
            )
        )
        verdicts.append(
            _verdict(p99_ratio <= MAX_P99, f"c={c}: p99 <= {MAX_P99}x bare's: {p99_ratio:.2f}x")
        )
    worst = max(p.ms(100) for p in phases if p.server == "GRACE")
    acks = sum(len(p.ok) for p in phases if p.server == "GRACE")
    verdicts.append(
        _verdict(
            worst < ACK_LIMIT_S * 1000,
            f"every GRACE ack < 3 s: max {worst:.1f} ms over {acks:,} acks",
        )
    )
    failed = sum(p.failed for p in phases)
    verdicts.append(_verdict(failed == 0, f"every request answered 200: {failed} not"))
    return [*out, "", "Targets:", *verdicts]


def _verdict(ok: bool, text: str) -> str:
    return f"  {'PASS' if ok else 'FAIL'}  {text}"


async def run(args: argparse.Namespace) -> list[Phase]:
    """Both servers up, every round measured, both stopped (and GRACE's workdir removed)."""
    workdir = Path(tempfile.mkdtemp(prefix="grace-ack-"))
    started = time.monotonic()
    try:
        grace = await start_grace(workdir, args.incidents)
        try:
            bare = start_bare(grace.slack)
            print(
                f"GRACE (pid {grace.pid}) ready with {len(grace.cards)} cards in "
                f"{time.monotonic() - started:.0f} s; bare app pid {bare.pid}; workdir {workdir}"
            )
            try:
                return await _rounds(grace, bare, args)
            finally:
                await bare.close()
        finally:
            await grace.close()
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


async def _rounds(grace: Grace, bare: Bare, args: argparse.Namespace) -> list[Phase]:
    """Each round, a fresh mix per concurrency, sent to both servers (the first by turns)."""
    rng = random.Random(args.seed)
    phases: list[Phase] = []
    for round_ in range(1, args.rounds + 1):
        for c in args.concurrency:
            built = time.monotonic()
            count = args.warmup + args.requests
            mix = await build_mix(grace.slack, grace.cards, grace.targets, count, rng)
            deliveries = (mix[: args.warmup], mix[args.warmup :])
            if round_ == 1 and c == args.concurrency[0]:
                print(f"built {len(mix):,} requests in {time.monotonic() - built:.1f} s")
            servers: list[Grace | Bare] = [grace, bare] if round_ % 2 else [bare, grace]
            for server in servers:
                phase = await measure(
                    server, deliveries, grace.slack.signing_secret, c, round_, args
                )
                print(phase.line(), flush=True)
                kinds = [d.kind for d in deliveries[1]]
                print(f"    ms p50/p99/max by kind: {phase.by_kind(kinds, args.procs)}")
                phases.append(phase)
    print(f"GRACE's outbox still queues {grace.outbox_backlog()} private answers at Slack's pace")
    return phases


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000, help="measured, per phase")
    parser.add_argument("--warmup", type=int, default=400, help="requests before each phase")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--procs", type=int, default=1, help="client processes")
    parser.add_argument("--incidents", type=int, default=8, help="cards the clicks land on")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--time-limit", type=float, default=120.0, help="per phase, seconds")
    parser.add_argument("--keep", action="store_true", help="keep GRACE's workdir and log")
    parser.add_argument("--py-spy", metavar="PATH", help="py-spy binary: profile GRACE's phases")
    parser.add_argument("--py-spy-gil", action="store_true", help="only samples holding the GIL")
    parser.add_argument("--profile-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    if any(c % args.procs for c in args.concurrency):
        parser.error("each --concurrency must be a multiple of --procs")
    if args.py_spy and args.profile_dir is None:
        args.profile_dir = Path(tempfile.mkdtemp(prefix="grace-ack-profile-"))
    mix = ", ".join(f"{kind} {weight}" for kind, weight in MIX)
    print(
        f"ack latency: {args.requests:,} requests a phase after {args.warmup} warm-up, "
        f"{args.rounds} rounds, concurrency {args.concurrency}, {args.procs} client process(es); "
        f"mix {mix}; {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    phases = asyncio.run(run(args))
    print("\n" + "\n".join(summary(phases, args.concurrency)))
    if args.py_spy:
        print(f"py-spy samples: {args.profile_dir} (bench/_profile_summary.py FILE)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
