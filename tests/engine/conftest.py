from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.approval import ApprovalPolicy
from engine.catalog import load_catalog
from engine.healer import Healer
from engine.models import Alert, AlertStatus, Incident
from engine.resilience import Policy, Resilience
from tests.engine.fakes import (
    FakeDirectory,
    FakeExecutor,
    FixedClock,
    MemoryStore,
    RecordingNotifier,
)

PLAYBOOK = """
patterns:
  - id: thing-broken
    problem: thing_broken
    alertname: ThingBroken
    labels: {{thing: ".+"}}
    explanation: "{{thing}} is broken"
playbooks:
  - id: fix-thing
    title: Fix the thing
    treats: [thing_broken]
    tier: {tier}
    target: {{executor: fake, from_label: thing}}
    steps:
      - {{action: fix, timeout: {timeout}}}
{more_steps}    checks:
      - {{check: fixed}}
    benchmarks:
      - {{benchmark: speed, tolerance: 0.5}}
{approval}"""


# Retries without waiting, a breaker that opens after three failed calls.
FAST = Policy(backoff_s=0.001, backoff_max_s=0.002, breaker_failures=3, rate_per_s=1000)


class World:
    """A healer wired to in-memory fakes, with helpers to speak to it."""

    def __init__(
        self,
        tmp_path: Path,
        tier: int,
        timeout: float = 5,
        approval: str = "",
        steps: int = 1,
        policy: Policy = FAST,
    ) -> None:
        folder = tmp_path / f"playbooks-{tier}"
        folder.mkdir()
        more_steps = f"      - {{action: fix, timeout: {timeout}}}\n" * (steps - 1)
        text = PLAYBOOK.format(tier=tier, timeout=timeout, approval=approval, more_steps=more_steps)
        (folder / "thing.yml").write_text(text)
        self.clock = FixedClock()
        self.store = MemoryStore(self.clock)
        self.notifier = RecordingNotifier(self.store)
        self.executor = FakeExecutor()
        self.directory = FakeDirectory({"S0ONCALL": frozenset({"U0GROUPIE"})})
        catalog = load_catalog([folder], {"fake": self.executor.spec}, builtins=False)
        self.healer = Healer(
            store=self.store,
            notifier=self.notifier,
            executors={"fake": self.executor},
            catalog=catalog,
            policy=ApprovalPolicy(
                {
                    2: frozenset({"U0ONCALL", "U0SRE", "S0ONCALL"}),
                    3: frozenset({"U0A", "U0B", "U0C"}),
                }
            ),
            directory=self.directory,
            admins=frozenset({"U0LEAD"}),
            allowlists={"fake": ["db1", "db9"]},
            clock=self.clock,
            resilience=Resilience({"fake": policy}),
        )
        self._seq = 0

    async def open(self, alert: Alert, delivery_key: str = "") -> Incident | None:
        """Deliver one alert; the incident it opened or joined, as it is now."""
        self._seq += 1
        [intake] = await self.healer.receive([alert], delivery_key or f"ev{self._seq}")
        await self.healer.drain()
        return None if intake.incident is None else self.store.incidents[intake.incident.id]

    def alert(
        self,
        thing: str = "db1",
        name: str = "ThingBroken",
        reporter: str | None = None,
        status: AlertStatus = AlertStatus.FIRING,
    ) -> Alert:
        self._seq += 1
        return Alert(
            source="test",
            source_key=f"a{self._seq}",
            name=name,
            status=status,
            labels={"thing": thing},
            channel="C0ALERTS",
            reporter=reporter,
            received_at=datetime(2026, 11, 24, tzinfo=UTC),
        )


@pytest.fixture
def world(tmp_path: Path) -> Callable[..., World]:
    return lambda tier=2, timeout=5, approval="", steps=1, policy=FAST: World(
        tmp_path, tier, timeout, approval, steps, policy
    )
