"""The replicas bench's machinery: GRACE's database read from outside, a set of
`grace run` replicas on one database with the Slack stand-in, and the CPU
seconds of processes (replicas, PostgreSQL's server and backends)."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _storm_runs import proc_cpu_s, stop_process

from tests.crash_harness import GraceProcess, Slack, environment, free_port, make_slack
from tests.grace_db import GraceDb, PgGraceDb

UNFINISHED = ("open", "diagnosed", "approved", "executing", "verifying")
"""Incident states GRACE is still working on (tests/grace_db.py)."""


@dataclass(frozen=True)
class Config:
    """One configuration: a store and how many `grace run` replicas share it."""

    store: str  # "sqlite" or "postgresql"
    replicas: int

    @property
    def name(self) -> str:
        return f"{self.store} x{self.replicas}"


@dataclass(frozen=True)
class Db:
    """GRACE's database read from outside: a SQLite file opened read-only, or a
    PostgreSQL DSN (its own short connection per read, as tests/e2e/test_replicas.py)."""

    target: str  # a file path or a postgresql:// DSN

    @property
    def postgres(self) -> bool:
        return self.target.startswith("postgresql://")

    def rows(self, sql: str, *args: object) -> list[Any]:
        if self.postgres:
            return PgGraceDb(self.target).rows(sql, *args)
        return GraceDb(Path(self.target)).rows(sql, *args)

    def value(self, sql: str, *args: object) -> Any:
        return self.rows(sql, *args)[0][0]

    def busy(self) -> int:
        """Deliveries not handled, incidents on their way, Slack writes not sent:
        zero when GRACE has nothing left to do."""
        states = ", ".join(f"'{s}'" for s in UNFINISHED)
        return int(
            self.value(
                "SELECT (SELECT count(*) FROM inbox WHERE handled_at IS NULL)"
                f" + (SELECT count(*) FROM incidents WHERE state IN ({states}))"
                " + (SELECT count(*) FROM outbox WHERE state IN ('pending', 'sending'))"
            )
        )


@dataclass
class Cluster:
    """`config.replicas` `grace run` processes on one database, each with its own
    name and port, all posting to one Slack stand-in (no rate limit of its own)."""

    config: Config
    db: Db
    slack: Slack
    replicas: list[GraceProcess]
    exits: list[int | None] = field(default_factory=list)

    @property
    def ports(self) -> list[int]:
        return [int(r.env["GRACE_PORT"]) for r in self.replicas]

    @property
    def pids(self) -> list[int]:
        return [r.proc.pid for r in self.replicas if r.proc is not None]

    async def settle(self, within_s: float, step: float = 0.1) -> float | None:
        """Poll until GRACE has nothing left to do; the monotonic time it was seen
        so, or None after `within_s` seconds."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if await asyncio.to_thread(self.db.busy) == 0:
                return time.monotonic()
            await asyncio.sleep(step)
        return None

    async def close(self) -> None:
        """SIGTERM each replica (as an operator stops one), SIGKILL after 30 s."""
        for replica in self.replicas:
            if replica.proc is not None:
                await stop_process(replica.proc)
                self.exits.append(replica.proc.returncode)
            await replica.close()  # its HTTP session; the process is gone by now
        await self.slack.stop()

    def log_problems(self) -> list[str]:
        """Every replica's ERROR, CRITICAL and WARNING lines and tracebacks, counted
        by their logger and first words, with one example each (but slack_bolt's
        warning at start, which every `grace run` logs)."""
        found: list[str] = []
        for replica in self.replicas:
            text = replica.log.read_text(errors="replace") if replica.log.exists() else ""
            kinds: Counter[str] = Counter()
            example: dict[str, str] = {}
            for line in text.splitlines():
                match = _PROBLEM.search(line)
                if (match is None and not line.startswith("Traceback")) or _BENIGN in line:
                    continue
                kind = " ".join(match.group(0).split()[:4]) if match else "Traceback"
                kinds[kind] += 1
                example.setdefault(kind, line.strip()[:300])
            for kind, n in kinds.most_common():
                found.append(
                    f"{replica.env['GRACE_REPLICA']}: {n} x {kind!r}; e.g. {example[kind]}"
                )
        return found


_BENIGN = "As you gave `client` as well, `token` will be unused."
_PROBLEM = re.compile(r"\b(ERROR|CRITICAL|WARNING) \S+: \S+(?: \S+){0,2}")


async def start_cluster(config: Config, target: str, workdir: Path) -> Cluster:
    """Start the replicas together (they migrate an empty database once, under its
    lock) and return once each one's /healthz answers.

    The settings are the crash suites' (tests/crash_harness.py `environment`):
    SQLite targets under workdir/app, the tier-1 SQLiteCheckpointNow playbook, and
    the paces lifted so Slack's and the executor's do not hide GRACE's own:
    slack_rate 500/s with a burst of 50, the sqlite executor at 500 calls/s,
    8 at a time (per replica)."""
    slack = make_slack()
    await slack.start()
    app_dir = workdir / "app"
    app_dir.mkdir(parents=True, exist_ok=True)
    shared = environment(workdir, slack, app_dir)
    replicas = []
    for k in range(config.replicas):
        home = workdir / f"replica{k}"
        home.mkdir()
        env = {
            **shared,
            "GRACE_DB": target,
            "GRACE_PORT": str(free_port()),
            "GRACE_REPLICA": f"replica-{k}",
        }
        replicas.append(GraceProcess(env, home))
    cluster = Cluster(config, Db(target), slack, replicas)
    try:
        await asyncio.gather(*(r.start(within_s=60) for r in replicas))
    except BaseException:
        await cluster.close()
        raise
    return cluster


def cpu_by_pid(pids: list[int]) -> dict[int, float]:
    """User+system CPU seconds each process spent so far (those still alive)."""
    spent = {pid: proc_cpu_s(pid) for pid in pids}
    return {pid: t for pid, t in spent.items() if t == t}  # NaN: gone


def pg_pids(postmaster: int | None) -> list[int]:
    """PostgreSQL's postmaster and its children (backends, writers, WAL writer)."""
    if postmaster is None:
        return []
    pids = [postmaster]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == postmaster:
            pids.append(int(stat.parent.name))
    return pids
