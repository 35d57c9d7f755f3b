"""A person's own words in an alert channel: "db at /var/lib/app/orders.db is locked again".

People report trouble in sentences, not labels. This layout keeps what a person
*states* and drops what cannot be a report: questions ("is orders.db locked?"),
plans and hypotheses ("web-1 will be unhealthy during the deploy"), denials
("orders.db isn't locked any more") and all-clears ("fixed, back to normal").
The statements become the alert's text, and the built-in patterns for people
(`labels: {integration: person}`) read the problem and the target from it.

Nothing here decides whether to answer: a message is answered only when a
pattern recognises a problem and the target it names is allowlisted (the
listener proposes before it stores anything), so chatter stays unanswered.
"""

from __future__ import annotations

import re

from engine.intake.slack_format import AlertParts, SlackMessage
from engine.intake.sources import SlackLayout, register_slack_layout

PERSON = "person"
"""The layout's name, and so `labels["integration"]` of a person's words."""

MAX_WORDS_CHARS = 1000
"""Longer messages are discussions or write-ups, not reports."""

_NAME_CHARS = 80

_CLAUSES = re.compile(r"(?<=[.!?;])\s+|\n+|,\s+|\s+(?:-|–|—)\s+|\s+(?:but|and then)\s+", re.I)
_QUESTION_START = re.compile(
    r"^(?:is|are|was|were|does|do|did|can|could|should|would|will|has|have|had|why|what|"
    r"how|when|where|who|which|anyone|anybody|any idea|any ideas|does anyone|is it)\b",
    re.IGNORECASE,
)
_HYPOTHETICAL = re.compile(
    r"\b(?:will|going to|gonna|might|may|expect(?:ed)?|planned|scheduled|maintenance|about to|"
    r"if|unless|once|in case|would|could|should|let's|lets|please ignore|during the)\b",
    re.IGNORECASE,
)
_TROUBLE = (
    r"(?:locked|unhealthy|down|failing|failed|broken|crash\w*|full|slow|stuck|dead|erroring|"
    r"exited|an issue|a problem|bloated|growing|flapping|oom\w*)"
)
_DENIED = re.compile(
    rf"(?:\bnot|n't|\bno longer|\bnever|\bno)\s+(?:\w+\s+){{0,2}}?{_TROUBLE}\b", re.IGNORECASE
)
_SIGNALS = re.compile(
    r"\b(?:lock\w*|unhealthy|health ?checks?|healthcheck|down|fail\w*|broken|crash\w*|full|"
    r"filling|disk|\d{2,3} ?%|connections|hangs?|"
    r"out of (?:disk|space|memory)|slow|stuck|dead|died|erroring|errors?|exit\w*|oom\w*|"
    r"killed|bloated|growing|grew|huge|fragmented|vacuum|debug|verbose|noisy|wal|5\d\ds?|5xx|"
    r"time(?:s|d)? ?out|timing out|not (?:responding|running|healthy|starting|ready)|"
    r"unresponsive|unavailable|busy|sqlite_busy|"
    r"restart\w*|marshal|magic number|pycache|stale|cpu|latency|connections|status checks?)\b",
    re.IGNORECASE,
)
"""Words a report of trouble contains; a message without any is chatter. The
patterns for people decide which problem, if any, the statements describe."""
_ALL_CLEAR = re.compile(
    r"\b(?:fixed|resolved|recovered|back up|back to normal|healthy again|working again|"
    r"works again|all good|false alarm|nvm|never ?mind|ignore (?:this|that|it)|"
    r"solved|sorted|mitigated|no action needed)\b",
    re.IGNORECASE,
)


def parse(message: SlackMessage) -> AlertParts | None:
    """What a person states, or None when nothing in the message can be a report."""
    if message.is_bot:
        return None
    words = message.text.strip()
    if not words or len(words) > MAX_WORDS_CHARS or _ALL_CLEAR.search(words):
        return None
    said = statements(words)
    troubled = [clause for clause in said if _SIGNALS.search(clause)]
    if not troubled:
        return None
    # The troubled statements first: what they name comes before what the
    # others name ("web is fine, but the api is down" is about the api).
    context = [clause for clause in said if clause not in troubled]
    return AlertParts(name=_name(words), text="\n".join(troubled + context))


def statements(words: str) -> list[str]:
    """The clauses that state something: not a question, a plan or a denial."""
    return [
        clause
        for clause in (part.strip() for part in _CLAUSES.split(words))
        if clause and _states(clause)
    ]


def _states(clause: str) -> bool:
    return not (
        clause.endswith("?")
        or _QUESTION_START.match(clause)
        or _HYPOTHETICAL.search(clause)
        or _DENIED.search(clause)
    )


def _name(words: str) -> str:
    """The card's title: the message's first line, cut at a word."""
    first = words.split("\n", 1)[0].strip()
    if len(first) <= _NAME_CHARS:
        return first
    return first[:_NAME_CHARS].rsplit(" ", 1)[0].rstrip(",;:") + "…"


register_slack_layout(SlackLayout(PERSON, parse, order=95, thread_replies=False))
