"""In-memory fakes of the engine's ports, faithful to the contracts in engine/ports.py."""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from engine.autonomy import ProposalState, TierChange, TierProposal
from engine.models import (
    RUNNING_STATES,
    Alert,
    AlertStatus,
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
    can_transition,
    holds_target,
)
from engine.ports import ExecutorSpec, TargetRefused, TransientError, WaitingParams
from engine.story import PromotionProposed, StoryEvent


class FixedClock:
    """Time the test moves: by `step` at every reading (so stored events keep their
    order), and by `current += ...` when the test says so."""

    def __init__(self, step: timedelta = timedelta(milliseconds=1)) -> None:
        self.current = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
        self.step = step

    def now(self) -> datetime:
        self.current += self.step
        return self.current


@dataclass
class MemoryStore:
    clock: FixedClock
    incidents: dict[int, Incident] = field(default_factory=dict)
    deliveries: set[str] = field(default_factory=set)
    members: dict[int, dict[str, AlertStatus]] = field(default_factory=dict)
    alert_keys: set[tuple[str, str]] = field(default_factory=set)
    approval_rows: list[Approval] = field(default_factory=list)
    snapshot_rows: list[Snapshot] = field(default_factory=list)
    action_rows: list[tuple[int, StepResult]] = field(default_factory=list)
    verification_rows: list[tuple[int, Verification]] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    tiers: dict[str, TierChange] = field(default_factory=dict)
    proposals: dict[int, TierProposal] = field(default_factory=dict)
    audit_rows: list[tuple[str, str, int | None, dict[str, Any]]] = field(default_factory=list)
    pause: Pause | None = None
    held: list[TargetHold] = field(default_factory=list)
    replica: str = "local"
    """The replica this store writes for: the runner a move into a running state records."""
    run_by: dict[int, str] = field(default_factory=dict)
    beats: dict[str, datetime] = field(default_factory=dict)
    """Each replica's last heartbeat."""

    async def ingest_alerts(self, alerts: Sequence[Alert], delivery_key: str) -> list[Intake]:
        if delivery_key in self.deliveries:
            return []
        self.deliveries.add(delivery_key)
        intakes = [self._ingest(alert) for alert in alerts]
        # As the port says: each Intake carries its incident as the whole delivery left it.
        return [
            i
            if i.incident is None
            else i.model_copy(update={"incident": self.incidents[i.incident.id]})
            for i in intakes
        ]

    def _ingest(self, alert: Alert) -> Intake:
        if (alert.source, alert.source_key) in self.alert_keys:
            return Intake(incident=None)
        self.alert_keys.add((alert.source, alert.source_key))
        now = self.clock.now()
        active = next(
            (
                i
                for i in self.incidents.values()
                if i.fingerprint == alert.group and i.state.holds_group
            ),
            None,
        )
        if active is None and alert.status is AlertStatus.RESOLVED:
            return Intake(incident=None)
        if active is None:
            active = Incident(
                id=len(self.incidents) + 1,
                state=IncidentState.OPEN,
                fingerprint=alert.group,
                alert=alert,
                channel=alert.channel,
                alert_count=0,
                created_at=now,
                updated_at=now,
                first_seen=now,
            )
            self.members[active.id] = {}
        members = self.members[active.id]
        opened = not members
        members[alert.fingerprint] = alert.status
        firing = sum(s is AlertStatus.FIRING for s in members.values())
        joined = active.model_copy(
            update={"alert_count": active.alert_count + 1, "firing_count": firing, "last_seen": now}
        )
        self.incidents[joined.id] = joined
        self.audit_rows.append(("grace", "alert.received", joined.id, {}))
        resolved = alert.status is AlertStatus.RESOLVED
        return Intake(incident=joined, opened=opened, all_clear=resolved and firing == 0)

    async def get_incident(self, incident_id: int) -> Incident | None:
        return self.incidents.get(incident_id)

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
        if not can_transition(expected, new):
            raise ValueError(f"{expected} -> {new} is not a transition")
        current = self.incidents[incident_id]
        if current.state is not expected:
            return None
        changes: dict[str, Any] = {"state": new, "updated_at": self.clock.now()}
        given = (
            ("diagnosis", diagnosis),
            ("plan", plan),
            ("reason", reason),
            ("deadline", deadline),
            ("remind_at", remind_at),
        )
        for name, value in given:
            if value is not None:
                changes[name] = value
        moved = current.model_copy(update=changes)
        self.incidents[incident_id] = moved
        if new in RUNNING_STATES:
            self.run_by[incident_id] = self.replica
        self.audit_rows.append((actor, f"incident.{new.value}", incident_id, {"from": expected}))
        if moved.plan is not None and holds_target(expected, new):
            hold = TargetHold(
                target=moved.plan.target,
                incident_id=incident_id,
                reason=reason or new.value,
                held_at=self.clock.now(),
            )
            self.held.append(hold)
        return moved

    async def add_approval(self, approval: Approval) -> bool:
        if any(
            a.incident_id == approval.incident_id and a.user == approval.user
            for a in self.approval_rows
        ):
            return False
        self.approval_rows.append(approval)
        self.audit_rows.append(
            (approval.user, f"approval.{approval.decision.value}", approval.incident_id, {})
        )
        return True

    async def approvals(self, incident_id: int) -> list[Approval]:
        return [a for a in self.approval_rows if a.incident_id == incident_id]

    async def add_snapshot(self, snapshot: Snapshot) -> None:
        self.snapshot_rows.append(snapshot)

    async def snapshots(self, incident_id: int) -> list[Snapshot]:
        return [s for s in self.snapshot_rows if s.incident_id == incident_id]

    async def add_action(self, incident_id: int, result: StepResult) -> None:
        self.action_rows.append((incident_id, result))

    async def add_verification(self, incident_id: int, verification: Verification) -> None:
        self.verification_rows.append((incident_id, verification))

    async def record_outcome(self, outcome: Outcome) -> PlaybookStats:
        self.outcomes.append(outcome)
        return await self.playbook_stats(outcome.playbook_id)

    async def playbook_tiers(self) -> dict[str, TierChange]:
        return dict(self.tiers)

    async def change_tier(self, change: TierChange) -> None:
        for proposal in list(self.proposals.values()):
            if proposal.playbook_id == change.playbook_id and proposal.state is ProposalState.OPEN:
                closed = {"state": ProposalState.DISMISSED, "decided_by": change.by}
                self.proposals[proposal.id] = proposal.model_copy(update=closed)
        self.tiers[change.playbook_id] = change

    async def propose_tier(self, proposal: TierProposal, *, quiet_runs: int) -> TierProposal | None:
        mine = [p for p in self.proposals.values() if p.playbook_id == proposal.playbook_id]
        if any(p.state is ProposalState.OPEN for p in mine) or any(
            p.state is ProposalState.DISMISSED
            and (p.decided_runs or 0) > proposal.attempts - quiet_runs
            for p in mine
        ):
            return None
        stored = proposal.model_copy(update={"id": len(self.proposals) + 1})
        self.proposals[stored.id] = stored
        self.audit_rows.append(("grace", "promotion.proposed", None, {"proposal": stored.id}))
        return stored

    async def tier_proposal(self, proposal_id: int) -> TierProposal | None:
        return self.proposals.get(proposal_id)

    async def open_proposals(self) -> list[TierProposal]:
        return [p for p in self.proposals.values() if p.state is ProposalState.OPEN]

    async def decide_proposal(self, decided: TierProposal, change: TierChange | None) -> bool:
        if self.proposals[decided.id].state is not ProposalState.OPEN:
            return False
        self.proposals[decided.id] = decided
        self.audit_rows.append(
            (str(decided.decided_by), f"promotion.{decided.state}", None, {"proposal": decided.id})
        )
        if change is not None:
            self.tiers[change.playbook_id] = change
        return True

    async def playbook_stats(self, playbook_id: str) -> PlaybookStats:
        mine = [o for o in self.outcomes if o.playbook_id == playbook_id]
        return PlaybookStats(
            playbook_id=playbook_id,
            attempts=len(mine),
            successes=sum(o.success for o in mine),
            median_seconds=statistics.median(o.seconds for o in mine) if mine else None,
        )

    async def due_to_expire(self, now: datetime) -> list[Incident]:
        return [
            i
            for i in self.incidents.values()
            if i.state is IncidentState.AWAITING_APPROVAL and i.deadline and i.deadline <= now
        ]

    async def due_for_reminder(self, now: datetime) -> list[Incident]:
        return [
            i
            for i in self.incidents.values()
            if i.state is IncidentState.AWAITING_APPROVAL
            and i.remind_at
            and i.remind_at <= now
            and not i.reminded
        ]

    async def mark_reminded(self, incident_id: int) -> bool:
        if self.incidents[incident_id].reminded:
            return False
        self.incidents[incident_id] = self.incidents[incident_id].model_copy(
            update={"reminded": True}
        )
        return True

    async def paused(self) -> Pause | None:
        return self.pause

    async def set_pause(self, pause: Pause | None, *, actor: str) -> None:
        self.pause = pause
        self.audit_rows.append((actor, "grace.paused" if pause else "grace.resumed", None, {}))

    async def incidents_in(self, states: Iterable[IncidentState]) -> list[Incident]:
        wanted = set(states)
        return [i for i in self.incidents.values() if i.state in wanted]

    def heartbeat(self, replica: str) -> None:
        self.beats[replica] = self.clock.now()

    async def orphaned_runs(self, replica: str, ttl_s: float, *, own: bool) -> list[Incident]:
        cutoff = self.clock.now() - timedelta(seconds=ttl_s)

        def gone(incident_id: int) -> bool:
            runner = self.run_by.get(incident_id)
            if runner is None or runner == replica:
                return runner is None or own
            beat = self.beats.get(runner)
            return beat is None or beat < cutoff

        running = await self.incidents_in(RUNNING_STATES)
        return sorted((i for i in running if gone(i.id)), key=lambda i: i.id)

    async def target_hold(self, target: Target) -> TargetHold | None:
        return next((h for h in self.held if h.target == target), None)

    async def holds(self) -> list[TargetHold]:
        return list(self.held)

    async def clear_holds(self, name: str, *, actor: str) -> list[TargetHold]:
        lifted = [h for h in self.held if h.target.name == name]
        self.held = [h for h in self.held if h.target.name != name]
        for hold in lifted:
            self.audit_rows.append((actor, "target.cleared", hold.incident_id, {}))
        return lifted

    async def audit(
        self,
        actor: str,
        action: str,
        *,
        incident_id: int | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        self.audit_rows.append((actor, action, incident_id, dict(detail or {})))


@dataclass
class RecordingNotifier:
    """Records what Slack would show; cards are read from the store when "sent",
    as the real outbox renders them at delivery time."""

    store: MemoryStore
    cards: dict[int, list[Incident]] = field(default_factory=dict)
    thread: dict[int, list[StoryEvent]] = field(default_factory=dict)
    private: list[tuple[str, str, str]] = field(default_factory=list)
    told_once: set[str] = field(default_factory=set)
    notices: list[StoryEvent] = field(default_factory=list)
    proposals: list[PromotionProposed] = field(default_factory=list)

    async def post_card(self, incident: Incident) -> None:
        self.cards[incident.id] = [self.store.incidents[incident.id]]

    async def announce(self, event: StoryEvent) -> None:
        self.notices.append(event)

    async def propose_promotion(self, event: PromotionProposed) -> None:
        self.proposals.append(event)

    async def tell_once(self, incident: Incident, event: StoryEvent, key: str) -> None:
        if key not in self.told_once:
            self.told_once.add(key)
            await self.tell_thread(incident, event)

    async def post_card_once(self, incident: Incident) -> bool:
        if incident.id in self.cards:
            return False
        await self.post_card(incident)
        return True

    async def update_card(self, incident: Incident) -> None:
        self.cards[incident.id].append(self.store.incidents[incident.id])

    async def tell_thread(self, incident: Incident, event: StoryEvent) -> None:
        self.thread.setdefault(incident.id, []).append(event)

    async def tell_user(self, channel: str, user: str, text: str) -> None:
        self.private.append((channel, user, text))

    def kinds(self, incident_id: int) -> list[str]:
        return [type(e).__name__ for e in self.thread.get(incident_id, [])]


@dataclass
class FakeDirectory:
    groups: dict[str, frozenset[str]] = field(default_factory=dict)
    lookups: int = 0

    async def members(self, group: str) -> frozenset[str]:
        self.lookups += 1
        return self.groups.get(group, frozenset())


class _NoParams(BaseModel):
    pass


class _SettlesParams(WaitingParams):
    """A check whose own wait, left to its default, outlasts a short call deadline."""

    within_s: float = Field(default=1, ge=0, le=600)


@dataclass
class FakeExecutor:
    """A target that is a dict in memory; its snapshot is a copy of it."""

    name: str = "fake"
    state: dict[str, Any] = field(default_factory=lambda: {"value": "broken"})
    check_ok: bool = True
    step_ok: bool = True
    step_gate: asyncio.Event | None = None
    step_started: asyncio.Event = field(default_factory=asyncio.Event)
    restore_fails: bool = False
    unrestorable: set[str] = field(default_factory=set)  # snapshot locations restore refuses
    step_errors: list[BaseException] = field(default_factory=list)
    down: str | None = None  # when set, every call but restore fails transiently with it
    check_takes_s: float = 0.0  # a check that waits for the target to settle
    calls: int = 0
    runs: int = 0
    restores: int = 0
    restored: list[str] = field(default_factory=list)
    snapshots_taken: int = 0
    spec: ExecutorSpec = field(
        default_factory=lambda: ExecutorSpec(
            actions={"fix": _NoParams},
            checks={"fixed": WaitingParams, "settles": _SettlesParams},
            benchmarks={"speed": _NoParams},
        )
    )

    def resolve_target(self, value: str, allowlist: Sequence[str]) -> Target:
        if value not in allowlist:
            raise TargetRefused(f"{value!r} is not in the fake allowlist")
        return Target(executor=self.name, name=value)

    async def available(self) -> Availability:
        return Availability(ok=True)

    def describe_snapshot(self, target: Target) -> str:
        return f"a copy of {target.name} in memory"

    def _reach(self) -> None:
        self.calls += 1
        if self.down is not None:
            raise TransientError(self.down)

    async def snapshot(self, target: Target, incident_id: int) -> Snapshot:
        self._reach()
        self.snapshots_taken += 1
        self.saved = dict(self.state)
        return Snapshot(
            incident_id=incident_id,
            target=target,
            location=f"memory-{self.snapshots_taken}",
            size_bytes=1,
            taken_at=datetime(2026, 11, 24, tzinfo=UTC),
        )

    async def run(self, step: PlannedStep, target: Target, snapshot: Snapshot) -> StepResult:
        self._reach()
        self.runs += 1
        self.step_started.set()
        if self.step_errors:
            raise self.step_errors.pop(0)
        if self.step_gate is not None:
            await self.step_gate.wait()
        self.state["value"] = "fixed" if self.step_ok else "worse"
        return StepResult(action=step.action, ok=self.step_ok, detail="did it", seconds=0.01)

    async def check(self, check: PlannedCheck, target: Target) -> CheckResult:
        self._reach()
        await asyncio.sleep(self.check_takes_s)
        ok = self.check_ok and self.state["value"] == "fixed"
        return CheckResult(check=check.check, ok=ok, detail=self.state["value"])

    async def measure(self, benchmark: PlannedBenchmark, target: Target) -> float:
        self._reach()
        return 0.01

    async def restore(self, snapshot: Snapshot) -> None:
        if self.restore_fails or snapshot.location in self.unrestorable:
            raise OSError("disk gone")
        self.restores += 1
        self.restored.append(snapshot.location)
        self.state = dict(self.saved)
