"""What an intake pass (storage/intake.py) keeps while it works: each
delivery, each touched incident and member alert as the pass leaves them,
and how one alert counts into them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.models import Alert, Incident
from storage.db import parse_time, time_text


@dataclass(frozen=True, slots=True)
class Delivery:
    """One `Store.ingest_alerts` call: its alerts, its key and when it was made."""

    alerts: Sequence[Alert]
    key: str
    now: datetime


@dataclass(slots=True)
class Member:
    """One member alert (incident, fingerprint) as the pass leaves it."""

    firing: bool
    first_text: str
    last_text: str
    count: int = 0


@dataclass(slots=True)
class Group:
    """A group's active incident as the pass so far left it; written back once, at the end."""

    incident_id: int
    alert_count: int
    firing_count: int
    first_text: str
    last_text: str
    updated_text: str
    """When the last delivery that counted an alert into it was made."""
    row: Mapping[str, Any] | None = None
    """The incident as read, or None when this pass opened it."""
    row_key: tuple[Any, ...] = ()
    """The row's columns that intake does not count: its key for reusing models."""
    opener: Alert | None = None
    opened_at: datetime | None = None
    members: dict[str, Member] = field(default_factory=dict)
    wanted: set[str] = field(default_factory=set)
    """Fingerprints of the pass's alerts, when the incident was stored before."""
    stored_firing: dict[str, bool] = field(default_factory=dict)
    """Which of those were stored members, and whether each fires."""
    model: Incident | None = None
    """As the latest delivery of the pass left it."""


@dataclass(slots=True)
class DeliveryWork:
    """One delivery that stores alerts, as the pass works through it."""

    delivery: Delivery
    fresh: list[tuple[int, Alert]]
    """Its alerts (with their index) that are neither stored nor repeated."""
    position: int
    """Where its Intakes go in the pass's results."""
    now_text: str = field(init=False)
    now: datetime = field(init=False)
    placed: list[tuple[int, Alert, Group | None, bool]] = field(default_factory=list)
    """Each fresh alert with its incident, and whether it opened it."""
    opened: list[Group] = field(default_factory=list)
    touched: dict[int, Group] = field(default_factory=dict)
    """The incidents it counted alerts into, by id, in order."""
    outcomes: list[tuple[int, Group, bool, bool]] = field(default_factory=list)
    digested: list[list[str]] = field(default_factory=list)
    first_id: int = 0
    last_id: int = 0

    def __post_init__(self) -> None:
        self.now_text = time_text(self.delivery.now)
        # Parsed back from the stored text, so models built here equal later reads.
        self.now = parse_time(self.now_text)


def fresh_alerts(alerts: Sequence[Alert], stored: set[tuple[str, str]]) -> list[tuple[int, Alert]]:
    """The alerts (with their index) not stored before; each is added to `stored`,
    so a second alert with its key, here or in a later delivery, is a repeat."""
    found: list[tuple[int, Alert]] = []
    for index, alert in enumerate(alerts):
        key = (alert.source, alert.source_key)
        if key not in stored:
            stored.add(key)
            found.append((index, alert))
    return found


def count_alert(group: Group, fingerprint: str, firing: bool, seen_text: str) -> bool:
    """Count one stored alert into its incident; True when it is an all-clear."""
    member = group.members.get(fingerprint)
    if member is None:
        was_firing = group.stored_firing.get(fingerprint, False)
        member = group.members[fingerprint] = Member(was_firing, seen_text, seen_text)
    else:
        was_firing = member.firing
        # Stored times are fixed-width UTC text, so text order is time order.
        if seen_text < member.first_text:
            member.first_text = seen_text
        elif seen_text > member.last_text:
            member.last_text = seen_text
    member.firing = firing
    member.count += 1
    group.alert_count += 1
    group.firing_count += firing - was_firing
    if seen_text < group.first_text:
        group.first_text = seen_text
    elif seen_text > group.last_text:
        group.last_text = seen_text
    return not firing and group.firing_count == 0
