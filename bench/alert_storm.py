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
as a ratio of it; beside it, for reading only, the ratio of alerts per second of
each server's own CPU (Alertmanager spreads over both cores, GRACE's Python
process takes one).

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
import datetime as dt
import os
import platform
import sys
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from _storm_alertmanager import alertmanager_binary, run_alertmanager  # noqa: E402
from _storm_grace import run_grace  # noqa: E402
from _storm_plan import ALERTNAMES, Bodies, Mode  # noqa: E402
from _storm_report import combine, print_progress, report  # noqa: E402
from _storm_runs import Run  # noqa: E402


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
        trials = await _trials(mode, bodies, args, binary)
        runs += [combine(t) for t in trials.values()]
    print("\n" + report(runs, args))
    return 0


async def _trials(
    mode: Mode, bodies: Bodies, args: argparse.Namespace, binary: str | None
) -> dict[str, list[Run]]:
    """Every run of one mode, by system."""
    trials: dict[str, list[Run]] = defaultdict(list)
    for i in range(args.runs):
        # Interleaved, so both systems see the same machine conditions.
        if not args.no_grace:
            print(f"  run {i + 1}/{args.runs} GRACE ...", flush=True)
            trials["GRACE"].append(await run_grace(mode, bodies, args))
            print_progress(trials["GRACE"][-1])
        if binary is not None:
            print(f"  run {i + 1}/{args.runs} Alertmanager ...", flush=True)
            trials["Alertmanager"].append(await run_alertmanager(mode, bodies, args, binary))
            print_progress(trials["Alertmanager"][-1])
    return trials


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.fingerprints % ALERTNAMES or (args.fingerprints // ALERTNAMES) % args.batch:
        parser.error(f"--fingerprints must be a multiple of {ALERTNAMES} x --batch")
    if args.py_spy and args.profile_dir is None:
        args.profile_dir = Path(tempfile.mkdtemp(prefix="grace-storm-profile-"))
    return asyncio.run(amain(args))


def _parser() -> argparse.ArgumentParser:
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
    return parser


if __name__ == "__main__":
    sys.exit(main())
