"""The replicas bench's two phases, each on a fresh database and fresh replicas:
the storm (ingestion) and the heals, with what each checks afterwards."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from _load import Load, LoadResult, percentile, request_bytes
from _replicas_cluster import UNFINISHED, Cluster, Config, Db, cpu_by_pid
from _storm_plan import HOST, STORM, WARMUP, Bodies, Mode, plan_requests
from _storm_runs import parse_metrics

from bot.demo import CHANNEL, bloat_wal, wal_size
from bot.devslack import Message
from tests.crash_harness import TIER1_ALERT, WEBHOOK_TOKEN, alertmanager_body

PATH = "/alerts/alertmanager"
HEADERS = {"Authorization": f"Bearer {WEBHOOK_TOKEN}", "Content-Type": "application/json"}
RECEIVED = 'grace_alerts_received_total{source="alertmanager"}'

# Starts a cluster of `config` on a fresh database in a phase's folder, its SQLite
# targets under the folder's app/ (replicas.py).
Starter = Callable[[Config, Path], Awaitable[Cluster]]


@dataclass
class Phase:
    """What one phase of one configuration measured and checked."""

    config: Config
    load: LoadResult | None = None
    sent: int = 0  # alerts the measured part sent
    done_s: float | None = None  # first send until the end the phase waits for
    replicas_cpu_s: float = 0.0
    pg_cpu_s: float = 0.0
    spread: str = ""  # how the work fell on the replicas
    fails: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return sum(s.status == 200 for s in self.load.samples) if self.load else 0

    @property
    def send_s(self) -> float:
        return self.load.last_done - self.load.first_sent if self.load else float("nan")

    def latency_ms(self, p: float) -> float:
        return percentile([s.latency for s in self.load.samples], p) * 1000 if self.load else 0.0

    def check(self, what: str, ok: bool) -> None:
        if not ok:
            self.fails.append(what)


class Measured:
    """The load client over the replicas' ports, warmed up, and the CPU that
    GRACE's processes and PostgreSQL's spend while it runs."""

    def __init__(
        self,
        cluster: Cluster,
        warm: list[bytes],
        bodies: list[bytes],
        args: argparse.Namespace,
        pg: Callable[[], list[int]],
    ) -> None:
        ports = cluster.ports
        self.cluster, self.pg = cluster, pg
        self.load = Load(
            HOST,
            ports[0],
            [request_bytes(HOST, ports[0], PATH, b, HEADERS) for b in warm],
            [request_bytes(HOST, ports[0], PATH, b, HEADERS) for b in bodies],
            procs=args.procs,
            conns=args.conns,
            time_limit=args.time_limit,
            ports=ports,
        )

    async def run(self, phase: Phase, at_rest: Callable[[], Awaitable[None]] | None = None) -> None:
        """Warm up, wait until GRACE is at rest (then call `at_rest`), go."""
        try:
            warm_errors = await asyncio.to_thread(self.load.wait_ready)
            if warm_errors:
                phase.notes.append(f"warm-up errors: {warm_errors[:3]}")
            if await self.cluster.settle(60) is None:
                phase.notes.append("still busy 60 s after the warm-up")
            if at_rest is not None:
                await at_rest()
            self.before = cpu_by_pid(self.cluster.pids), cpu_by_pid(self.pg())
            self.load.go()
            phase.load = await asyncio.to_thread(self.load.wait_result)
        finally:
            await asyncio.to_thread(self.load.close)

    def cpu_until_now(self, phase: Phase) -> None:
        """CPU seconds since the go; a PostgreSQL backend started since counts whole."""
        phase.replicas_cpu_s = _spent(self.before[0], cpu_by_pid(self.cluster.pids))
        phase.pg_cpu_s = _spent(self.before[1], cpu_by_pid(self.pg()))


def _spent(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(t - before.get(pid, 0.0) for pid, t in after.items())


# ------------------------------------------------------------------------- storm


async def storm_phase(
    config: Config,
    start: Starter,
    workdir: Path,
    bodies: Bodies,
    args: argparse.Namespace,
    pg: Callable[[], list[int]],
) -> Phase:
    """The storm of bench/alert_storm.py's single mode (one alert a request, each
    its own group, every fingerprint sent --repeats times), request j to replica
    j mod n; measured until the last answer, then until GRACE is at rest."""
    phase = Phase(config)
    mode = Mode("single", args.fingerprints, args.repeats, 1)
    connections = args.procs * args.conns
    warm, storm, _ = plan_requests(mode, lambda ks, n: bodies.grace(mode, ks, n), connections)
    cluster = await start(config, workdir)
    try:
        before: list[float] = []

        async def snapshot() -> None:
            before[:] = await _received(cluster)

        measured = Measured(cluster, warm, storm, args, pg)
        await measured.run(phase, snapshot)
        assert phase.load is not None
        phase.sent = phase.ok  # one alert a request
        if phase.ok != len(storm):
            phase.fails.append(_answers(phase, len(storm)))
        measured.cpu_until_now(phase)
        rest = await cluster.settle(args.settle_within)
        phase.done_s = rest - phase.load.first_sent if rest is not None else None
        if rest is None:
            phase.fails.append(f"not at rest {args.settle_within:.0f} s after the storm")
        after = await _received(cluster)
        moved = [a - b for a, b in zip(after, before, strict=True)]
        phase.spread = "/".join(f"{m:.0f}" for m in moved)
        _storm_checks(phase, cluster, mode, sum(moved))
    finally:
        await _close(cluster, phase)
    return phase


def _storm_checks(phase: Phase, cluster: Cluster, mode: Mode, metric: float) -> None:
    """Every alert answered 200 stored once, one incident a group, the counts agree."""
    db = cluster.db
    like = f"{STORM}%"
    stored = db.value("SELECT count(*) FROM alerts WHERE name LIKE ?", like)
    incidents, groups, counted = db.rows(
        "SELECT count(*), count(DISTINCT fingerprint), coalesce(sum(alert_count), 0)"
        " FROM incidents WHERE alert_name LIKE ?",
        like,
    )[0]
    phase.notes.append(
        f"database: {stored} {STORM} alert rows for {phase.sent} answered 200; {incidents}"
        f" incidents over {groups} groups, alert_count sums to {counted};"
        f" grace_alerts_received_total moved by {metric:.0f} over the replicas"
    )
    phase.check(f"stored {stored} alerts, {phase.sent} answered 200", stored == phase.sent)
    phase.check(
        f"{incidents} incidents, {groups} groups: one incident a group", incidents == groups
    )
    phase.check(f"{groups} groups, {mode.fingerprints} expected", groups == mode.fingerprints)
    phase.check(f"alert_count sums to {counted}, {stored} stored", counted == stored)
    phase.check(
        f"the replicas counted {metric:.0f} alerts, {phase.sent} answered", metric == phase.sent
    )
    _posted_once(phase, cluster)


async def _received(cluster: Cluster) -> list[float]:
    """Each replica's grace_alerts_received_total for Alertmanager."""
    out = []
    for replica in cluster.replicas:
        assert replica.session is not None
        async with replica.session.get(f"{replica.url}/metrics") as response:
            out.append(parse_metrics(await response.text()).get(RECEIVED, 0.0))
    return out


# ------------------------------------------------------------------------- heals


async def heal_phase(
    config: Config,
    start: Starter,
    workdir: Path,
    bodies: Bodies,
    args: argparse.Namespace,
    pg: Callable[[], list[int]],
) -> Phase:
    """--heals SQLite targets with a bloated WAL, one SQLiteCheckpointNow alert each
    (tier 1: healed at once), all sent at once over the replicas; measured from
    the first send until every incident is resolved (the database polled)."""
    phase = Phase(config)
    app = workdir / "app"
    owners = [bloat_wal(app / f"t{k:04d}.db", rows=args.target_rows) for k in range(args.heals)]
    targets = [app / f"t{k:04d}.db" for k in range(args.heals)]
    mode = Mode("single", 1, 1, 1)
    warm = [bodies.grace(mode, [k], WARMUP) for k in range(2 * args.procs * args.conns)]
    alerts = [
        alertmanager_body(t, f"heal {k}", TIER1_ALERT).encode() for k, t in enumerate(targets)
    ]
    try:
        cluster = await start(config, workdir)
        try:
            measured = Measured(cluster, warm, alerts, args, pg)
            await measured.run(phase)
            assert phase.load is not None
            phase.sent = phase.ok
            if phase.ok != len(alerts):
                phase.fails.append(_answers(phase, len(alerts)))
            healed = await _all_resolved(cluster, len(alerts), args.heal_within)
            measured.cpu_until_now(phase)
            if healed is None:
                phase.fails.append(f"not every incident resolved within {args.heal_within:.0f} s")
            if await cluster.settle(args.settle_within) is None:
                phase.notes.append(f"not at rest {args.settle_within:.0f} s after the heals")
            first = phase.load.first_sent
            resolved_at = _heal_checks(phase, cluster, len(alerts), _wall(first))
            if healed is not None:
                # The last `incident.resolved` audit row, not when the poll saw it.
                phase.done_s = max(resolved_at)
                phase.notes.append(f"the poll saw them all resolved at {healed - first:.2f} s")
            big = [t.name for t in targets if wal_size(t) > 0]
            phase.check(f"{len(big)} targets' WAL not truncated, e.g. {big[:3]}", not big)
        finally:
            await _close(cluster, phase)
    finally:
        for owner in owners:
            owner.close()
    return phase


async def _all_resolved(cluster: Cluster, n: int, within_s: float) -> float | None:
    """The monotonic time all n incidents were seen resolved (polled every 50 ms),
    or None once every one has ended and some not resolved, or time runs out."""
    deadline = time.monotonic() + within_s
    going = ", ".join(f"'{s}'" for s in UNFINISHED)
    sql = (
        "SELECT count(*), sum(CASE WHEN state = 'resolved' THEN 1 ELSE 0 END),"
        f" sum(CASE WHEN state IN ({going}) THEN 1 ELSE 0 END)"
        " FROM incidents WHERE alert_name = ?"
    )
    while time.monotonic() < deadline:
        [(total, resolved, busy)] = await asyncio.to_thread(cluster.db.rows, sql, TIER1_ALERT)
        if (resolved or 0) >= n:
            return time.monotonic()
        if total >= n and not busy:
            return None
        await asyncio.sleep(0.05)
    return None


def _heal_checks(phase: Phase, cluster: Cluster, n: int, first_wall: float) -> list[float]:
    """One incident a target, all resolved, each plan started once; returns when
    each was resolved, in seconds after `first_wall` (audit_log's times)."""
    db = cluster.db
    states = Counter(
        s for (s,) in db.rows("SELECT state FROM incidents WHERE alert_name = ?", TIER1_ALERT)
    )
    groups = db.value(
        "SELECT count(DISTINCT fingerprint) FROM incidents WHERE alert_name = ?", TIER1_ALERT
    )
    runs = Counter(
        dict(
            db.rows(
                "SELECT incident_id, count(*) FROM audit_log WHERE action = 'incident.executing'"
                " GROUP BY incident_id"
            )
        )
    )
    actions = db.value("SELECT count(*) FROM actions")
    by = Counter(r for (r,) in db.rows("SELECT run_by FROM incidents WHERE run_by IS NOT NULL"))
    phase.spread = "/".join(str(by.get(f"replica-{k}", 0)) for k in range(len(cluster.replicas)))
    resolved_at = [
        _wall_of(at) - first_wall
        for (at,) in db.rows("SELECT at FROM audit_log WHERE action = 'incident.resolved'")
    ]
    total = sum(states.values())
    phase.notes.append(
        f"database: {total} incidents over {groups} targets, states {dict(states)};"
        f" plans started {sum(runs.values())} times over {len(runs)} incidents;"
        f" {actions} step results; runners {dict(by)}"
    )
    if resolved_at:
        phase.notes.append(
            "each resolved at (s after the first send, audit_log): p50"
            f" {percentile(resolved_at, 50):.2f}, p99 {percentile(resolved_at, 99):.2f},"
            f" last {max(resolved_at):.2f}"
        )
    phase.check(f"{total} incidents for {n} alerts", total == n)
    phase.check(f"{groups} targets with an incident, {total} incidents", groups == total)
    phase.check(f"states {dict(states)}, all resolved expected", states == {"resolved": n})
    twice = {i: c for i, c in runs.items() if c != 1}
    phase.check(f"plans run more than once: {twice}", not twice)
    phase.check(f"{len(runs)} incidents executed, {n} expected", len(runs) == n)
    _posted_once(phase, cluster)
    return resolved_at


# ------------------------------------------------------------------------ shared


def _posted_once(phase: Phase, cluster: Cluster) -> None:
    """No Slack message posted twice: each outbox row's message at most once."""
    ids = Counter(
        cluster.slack.outbox_id(m)
        for m in _all_messages(cluster)
        if cluster.slack.outbox_id(m) is not None
    )
    twice = [i for i, n in ids.items() if n > 1]
    phase.check(f"{len(twice)} outbox messages posted twice, e.g. {twice[:5]}", not twice)
    phase.notes.append(f"Slack: {sum(ids.values())} messages of {len(ids)} outbox rows")


def _all_messages(cluster: Cluster) -> Iterator[Message]:
    for top in cluster.slack.messages(CHANNEL):
        yield top
        yield from cluster.slack.thread(CHANNEL, top.ts)


def _answers(phase: Phase, expected: int) -> str:
    assert phase.load is not None
    statuses = Counter(s.status for s in phase.load.samples)
    bad = next((s for s in phase.load.samples if s.status != 200), None)
    example = f"; e.g. {bad.status} {bad.body[:200]!r}" if bad else ""
    return (
        f"{phase.ok} of {expected} requests answered 200 ({dict(statuses)},"
        f" {phase.load.unsent} unsent, client errors {phase.load.errors[:3]}){example}"
    )


async def _close(cluster: Cluster, phase: Phase) -> None:
    """Stop the replicas; note an exit other than 0, what their logs warned of, and
    on PostgreSQL when autovacuum last analyzed the outbox."""
    await cluster.close()
    odd = [f"{r.env['GRACE_REPLICA']} exited {code}" for r, code in _exits(cluster) if code]
    phase.notes += odd
    phase.notes += cluster.log_problems() or ["replica logs: no ERROR, WARNING or traceback"]
    if cluster.db.postgres and phase.load is not None and phase.load.samples:
        phase.notes.append(_analyzed(cluster.db, _wall(phase.load.first_sent)))


def _analyzed(db: Db, first_wall: float) -> str:
    """How often autovacuum analyzed the outbox, and when last: the plan of the
    outbox claim query depends on it (bench/RESULTS.md, "Replicas (PostgreSQL)")."""
    [(count, last)] = db.rows(
        "SELECT autoanalyze_count, last_autoanalyze FROM pg_stat_user_tables"
        " WHERE relname = 'outbox'"
    )
    if last is None:
        return f"autovacuum analyzed the outbox {count} time(s)"
    at = last if isinstance(last, dt.datetime) else dt.datetime.fromisoformat(str(last))
    return (
        f"autovacuum analyzed the outbox {count} time(s), last at"
        f" {at.timestamp() - first_wall:+.1f} s from the first send"
    )


def _exits(cluster: Cluster) -> list[tuple[object, int | None]]:
    return list(zip(cluster.replicas, cluster.exits, strict=False))


def _wall(monotonic: float) -> float:
    """A time.monotonic() reading as Unix time."""
    return time.time() - (time.monotonic() - monotonic)


def _wall_of(text: str) -> float:
    at = dt.datetime.fromisoformat(text)
    return (at if at.tzinfo else at.replace(tzinfo=dt.UTC)).timestamp()
