"""The incident domain: what GRACE knows about alerts, incidents and their healing.
They cross every boundary (storage returns them, the bot renders them), so they are
frozen: a change is a new value written through the store."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class IncidentState(StrEnum):
    OPEN = "open"
    DIAGNOSED = "diagnosed"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    EXECUTING = "executing"
    VERIFYING = "verifying"
    RESOLVED = "resolved"
    NEEDS_HUMAN = "needs_human"
    REJECTED = "rejected"
    EXPIRED = "expired"
    AUTO_RESOLVED = "auto_resolved"
    ROLLED_BACK = "rolled_back"
    SAFE_HOLD = "safe_hold"
    INTERRUPTED = "interrupted"
    CLEARED = "cleared"

    @property
    def holds_group(self) -> bool:
        """New alerts of its group join it. Only a finished incident lets a new one open:
        one waiting on people (needs_human, safe_hold, interrupted) keeps its group."""
        return self not in RELEASING_STATES


_S = IncidentState
TRANSITIONS: dict[IncidentState, frozenset[IncidentState]] = {
    _S.OPEN: frozenset({_S.DIAGNOSED, _S.NEEDS_HUMAN, _S.AUTO_RESOLVED}),
    _S.DIAGNOSED: frozenset({_S.AWAITING_APPROVAL, _S.APPROVED, _S.NEEDS_HUMAN, _S.AUTO_RESOLVED}),
    _S.AWAITING_APPROVAL: frozenset({_S.APPROVED, _S.REJECTED, _S.EXPIRED, _S.AUTO_RESOLVED}),
    _S.APPROVED: frozenset({_S.EXECUTING, _S.AUTO_RESOLVED, _S.INTERRUPTED, _S.NEEDS_HUMAN}),
    _S.EXECUTING: frozenset({_S.VERIFYING, _S.ROLLED_BACK, _S.SAFE_HOLD, _S.INTERRUPTED}),
    _S.VERIFYING: frozenset({_S.RESOLVED, _S.ROLLED_BACK, _S.SAFE_HOLD, _S.INTERRUPTED}),
    _S.RESOLVED: frozenset(),
    _S.NEEDS_HUMAN: frozenset({_S.AUTO_RESOLVED}),
    _S.REJECTED: frozenset(),
    _S.EXPIRED: frozenset(),
    _S.AUTO_RESOLVED: frozenset(),
    _S.ROLLED_BACK: frozenset(),
    _S.SAFE_HOLD: frozenset({_S.CLEARED}),
    _S.INTERRUPTED: frozenset({_S.CLEARED}),
    _S.CLEARED: frozenset(),
}


RELEASING_STATES = frozenset(
    {_S.RESOLVED, _S.AUTO_RESOLVED, _S.REJECTED, _S.EXPIRED, _S.ROLLED_BACK, _S.CLEARED}
)


UNHEALED_ENDS = frozenset({_S.REJECTED, _S.EXPIRED, _S.NEEDS_HUMAN, _S.INTERRUPTED})
"""Ends where no heal ran to completion: each still leaves an outcome row, which a
playbook's record does not count."""

RUNNING_STATES = (_S.APPROVED, _S.EXECUTING, _S.VERIFYING)
"""Approved and maybe started: run by one replica (recorded), cut short by a stop."""


def can_transition(current: IncidentState, new: IncidentState) -> bool:
    return new in TRANSITIONS[current]


def holds_target(current: IncidentState, new: IncidentState) -> bool:
    """Whether this move leaves the plan's target in an unknown state, so GRACE
    must keep its hands off it until a person clears it: a failed rollback, or
    a run cut short after it may have touched the target."""
    touched = current in (_S.EXECUTING, _S.VERIFYING)
    return new is _S.SAFE_HOLD or (new is _S.INTERRUPTED and touched)


def canonical_json(value: Any) -> str:
    """One byte-exact rendering of a value, so hashes of equal plans are equal."""
    return _canonical_encode(value)


# json.dumps with these options would build an encoder per call: one is enough.
_canonical_encode = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False
).encode


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class Alert(Frozen):
    """One normalised alert, whatever its source. Every field is untrusted input."""

    source: str
    source_key: str = Field(description="identity within the source, for idempotent intake")
    name: str
    status: AlertStatus = AlertStatus.FIRING
    severity: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    text: str = ""
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    link: str | None = Field(default=None, description="back to the alert in its source")
    fingerprint: str = Field(
        default="", description="the alert's own identity; from name and labels when not given"
    )
    group: str = Field(
        default="",
        description="alerts sharing a group share one incident; the fingerprint when not given",
    )
    channel: str | None = None
    reporter: str | None = Field(default=None, description="Slack user who posted it, if any")
    thread_ts: str | None = Field(
        default=None, description="the Slack message its incident answers in the thread of"
    )
    received_at: datetime

    @model_validator(mode="after")
    def _identity(self) -> Alert:
        # Frozen models are filled once, here, so every reader sees the same identity.
        if not self.fingerprint:
            identity = canonical_json({"name": self.name, "labels": self.labels})
            object.__setattr__(self, "fingerprint", sha256_hex(identity)[:16])
        if not self.group:
            object.__setattr__(self, "group", self.fingerprint)
        return self


class Diagnosis(Frozen):
    """What GRACE recognised, what it found to act on, and where it looked in vain."""

    pattern_id: str
    problem: str
    explanation: str
    facts: dict[str, str] = Field(
        default_factory=dict, description="what the playbook acts on, as the pattern found it"
    )
    alternatives: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="further candidates for a fact found in text; the allowlist picks",
    )
    looked_for: dict[str, tuple[str, ...]] = Field(
        default_factory=dict, description="facts not found -> where the pattern looked"
    )
    evidence: str = Field(
        default="",
        description="why this playbook: its record, and those of the playbooks it was ranked above",
    )


class Target(Frozen):
    """A thing an executor may touch; only ever built from a config allowlist match."""

    executor: str
    name: str


GRACE = "grace"
"""The actor of what GRACE does by itself, in the audit log and on the records."""

REQUIRED_APPROVALS = {1: 0, 2: 1, 3: 2}
"""Distinct approvals each tier needs: tier 1 heals at once, tier 3 takes two people."""


class PlannedStep(Frozen):
    action: str
    params: dict[str, Any] = Field(default_factory=dict)
    timeout_s: float


class PlannedCheck(Frozen):
    check: str
    params: dict[str, Any] = Field(default_factory=dict)


class PlannedBenchmark(Frozen):
    benchmark: str
    params: dict[str, Any] = Field(default_factory=dict)
    tolerance: float = Field(description="allowed slowdown as a fraction of the before value")


class Plan(Frozen):
    playbook_id: str
    title: str
    tier: int
    target: Target
    steps: tuple[PlannedStep, ...]
    checks: tuple[PlannedCheck, ...]
    benchmarks: tuple[PlannedBenchmark, ...] = ()
    approvers: tuple[str, ...] = Field(
        default=(), description="the playbook's narrower approver list; empty: the tier's"
    )
    required_approvals: int = Field(
        default=-1,
        description="distinct approvals needed before it runs; the tier's when not given",
    )

    @model_validator(mode="after")
    def _tier_default(self) -> Plan:
        # Plans stored before playbooks could tighten approval carry no count: their tier's.
        if self.required_approvals < 0:
            object.__setattr__(self, "required_approvals", REQUIRED_APPROVALS[self.tier])
        return self

    @property
    def hash(self) -> str:
        """Binds an approval to exactly this plan: playbook, parameters and target."""
        return sha256_hex(canonical_json(self.model_dump(mode="json")))[:16]


def at_least_tier(plan: Plan, tier: int) -> Plan:
    """The plan raised to `tier` when it stands lower, with the approvals that tier
    needs (never fewer than the plan asked for); the plan itself otherwise."""
    if plan.tier >= tier:
        return plan
    required = max(plan.required_approvals, REQUIRED_APPROVALS[tier])
    return plan.model_copy(update={"tier": tier, "required_approvals": required})


def lowered_to_tier(plan: Plan, tier: int) -> Plan:
    """The plan at a lower `tier`, asking only what that tier asks: a playbook's own
    stricter rule (approvers, count) was its old tier's, and goes with it."""
    return plan.model_copy(
        update={"tier": tier, "required_approvals": REQUIRED_APPROVALS[tier], "approvers": ()}
    )


class Incident(Frozen):
    id: int
    state: IncidentState
    fingerprint: str = Field(description="the incident key: the group of its alerts")
    alert: Alert = Field(description="the alert that opened it")
    alert_count: int = 1
    firing_count: int = Field(default=1, description="distinct member alerts still firing")
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    diagnosis: Diagnosis | None = None
    plan: Plan | None = None
    reason: str | None = Field(default=None, description="why it ended where it did")
    channel: str | None = None
    card_ts: str | None = None
    created_at: datetime
    updated_at: datetime
    deadline: datetime | None = Field(default=None, description="when a pending approval expires")
    remind_at: datetime | None = Field(default=None, description="when approvers are reminded")
    reminded: bool = False


class Intake(Frozen):
    """What storing one alert did: opened an incident, joined one, or nothing."""

    incident: Incident | None
    opened: bool = False
    all_clear: bool = Field(default=False, description="no member alert of it fires any more")


class Decision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class Approval(Frozen):
    incident_id: int
    user: str
    plan_hash: str
    decision: Decision
    at: datetime
    reason: str | None = None


class Snapshot(Frozen):
    incident_id: int
    target: Target
    location: str
    size_bytes: int
    taken_at: datetime
    state: dict[str, Any] = Field(
        default_factory=dict, description="what the target was like, when a file cannot say"
    )


class StepResult(Frozen):
    action: str
    ok: bool
    detail: str
    seconds: float


class CheckResult(Frozen):
    check: str
    ok: bool
    detail: str


class BenchmarkResult(Frozen):
    benchmark: str
    before_s: float
    after_s: float
    tolerance: float

    @property
    def ok(self) -> bool:
        # A floor of one millisecond keeps timer noise on tiny reads from failing a heal.
        return self.after_s <= max(self.before_s * (1 + self.tolerance), self.before_s + 0.001)


class Verification(Frozen):
    checks: tuple[CheckResult, ...]
    benchmarks: tuple[BenchmarkResult, ...] = ()

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks) and all(b.ok for b in self.benchmarks)


class Outcome(Frozen):
    """One incident's end as learning and the reports read it: a heal that ran
    (`heal`), or an end where none ran to completion, which no record counts."""

    incident_id: int
    playbook_id: str
    success: bool
    seconds: float
    final_state: IncidentState
    at: datetime
    pattern_id: str | None = None
    target_kind: str = Field(default="", description="the executor that acted")
    target: str = ""
    stages: dict[str, float] = Field(
        default_factory=dict, description="seconds per stage: measure, steps, verify, rollback"
    )
    approvers: tuple[str, ...] = ()
    approval_wait_s: float | None = Field(
        default=None, description="from the incident opening to its first approval"
    )
    heal: bool = Field(default=True, description="a heal that ran, counted in its record")


class PlaybookStats(Frozen):
    playbook_id: str
    attempts: int
    successes: int
    median_seconds: float | None

    def summary(self) -> str:
        median = "" if self.median_seconds is None else f", median {self.median_seconds:.1f} s"
        return f"{self.successes}/{self.attempts} succeeded{median}"


class AuditEntry(Frozen):
    seq: int
    at: datetime
    actor: str
    action: str
    incident_id: int | None
    detail: dict[str, Any]
    prev_hash: str
    hash: str


class Pause(Frozen):
    """The kill switch: while set, nothing new runs, tier 1 included."""

    by: str
    reason: str | None = None
    at: datetime


class TargetHold(Frozen):
    """A target GRACE will not act on until a person clears it."""

    target: Target
    incident_id: int
    reason: str
    held_at: datetime


class Availability(Frozen):
    ok: bool
    reason: str = ""
