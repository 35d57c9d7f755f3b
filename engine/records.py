"""What the storage ports hand back to the bot: plain values, no SQL.

Outbox rows and cards, storms' rollups, Slack deliveries, the pages people
read (`/grace status`, `/grace incidents`, App Home) and the audit log's
checks. Every store (SQLite today, PostgreSQL next) returns these, so `bot/`
reads them without importing a store (see engine/storage_ports.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, NamedTuple, TypeVar

from engine.models import (
    Approval,
    Incident,
    IncidentState,
    Outcome,
    Pause,
    Snapshot,
    StepResult,
    Verification,
)

T = TypeVar("T")

# -- the Slack outbox --------------------------------------------------------


class Card(NamedTuple):
    """Where an incident's live card is, and the thread its story goes in."""

    channel: str
    ts: str
    thread_ts: str | None = None
    """The person's message it answers, when it was posted in that thread."""

    @property
    def story_ts(self) -> str:
        return self.thread_ts or self.ts


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One unsettled Slack write, as the worker needs it."""

    id: int
    channel: str
    lane: str
    kind: str
    incident_id: int | None
    user_id: str | None
    payload: dict[str, Any]
    coalesce_key: str | None
    attempts: int
    not_before: datetime
    created_at: datetime
    sending: bool
    """An earlier attempt may have reached Slack: look it up before posting again."""
    priority: int = 10


# -- storms: rollups instead of cards that would wait -------------------------


@dataclass(frozen=True)
class StormRule:
    """When a new card waits too long: the bot's rule, as a store applies it."""

    max_ahead: int
    """Writes queued ahead of a card (as urgent or more) that the card may wait behind."""
    held_since: datetime
    """A rollup that took an incident at or after this still takes the channel's new ones."""
    joined_since: datetime
    """A rollup that took an incident at or after this is joined; an older one is left be."""
    demotable: int
    """Queued cards of this priority or less urgent, never tried yet, join the rollup
    too: they would wait as long, and one rollup write shows them all."""


@dataclass(frozen=True)
class Rollup:
    id: int
    channel: str
    ts: str | None
    members: list[Incident]
    """Oldest first."""
    carded: frozenset[int]
    """Members whose own card was queued (someone must act, or asked)."""


@dataclass(frozen=True)
class Placement:
    """Where an incident is shown: its own card (rollup None), or a rollup, which
    `joined` incidents (it, and queued cards that went with it) now belong to."""

    rollup: int | None = None
    joined: tuple[int, ...] = ()


# -- the inbox of Slack deliveries -------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    """One accepted delivery, as its handler needs it."""

    id: int
    kind: str
    payload: dict[str, Any]


# -- reports for people: /grace status, /grace incidents ---------------------


@dataclass(frozen=True)
class Page(Generic[T]):
    """The first rows of a list, and how many there are in all."""

    items: tuple[T, ...]
    total: int


@dataclass(frozen=True)
class Pending:
    """An incident waiting for approval, and who approved its current plan so far."""

    incident: Incident
    approved_by: tuple[str, ...]


@dataclass(frozen=True)
class Backlog:
    """A lane of the Slack outbox with writes not yet delivered."""

    lane: str
    channel: str
    waiting: int
    oldest: datetime


@dataclass(frozen=True)
class StatusRows:
    """What `/grace status` reads from the database, as of one moment."""

    open_counts: dict[IncidentState, int]
    pending: Page[Pending]
    backlog: tuple[Backlog, ...]


@dataclass(frozen=True)
class StateChange:
    """One `incident.<state>` row of the audit log."""

    state: IncidentState
    at: datetime
    actor: str
    reason: str | None = None
    deadline: datetime | None = None


@dataclass(frozen=True)
class StepRun:
    result: StepResult
    at: datetime


@dataclass(frozen=True)
class VerificationRun:
    verification: Verification
    at: datetime


@dataclass(frozen=True)
class IncidentStory:
    """Everything stored about one incident, in the order it happened."""

    incident: Incident
    members: int
    """Distinct alerts of its group (`incident.alert_count` counts every delivery)."""
    states: tuple[StateChange, ...]
    approvals: tuple[Approval, ...]
    snapshots: tuple[Snapshot, ...]
    steps: tuple[StepRun, ...]
    verifications: tuple[VerificationRun, ...]
    outcome: Outcome | None


# -- App Home -----------------------------------------------------------------


@dataclass(frozen=True)
class Viewer:
    """Someone who opened GRACE's Home, and GRACE's last answer to them there."""

    user: str
    channel: str
    """Their App Home's channel: an answer told there is shown on the Home."""
    opened_at: datetime
    notice: str | None = None
    notice_at: datetime | None = None


@dataclass(frozen=True)
class WeekNumbers:
    """What happened from `start` (Monday 00:00 UTC of the ISO week) until now."""

    start: datetime
    opened: int
    entered: dict[IncidentState, int]
    """Incidents that entered each end the Home counts this week (resolved, rolled
    back, safe hold, needs a human, auto-resolved); one may enter two."""
    approvals: int
    median_to_resolve: timedelta | None
    """From the first alert to resolved, over the incidents resolved this week."""


@dataclass(frozen=True)
class HomeRows:
    """What every Home shows, read in one transaction."""

    pause: Pause | None
    pending: Page[Pending]
    """Incidents awaiting approval, the soonest to expire first; each reader's are among them."""
    open: Page[Incident]
    """The newest incidents not ended, and how many there are."""
    week: WeekNumbers


# -- the audit log's checks ---------------------------------------------------

GENESIS_HASH = "0" * 64
"""The `prev_hash` of the audit log's first row."""


@dataclass(frozen=True)
class AuditReport:
    """What verifying the audit chain found.

    `head_hash` is the last row's hash: the chain cannot tell that rows were
    cut off its end, so an operator who wants that guarantee records the head
    somewhere else and compares.
    """

    ok: bool
    rows: int
    first_bad_seq: int | None = None
    problem: str = ""
    head_hash: str = GENESIS_HASH


@dataclass(frozen=True)
class DigestReport:
    """What verifying the alert digests found: `rows` is how many `alerts.received`
    rows were checked, `problems` names each one whose alerts do not match."""

    rows: int
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class StoreInfo:
    """What `grace check` says of the database GRACE_DB names, without changing it."""

    kind: str
    """"sqlite" or "postgresql"."""
    where: str
    """The file, or the server's URL without user and password."""
    server: str | None
    """PostgreSQL's version; None for SQLite."""
    current: int
    """The schema version applied (0: a database GRACE never opened)."""
    newest: int
    """The newest migration this GRACE ships; start-up applies the rest."""
