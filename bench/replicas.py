"""Replicas: storm ingestion and heals per second with 1, 2 and 3 `grace run`
replicas on PostgreSQL, against 1 process on SQLite, in one run (GRACE issue 20).

Four configurations, each phase on a fresh database and fresh processes:
`sqlite x1`, `postgresql x1`, `postgresql x2`, `postgresql x3`. Two phases:

- storm: bench/alert_storm.py's single mode (one Alertmanager alert per
  request, each its own group; --fingerprints x --repeats alerts). It prints
  alerts/s accepted (answered 200) from the first send to the last answer,
  p50/p99 request latency, and how long until GRACE is at rest (every card
  posted, nothing in the outbox or inbox); then checks every alert is stored
  exactly once, one incident per group, alert_count adds up, and each replica's
  grace_alerts_received_total says what share it took;
- heals: --heals SQLite targets with a bloated WAL (bot.demo.bloat_wal) and
  one SQLiteCheckpointNow alert each (tier 1: healed at once, no approval;
  tests/crash_harness.py's playbook), all sent at once. It prints heals/s from
  the first send until every incident is `resolved`: the database is polled
  every 50 ms until they all are (bounded by --heal-within), and the end is
  the last 'incident.resolved' row of audit_log; then it checks one incident
  per target, each plan started once (audit_log 'incident.executing'), every
  WAL truncated.

    .venv/bin/python bench/replicas.py [--runs 2] [--heals 150]

How it measures:

- One PostgreSQL server for the whole run (tests/pg_server.py: fsync off,
  loopback), a fresh database per phase; stopped at the end, on failure and
  on Ctrl-C. SQLite is a fresh file.
- The replicas are `python -m bot run` processes with their own GRACE_REPLICA
  and GRACE_PORT, started together on the crash suites' settings
  (tests/crash_harness.py `environment`), talking to the Slack stand-in in
  this process, which has no rate limit here; GRACE's own paces are lifted
  (slack_rate 500/s, burst 50; the sqlite executor 500 calls/s, 8 at a time
  per replica), so what is measured is GRACE and its database, not Slack's
  1 write/s.
- The client is bench/_load.py: --procs processes x --conns keep-alive
  connections, closed loop, pre-built requests, warmed up with resolved
  alerts that open no incident. There is no balancer: connection i goes to
  replica i mod n, and request j to connection j mod (procs x conns), so
  request j goes to replica j mod n (12 connections divide by 1, 2 and 3).
- CPU: user+system seconds of the replicas and of PostgreSQL's processes
  (postmaster and backends) during the measured part, as % of one core.
- --runs runs of every configuration, interleaved; the table shows the
  median run by rate and every run's rate; checks must hold in every run.

A benchmark, not a test: it exits 0 whatever it measured and prints FAIL lines
when a check fails. Loopback only; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from _replicas_cluster import Cluster, Config, pg_pids, start_cluster  # noqa: E402
from _replicas_phases import Phase, heal_phase, storm_phase  # noqa: E402
from _replicas_report import progress, report  # noqa: E402
from _storm_plan import Bodies  # noqa: E402

from tests.pg_server import PgServer, start_pg_server  # noqa: E402

CONFIGS = [Config("sqlite", 1), *(Config("postgresql", n) for n in (1, 2, 3))]


async def amain(args: argparse.Namespace, server: PgServer, tmp: Path) -> None:
    bodies = Bodies(dt.datetime.now(dt.UTC).replace(microsecond=0))

    async def start(config: Config, workdir: Path) -> Cluster:
        if config.store == "postgresql":
            target = await asyncio.to_thread(server.fresh_database)
        else:
            target = str(workdir / "grace.db")
        return await start_cluster(config, target, workdir)

    def pg() -> list[int]:
        return pg_pids(server.postmaster_pid())

    storms: list[Phase] = []
    heals: list[Phase] = []
    for i in range(args.runs):
        for config in CONFIGS:  # interleaved: every configuration sees the same machine
            where = tmp / f"run{i + 1}-{config.store}{config.replicas}"
            load = os.getloadavg()[0]
            print(
                f"  run {i + 1}/{args.runs} {config.name} (load {load:.2f}): storm ...", flush=True
            )
            storms.append(await storm_phase(config, start, where / "storm", bodies, args, pg))
            print(progress("storm", storms[-1]), flush=True)
            print(f"  run {i + 1}/{args.runs} {config.name}: heals ...", flush=True)
            heals.append(await heal_phase(config, start, where / "heals", bodies, args, pg))
            print(progress("heals", heals[-1]), flush=True)
    print("\n" + report(CONFIGS, storms, heals))
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def _header(args: argparse.Namespace, server: PgServer) -> str:
    commit = subprocess.run(
        ["git", "-C", str(HERE.parent), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    load = os.getloadavg()[0]
    return "\n".join(
        [
            f"command: {shlex.join([sys.executable, *sys.argv])}",
            f"machine: {os.cpu_count()} cores, load average {load:.2f};"
            f" Python {platform.python_version()}; PostgreSQL {server.version()}"
            f" (fsync off, loopback); GRACE tree {commit or '?'}",
            f"storm: {args.fingerprints * args.repeats:,} alerts, one a request, over"
            f" {args.fingerprints} groups x {args.repeats} repeats; heals: {args.heals} tier-1"
            f" SQLiteCheckpointNow alerts, one per SQLite target ({args.target_rows} rows)",
            f"client: {args.procs} processes x {args.conns} keep-alive connections, closed loop;"
            " request j to replica j mod n",
            "Slack: the stand-in without a rate limit; GRACE's slack_rate 500/s burst 50, the"
            " sqlite executor 500 calls/s, 8 at a time per replica (Slack's 1 write/s lifted)",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if (args.procs * args.conns) % 6:
        print("note: procs x conns is not a multiple of 6: replicas get uneven shares")
    signal.signal(signal.SIGTERM, _interrupt)  # cleaned up as on Ctrl-C
    tmp = Path(tempfile.mkdtemp(prefix="grace-replicas-"))
    server = None
    try:
        server = start_pg_server()
        print(_header(args, server), flush=True)
        asyncio.run(amain(args, server, tmp))
    except KeyboardInterrupt:
        print("\ninterrupted: stopping PostgreSQL and cleaning up")
    except BaseException as exc:  # pytest.fail from tests/pg_server.py is a BaseException
        if isinstance(exc, SystemExit):
            raise
        print(f"ERROR: {type(exc).__name__}: {exc}")
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2, help="runs of every configuration")
    parser.add_argument("--fingerprints", type=int, default=500, help="storm groups")
    parser.add_argument("--repeats", type=int, default=10, help="times each group is sent")
    parser.add_argument("--heals", type=int, default=150, help="tier-1 alerts, one per target")
    parser.add_argument("--target-rows", type=int, default=50, help="rows per SQLite target")
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument("--conns", type=int, default=6, help="connections per client process")
    parser.add_argument("--time-limit", type=float, default=120.0, help="client's deadline, s")
    parser.add_argument("--heal-within", type=float, default=300.0, help="s to wait for heals")
    parser.add_argument("--settle-within", type=float, default=120.0, help="s to wait for rest")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return parser


if __name__ == "__main__":
    sys.exit(main())
