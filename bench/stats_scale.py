"""Stats at scale: `/grace stats` over a database of 1,000,000 outcome records.

Builds a real GRACE database (every migration before 017, then 1,000,000
incidents over 180 days, each with its outcome row, approvals for those that
waited for one, across a few dozen alert names and playbooks, all inserted
with `executemany` in one transaction), lets `SqliteStore.open` apply
migration 017, whose backfill derives the hourly counters from those rows,
and then times the real read path:

- `SqliteStore.stats` for 7, 30 and 90 days (each reads the period and the
  one before it), p50 and p99 over `--runs` reads after `--warmup`;
- one weekly report's reads: `period_stats` over the week ending on a Monday
  at 09:00 Europe/Berlin, and the report's whole set (that week and the one
  before, and each of its 7 days).

    .venv/bin/python bench/stats_scale.py [--outcomes 1000000] [--runs 100] [--db PATH]

With `--db`, the database is kept there and reused when it exists. A
benchmark, not a test: it prints numbers and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiosqlite

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.stats import periods
from storage import reports
from storage import stats as stats_rows
from storage.db import connect, connect_sync, load_migrations, migrate, time_text
from storage.store import SqliteStore

COUNTERS = 17
"""The migration that adds the counters; the database is built just before it."""

BERLIN = ZoneInfo("Europe/Berlin")
END = datetime(2026, 12, 14, 9, 0, tzinfo=BERLIN)  # a Monday, 09:00 in Berlin
HISTORY = timedelta(days=180)
ALERTS = [f"Alert{n:02d}" for n in range(36)]
PLAYBOOKS = [f"playbook-{n:02d}" for n in range(24)]
APPROVERS = ["U0ALICE", "U0BOB", "U0CAROL", "U0DAVE"]

# How incidents end, and how often: heals (a playbook ran) and the other ends.
ENDS = [
    ("resolved", 70),
    ("rolled_back", 8),
    ("safe_hold", 1),
    ("rejected", 6),
    ("expired", 4),
    ("needs_human", 10),
    ("interrupted", 1),
]
HEALS = {"resolved", "rolled_back", "safe_hold"}

_INCIDENT = (
    "INSERT INTO incidents (id, state, fingerprint, alert_name, channel, created_at,"
    " updated_at, version, alert_count, firing_count, first_seen, last_seen)"
    " VALUES (?, ?, ?, ?, 'C0ALERTS', ?, ?, 5, 1, 0, ?, ?)"
)
_APPROVAL = (
    "INSERT INTO approvals (incident_id, user_id, plan_hash, decision, reason, at)"
    " VALUES (?, ?, 'plan', ?, NULL, ?)"
)
_OUTCOME = (
    "INSERT INTO outcomes (incident_id, playbook_id, success, seconds, final_state, at,"
    " target_kind, target, approval_wait_s, heal) VALUES (?, ?, ?, ?, ?, ?, 'sqlite', 'db', ?, ?)"
)


class Fixed:
    """The clock: the reads are timed as of END."""

    def now(self) -> datetime:
        return END.astimezone(UTC)


def rows(outcomes: int, seed: int) -> tuple[list[tuple[Any, ...]], ...]:
    """Incidents, approvals and outcomes: one incident per outcome, over HISTORY up to END."""
    rng = random.Random(seed)
    start = END.astimezone(UTC) - HISTORY
    span_s = HISTORY.total_seconds()
    alert_weights = [1 / (k + 1) for k in range(len(ALERTS))]
    alerts = rng.choices(range(len(ALERTS)), alert_weights, k=outcomes)
    ends = rng.choices([e for e, _ in ENDS], [w for _, w in ENDS], k=outcomes)
    incidents, approvals, results = [], [], []
    for n in range(outcomes):
        created = start + timedelta(seconds=rng.random() * span_s)
        # Each alert has its playbook, and a neighbour's now and then.
        end, alert = ends[n], alerts[n]
        playbook = PLAYBOOKS[(alert + (rng.random() < 0.2)) % len(PLAYBOOKS)]
        waited = None
        if end in ("rejected", "expired") or (end in HEALS and rng.random() < 0.4):
            waited = rng.lognormvariate(math.log(120), 0.8)
        if end == "rejected":
            approvals.append((n + 1, rng.choice(APPROVERS), "reject", time_text(created)))
        elif waited is not None and end != "expired":
            for user in rng.sample(APPROVERS, 1 + (rng.random() < 0.2)):
                at = created + timedelta(seconds=waited * (1 + rng.random() * 0.1))
                approvals.append((n + 1, user, "approve", time_text(at)))
        heal_s = rng.lognormvariate(math.log(30), 0.7) if end in HEALS else 0.0
        ended = created + timedelta(seconds=(waited or 0.0) + heal_s + 2.0)
        created_text, ended_text = time_text(created), time_text(ended)
        incidents.append(
            (
                n + 1,
                end,
                f"fp-{n}",
                ALERTS[alert],
                created_text,
                ended_text,
                created_text,
                created_text,
            )
        )
        ok, is_heal = int(end == "resolved"), int(end in HEALS)
        seconds = heal_s if is_heal else (ended - created).total_seconds()
        results.append((n + 1, playbook, ok, seconds, end, ended_text, waited, is_heal))
    return incidents, approvals, results


async def build(path: Path, outcomes: int, seed: int) -> None:
    conn = await connect(path)
    try:
        await migrate(conn, [m for m in load_migrations() if m.version < COUNTERS])
    finally:
        await conn.close()
    started = time.perf_counter()
    incidents, approvals, results = rows(outcomes, seed)
    generated = time.perf_counter()
    sync = connect_sync(path)
    try:
        sync.execute("BEGIN IMMEDIATE")
        sync.executemany(_INCIDENT, incidents)
        sync.executemany(_APPROVAL, approvals)
        sync.executemany(_OUTCOME, results)
        sync.execute("COMMIT")
    finally:
        sync.close()
    print(
        f"built: {len(incidents):,} incidents, {len(approvals):,} approvals,"
        f" {len(results):,} outcomes over {HISTORY.days} days"
        f" (rows {generated - started:.1f} s, inserts {time.perf_counter() - generated:.1f} s)"
    )


async def timed(read: Callable[[], Awaitable[object]], runs: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        await read()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await read()
        times.append((time.perf_counter() - started) * 1000)
    return sorted(times)


def nearest_rank(ordered: Sequence[float], fraction: float) -> float:
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


async def measure(path: Path, runs: int, warmup: int) -> None:
    started = time.perf_counter()
    store = await SqliteStore.open(path, Fixed())
    opened = time.perf_counter() - started
    print(f"SqliteStore.open (migrations from {COUNTERS} on, its backfill): {opened:.1f} s")
    reader = await connect(path)
    try:
        with sqlite3.connect(path) as raw:
            (counters,) = raw.execute("SELECT COUNT(*) FROM stats_hourly").fetchone()
            (outcomes,) = raw.execute("SELECT COUNT(*) FROM outcomes").fetchone()
        print(f"database: {outcomes:,} outcome rows, {counters:,} counter rows\n")
        print(f"{'read':<44}  runs   p50 ms   p99 ms   max ms")
        print(f"{'-' * 44}  ----  -------  -------  -------")
        until = Fixed().now()
        for days in (7, 30, 90):
            times = await timed(lambda d=days: store.stats(until=until, days=d), runs, warmup)
            show(f"SqliteStore.stats {days}d (and the {days}d before)", times)
        week = (until - timedelta(days=7), until)
        times = await timed(
            lambda: one_read(reader, lambda c: stats_rows.period_stats(c, *week)), runs, warmup
        )
        show("period_stats, week to Mon 09:00 Berlin", times)
        times = await timed(lambda: one_read(reader, lambda c: weekly_reads(c, week)), runs, warmup)
        show("weekly report: week, week before, 7 days", times)
        report = await store.stats(until=until, days=7)
        now = report.current
        print(
            f"\n7d as read: {now.incidents:,} incidents, {now.heals:,} heals"
            f" ({now.heal_successes:,} succeeded), {now.approved:,} approved,"
            f" resolve p50 {now.resolve_p50_s} s, approve p90 {now.approve_p90_s} s,"
            f" top alert {now.top_alerts[0]}"
        )
    finally:
        await reader.close()
        await store.close()


async def one_read(
    conn: aiosqlite.Connection, read: Callable[[aiosqlite.Connection], Awaitable[object]]
) -> object:
    return await reports.consistent(conn, read)


async def weekly_reads(conn: aiosqlite.Connection, week: tuple[datetime, datetime]) -> None:
    """What storage/weekly.py's read_report asks of the statistics."""
    current, previous = periods(week[1], 7)
    await stats_rows.stats_report(conn, current, previous)
    for day in range(7):
        await stats_rows.period_stats(
            conn, week[0] + timedelta(days=day), week[0] + timedelta(days=day + 1)
        )


def show(name: str, times: list[float]) -> None:
    print(
        f"{name:<44}  {len(times):>4}  {nearest_rank(times, 0.5):>7.2f}"
        f"  {nearest_rank(times, 0.99):>7.2f}  {times[-1]:>7.2f}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outcomes", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=100, help="timed reads per line")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--db", type=Path, help="keep the database here (reused if it exists)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="grace-bench-") as tmp:
        path = args.db or Path(tmp) / "grace.db"
        if not path.exists():
            asyncio.run(build(path, args.outcomes, args.seed))
        asyncio.run(measure(path, args.runs, args.warmup))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
