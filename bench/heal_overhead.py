"""Engine overhead per heal: what GRACE itself adds around the executor's work.

Two numbers:

- the resilience layer around one call (limiter, concurrency slot, breaker,
  retry loop, deadline) on a call that does nothing, in microseconds;
- a whole tier-1 heal (intake, diagnosis, plan, snapshot, step, checks,
  benchmarks, verification, learning, every state change and audit row) on a
  real SQLite store, with an executor whose operations do nothing, in
  milliseconds per heal, heals run one after another.

    .venv/bin/python bench/heal_overhead.py [--calls 20000] [--heals 300]

A benchmark, not a test: it prints numbers and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.approval import ApprovalPolicy
from engine.catalog import load_catalog
from engine.clock import SystemClock
from engine.healer import Healer
from engine.models import Alert, IncidentState, Target
from engine.resilience import Policy, Resilience
from storage.store import SqliteStore
from tests.engine.conftest import PLAYBOOK
from tests.engine.fakes import FakeDirectory, FakeExecutor

UNBOUNDED = Policy(rate_per_s=1_000_000, concurrency=1_000)


class Quiet:
    """A notifier that drops everything: Slack is not what is measured."""

    async def post_card(self, incident: object) -> None: ...
    async def update_card(self, incident: object) -> None: ...
    async def tell_thread(self, incident: object, event: object) -> None: ...
    async def tell_user(self, channel: str, user: str, text: str) -> None: ...


async def resilience_overhead(calls: int) -> float:
    resilience = Resilience({"fake": UNBOUNDED})
    target = Target(executor="fake", name="db1")

    async def nothing() -> None:
        return None

    started = time.perf_counter()
    for _ in range(calls):
        await resilience.call(target, nothing)
    return (time.perf_counter() - started) / calls * 1e6


async def heal_overhead(heals: int, workdir: Path) -> list[float]:
    folder = workdir / "playbooks"
    folder.mkdir()
    (folder / "thing.yml").write_text(
        PLAYBOOK.format(tier=1, timeout=5, approval="", more_steps="")
    )
    executor = FakeExecutor()
    store = await SqliteStore.open(workdir / "grace.db", SystemClock())
    healer = Healer(
        store=store,
        notifier=Quiet(),
        executors={"fake": executor},
        catalog=load_catalog([folder], {"fake": executor.spec}, builtins=False),
        policy=ApprovalPolicy({2: frozenset(), 3: frozenset()}),
        directory=FakeDirectory(),
        allowlists={"fake": [f"db{n}" for n in range(heals)]},
        clock=SystemClock(),
        resilience=Resilience({"fake": UNBOUNDED}),
    )
    times: list[float] = []
    try:
        for n in range(heals):
            executor.state = {"value": "broken"}
            alert = Alert(
                source="bench",
                source_key=f"a{n}",
                name="ThingBroken",
                labels={"thing": f"db{n}"},
                channel="C0",
                received_at=datetime.now(UTC),
            )
            started = time.perf_counter()
            [intake] = await healer.receive([alert], f"d{n}")
            await healer.drain()
            times.append(time.perf_counter() - started)
            assert intake.incident is not None
            final = await store.get_incident(intake.incident.id)
            assert final is not None and final.state is IncidentState.RESOLVED, final
    finally:
        await store.close()
    return times


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--heals", type=int, default=300)
    args = parser.parse_args(argv)
    per_call = asyncio.run(resilience_overhead(args.calls))
    with tempfile.TemporaryDirectory(prefix="grace-bench-") as tmp:
        times = asyncio.run(heal_overhead(args.heals, Path(tmp)))
    ms = sorted(t * 1000 for t in times)
    p99 = ms[min(len(ms) - 1, round(len(ms) * 0.99))]
    print(f"resilience layer: {per_call:.1f} µs per call ({args.calls} no-op calls)")
    print(
        f"whole tier-1 heal on SQLite: median {statistics.median(ms):.2f} ms, "
        f"p99 {p99:.2f} ms, {len(ms) / sum(times):.0f} heals/s ({len(ms)} heals in a row)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
