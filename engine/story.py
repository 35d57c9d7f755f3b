"""What happened in an incident, told one event at a time.

The engine says what happened; bot/ decides how it reads in Slack.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from engine.autonomy import TierChange, TierProposal
from engine.models import (
    Diagnosis,
    Pause,
    Plan,
    PlaybookStats,
    Snapshot,
    StepResult,
    Verification,
)


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True)


class Planned(_Event):
    diagnosis: Diagnosis
    plan: Plan


class NeedsHuman(_Event):
    reason: str
    held: str | None = None
    """The target a safe hold keeps GRACE off, when that is the reason: a person clears it."""


class Cleared(_Event):
    """The alert resolved by itself before anyone acted."""


class Held(_Event):
    """GRACE is paused: the approved plan waits for `/grace resume`."""

    pause: Pause


class Reminder(_Event):
    """Once, before a pending approval expires."""

    deadline: datetime
    approvers: tuple[str, ...]


class Expired(_Event):
    """Nobody decided in time: the plan will not run."""

    after_s: float


class Approved(_Event):
    user: str
    automatic: bool = False
    waits: bool = False
    """GRACE is paused: the plan runs once it is resumed."""


class Paused(_Event):
    """A notice for every alert channel: an admin pulled the kill switch."""

    pause: Pause


class Resumed(_Event):
    """A notice for every alert channel: the kill switch is lifted."""

    user: str
    waiting: int
    """Approved plans that waited and now run."""


class Rejected(_Event):
    user: str
    reason: str | None = None


class SnapshotTaken(_Event):
    snapshot: Snapshot


class StepFinished(_Event):
    result: StepResult


class Verified(_Event):
    verification: Verification


class RolledBack(_Event):
    why: str
    restored: tuple[Snapshot, ...]


class RestoreFailed(_Event):
    """Rollback stopped at a snapshot it could not restore: the target is held."""

    why: str
    error: str
    target: str
    restored: tuple[Snapshot, ...] = ()
    not_restored: tuple[Snapshot, ...] = ()


class BreakerChanged(_Event):
    """A target's circuit breaker opened (calls now fail fast) or closed again."""

    circuit: str
    opened: bool
    retry_at: datetime | None = None
    cause: str | None = None


class Interrupted(_Event):
    """GRACE stopped mid-run (a crash, a kill): nothing is re-run silently."""

    was: str
    target: str
    snapshots: tuple[Snapshot, ...]
    touched: bool


class HoldCleared(_Event):
    """A person said the target is fine again: GRACE may act on it."""

    user: str
    target: str


class Learned(_Event):
    stats: PlaybookStats
    success: bool


class Demoted(_Event):
    """The playbook's record fell below the floor: it needs approval again from now on."""

    change: TierChange


class PromotionProposed(_Event):
    """The playbook's record clears the bar: an admin may promote it, in the alert channel."""

    proposal: TierProposal


StoryEvent = (
    Planned
    | NeedsHuman
    | Cleared
    | Held
    | Reminder
    | Expired
    | Approved
    | Rejected
    | SnapshotTaken
    | StepFinished
    | Verified
    | RolledBack
    | RestoreFailed
    | BreakerChanged
    | Interrupted
    | HoldCleared
    | Learned
    | Demoted
    | PromotionProposed
    | Paused
    | Resumed
)
