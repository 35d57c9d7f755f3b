"""Storms people can read: which Slack write goes first, and when a new card
would wait so long that its incident is shown as a rollup line instead.

Slack takes about one message a second per channel. In a wide storm every
card and thread line queues behind the others, so the last card shows
minutes late. GRACE orders each channel's writes (a card someone must act
on, a rollup or a notice first; other cards next; thread chatter last; the
most severe first within each) and, when a new card would wait more than a
few seconds, shows the incident as a line of one message per channel,
updated in place. Someone who must act on an incident still gets its card;
anyone can ask for one from the rollup.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from engine.models import Incident, IncidentState
from engine.records import StormRule

S = IncidentState

CARD_DELAY_S = 3.0
"""How long a new card may wait behind its channel's queued writes."""
HOLD = timedelta(seconds=30)
"""Once a channel rolls up, its new incidents keep joining the rollup this long
after the last one did, so a storm's incidents do not flip between the two."""
JOIN = timedelta(minutes=10)
"""A rollup that took an incident this recently is joined; later, a new one is
posted (the old one has scrolled away)."""

NEEDS_SOMEONE = frozenset({S.AWAITING_APPROVAL, S.ROLLED_BACK, S.SAFE_HOLD, S.INTERRUPTED})
"""States in which a person must act: the incident gets its own card, storm or not.
`needs_human` is not among them: in a storm of alerts GRACE has no playbook
for, every incident is one, and their cards would be the flood."""

URGENT, CARD, STORY = 0, 10, 20
"""Priority classes, lowest first; severity adds 0 to 2 within each."""

_SEVERE = frozenset(
    {"critical", "crit", "fatal", "emergency", "emerg", "alert", "page", "error", "err",
     "high", "disaster", "p1", "p2", "sev1", "sev2", "sev-1", "sev-2", "major"}
)  # fmt: skip
_WARNING = frozenset(
    {"warning", "warn", "medium", "average", "moderate", "p3", "sev3", "sev-3", "minor"}
)


def severity_rank(severity: str | None) -> int:
    """0 for what pages people, 1 for warnings, 2 for the rest (info, unknown, none)."""
    word = (severity or "").strip().lower()
    return 0 if word in _SEVERE else 1 if word in _WARNING else 2


def card_priority(incident: Incident) -> int:
    needs = incident.state in NEEDS_SOMEONE
    return (URGENT if needs else CARD) + severity_rank(incident.alert.severity)


def story_priority(incident: Incident) -> int:
    return STORY + severity_rank(incident.alert.severity)


@dataclass(frozen=True)
class Storms:
    """The rule for one GRACE: its outbox's per-channel rate and burst."""

    rate: float
    burst: int

    def rule(self, now: datetime) -> StormRule:
        # The bucket lets `burst` go at once, then `rate` a second.
        max_ahead = max(int(CARD_DELAY_S * self.rate) + self.burst - 1, 0)
        return StormRule(max_ahead, now - HOLD, now - JOIN, CARD)
