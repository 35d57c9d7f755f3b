"""The engine's ports: what it needs from the world, as Protocols.

The engine never imports Slack or SQL; storage/ implements `Store`, bot/
implements `Notifier`, engine/executors/ implement `Executor`, and tests drive
the engine with in-memory fakes of all of them. What bot/ asks of storage
beyond `Store` is in engine/storage_ports.py.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from engine.autonomy import TierChange, TierProposal
from engine.models import (
    Alert,
    Approval,
    Availability,
    CheckResult,
    Diagnosis,
    Incident,
    IncidentState,
    Intake,
    Outcome,
    Pause,
    Plan,
    PlannedBenchmark,
    PlannedCheck,
    PlannedStep,
    PlaybookStats,
    Snapshot,
    StepResult,
    Target,
    TargetHold,
    Verification,
)
from engine.story import PromotionProposed, StoryEvent


class Clock(Protocol):
    """What time it is, and waiting for it to pass: one source, so a test's
    simulated time moves everything that reads or waits for it."""

    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


class Store(Protocol):
    async def ingest_alerts(self, alerts: Sequence[Alert], delivery_key: str) -> list[Intake]:
        """Store a delivery's alerts in one transaction, one Intake per alert, in order.

        Each alert joins the active (non-terminal) incident of its group, or
        firing, opens a new one; a resolved alert with no active incident is
        stored with none. A delivery key seen before returns [] and writes
        nothing; an alert whose (source, source_key) was seen before gets
        Intake(incident=None) and is not stored again. `Intake.incident` is the
        incident as the whole delivery left it; `opened` and `all_clear` are per alert.
        """

    async def get_incident(self, incident_id: int) -> Incident | None: ...

    async def transition(
        self,
        incident_id: int,
        expected: IncidentState,
        new: IncidentState,
        *,
        actor: str,
        diagnosis: Diagnosis | None = None,
        plan: Plan | None = None,
        reason: str | None = None,
        deadline: datetime | None = None,
        remind_at: datetime | None = None,
    ) -> Incident | None:
        """Compare-and-set: move the incident only if it is still `expected`.

        The state write and its audit row are one transaction. Returns the new
        incident, or None when another writer moved it first. When the move
        `holds_target`, the plan's target is held in that same transaction.
        """

    async def add_approval(self, approval: Approval) -> bool:
        """False when this user already decided on this incident."""

    async def approvals(self, incident_id: int) -> list[Approval]: ...

    async def add_snapshot(self, snapshot: Snapshot) -> None: ...

    async def snapshots(self, incident_id: int) -> list[Snapshot]: ...

    async def add_action(self, incident_id: int, result: StepResult) -> None: ...

    async def add_verification(self, incident_id: int, verification: Verification) -> None: ...

    async def record_outcome(self, outcome: Outcome) -> PlaybookStats:
        """Append the outcome and update the playbook's pre-aggregated stats, atomically."""

    async def playbook_stats(self, playbook_id: str) -> PlaybookStats: ...

    async def playbook_tiers(self) -> dict[str, TierChange]: ...

    async def change_tier(self, change: TierChange) -> None:
        """GRACE's own change (a demotion), audited; an open proposal for the playbook,
        which was about its old tier, is dismissed in the same transaction."""

    async def propose_tier(self, proposal: TierProposal, *, quiet_runs: int) -> TierProposal | None:
        """Store an open proposal with its audit row; None, writing nothing, when the
        playbook has one open, or had one dismissed fewer than `quiet_runs` runs ago."""

    async def tier_proposal(self, proposal_id: int) -> TierProposal | None: ...

    async def open_proposals(self) -> list[TierProposal]:
        """Proposals nobody decided yet, oldest first."""

    async def decide_proposal(self, decided: TierProposal, change: TierChange | None) -> bool:
        """Compare-and-set: the proposal, if still open, takes `decided`'s state, with
        its audit row and (an Accept) the new tier, in one transaction. False when
        it was decided already."""

    async def due_to_expire(self, now: datetime) -> list[Incident]:
        """Incidents awaiting approval whose deadline has passed."""

    async def due_for_reminder(self, now: datetime) -> list[Incident]:
        """Incidents awaiting approval whose reminder time passed, not yet reminded."""

    async def mark_reminded(self, incident_id: int) -> bool:
        """Claim the one reminder; False when it was already claimed."""

    async def paused(self) -> Pause | None:
        """The kill switch as stored: it survives restarts."""

    async def set_pause(self, pause: Pause | None, *, actor: str) -> None:
        """Set (or, with None, lift) the kill switch, audited in the same transaction."""

    async def incidents_in(self, states: Iterable[IncidentState]) -> list[Incident]: ...

    async def orphaned_runs(self, replica: str, ttl_s: float, *, own: bool) -> list[Incident]:
        """Runs nobody carries on any more, oldest first: incidents in a running state
        (`RUNNING_STATES`) whose runner is unknown (a run older than replicas), or is
        another replica whose last heartbeat is older than `ttl_s` seconds (or that
        never beat); with `own`, `replica`'s own runs too (asked at its start: the
        process that ran them is gone). A transition into a running state records
        the store's replica as the runner."""

    async def target_hold(self, target: Target) -> TargetHold | None:
        """The hold on this target, if one is in force."""

    async def holds(self) -> list[TargetHold]:
        """Every hold in force, oldest first."""

    async def clear_holds(self, name: str, *, actor: str) -> list[TargetHold]:
        """Lift the holds on every target called `name`, audited; the ones lifted."""

    async def audit(
        self,
        actor: str,
        action: str,
        *,
        incident_id: int | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None: ...


class BreakerBoard(Protocol):
    """Circuit breakers shared by every GRACE on one database (engine/resilience.py).

    A circuit is open from `breaker_opened` until `breaker_closed`. Its
    `retry_at` is a wall-clock instant: refuse calls until then, after it one
    caller (the one whose `claim_breaker_trial` succeeds) makes the trial call.
    """

    async def breaker_opened(self, circuit: str, retry_at: datetime, cause: str) -> None:
        """The circuit's breaker opened (or opened again): open for all until `retry_at`."""

    async def breaker_closed(self, circuit: str) -> None:
        """A trial call succeeded: closed for all; closing a closed one changes nothing."""

    async def breaker_open_until(self, circuit: str) -> datetime | None:
        """When the open circuit lets a trial call through (maybe past); None if closed."""

    async def claim_breaker_trial(self, circuit: str, seen: datetime, until: datetime) -> bool:
        """Compare-and-set: move the open circuit's `retry_at` from `seen` to `until`,
        so the caller alone makes the trial call; False (nothing written) when it was
        claimed, reopened or closed since `seen` was read."""

    async def open_breakers(self) -> dict[str, datetime]:
        """Every open circuit and its `retry_at`."""


class Notifier(Protocol):
    async def post_card(self, incident: Incident) -> None:
        """Post the incident's live card in `incident.channel`.

        Delivery may happen later (Slack may be down); thread replies and
        updates told after this are delivered after it, in order.
        """

    async def post_card_once(self, incident: Incident) -> bool:
        """post_card, unless this incident's card was ever queued: True when posted now.

        GRACE may die between moving an incident on and queueing its card.
        """

    async def update_card(self, incident: Incident) -> None: ...

    async def tell_thread(self, incident: Incident, event: StoryEvent) -> None: ...

    async def tell_once(self, incident: Incident, event: StoryEvent, key: str) -> None:
        """tell_thread, unless a line with this key was ever told: a line told
        before a state move, the move cut short by a stop, is not told twice."""

    async def tell_user(self, channel: str, user: str, text: str) -> None:
        """An ephemeral answer only `user` sees."""

    async def announce(self, event: StoryEvent) -> None:
        """A notice for every alert channel, not about one incident (the kill switch)."""

    async def propose_promotion(self, event: PromotionProposed) -> None:
        """A message of its own in the proposal's channel, with Accept and Dismiss."""


class Directory(Protocol):
    async def members(self, group: str) -> frozenset[str]:
        """The users of a Slack user group (empty when it has none or is unknown)."""


class TargetRefused(Exception):
    """A target named by an alert that no allowlist entry permits."""


class TargetMissing(TargetRefused):
    """The alert names no target at all: nothing was found where the pattern looked."""


class TransientError(Exception):
    """A failure worth trying again: a lock held elsewhere, a refused connection,
    a 503. Executors raise it (from the original error) so the resilience layer
    retries these and nothing else: a wrong parameter fails at once."""


class Params(BaseModel):
    """Strict and closed: a playbook with a typo or a string where a number
    belongs fails when it is loaded, not halfway through a heal."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class WaitingParams(Params):
    """A check that waits up to `within_s` for its target to settle. The engine
    reads it from this model, so a default the playbook leaves alone still
    extends the check's call deadline."""

    within_s: float = Field(default=0, ge=0, le=600)


@dataclass(frozen=True)
class ExecutorSpec:
    """What an executor can do, with a parameter model for each, so a playbook
    naming an unknown action or a wrongly typed parameter fails at load."""

    actions: Mapping[str, type[BaseModel]] = field(default_factory=dict)
    checks: Mapping[str, type[BaseModel]] = field(default_factory=dict)
    benchmarks: Mapping[str, type[BaseModel]] = field(default_factory=dict)


class Executor(Protocol):
    name: str
    spec: ExecutorSpec

    def resolve_target(self, value: str, allowlist: Sequence[str]) -> Target:
        """Turn an alert label into a target, or raise TargetRefused."""

    async def available(self) -> Availability: ...

    def describe_snapshot(self, target: Target) -> str:
        """What a snapshot of this target is and how rollback uses it, for a dry run."""

    async def snapshot(self, target: Target, incident_id: int) -> Snapshot: ...

    async def run(self, step: PlannedStep, target: Target, snapshot: Snapshot) -> StepResult:
        """Carry out one step. `snapshot` was taken just before it, for this step:
        an executor that deletes (files) moves what it deletes into its location."""

    async def check(self, check: PlannedCheck, target: Target) -> CheckResult: ...

    async def measure(self, benchmark: PlannedBenchmark, target: Target) -> float:
        """Seconds the benchmark took: lower is better."""

    async def restore(self, snapshot: Snapshot) -> None: ...


@runtime_checkable
class Closeable(Protocol):
    """An executor holding a client open (an API connection pool) closes it at shutdown."""

    async def aclose(self) -> None: ...


@runtime_checkable
class Quarantining(Protocol):
    """An executor that moves what it deletes into a quarantine purges the old
    part now and then; the folders of the incidents in `keep` stay."""

    async def purge_quarantine(self, keep: Collection[int] = ()) -> list[Path]: ...
