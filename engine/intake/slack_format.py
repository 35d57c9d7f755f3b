"""Slack's markup undone, and the text conventions integrations' alerts share.

What every alert parser reads: `SlackMessage` (one message, read by
engine/intake/slack_reader.py from its text, blocks and attachments),
`AlertParts` (what a parser makes of it), and the helpers for the text itself:
Slack's `<url|label>` markup, `Key: value` lines, Alertmanager's `[FIRING:2]`
subjects, colour bars, timestamps and decorated titles.

Everything here is untrusted input and each helper costs time linear in its text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Literal

from engine.intake.limits import in_range_or_none
from engine.models import AlertStatus

MAX_PAIRS = 500
"""`Key: value` pairs read from one message."""
MARKUP = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")
"""Slack's `<target|label>`: a link, a mention, a channel or a special like `<!here>`."""
_LINE_PAIR = re.compile(r"^[*_]*([A-Za-z][\w .()/#-]{0,40}?)[*_]*\s*:[*_]*(?:\s+|$)(.*)$")
_SEGMENT = re.compile(r"\s{2,}|\t|\s\|\s")
_SHOWN_URL = re.compile(r" \((?:https?|mailto):[^\s()]*\)")
_DECORATION = re.compile(r"^(?:\s|:[A-Za-z0-9_+'-]+:|[^\w\[(<\"'])+")
_STATUS_TITLE = re.compile(
    r"^\[(FIRING|RESOLVED)(?::\d+)?(?:,\s*RESOLVED:\d+)?\]\s*(.*)$", re.IGNORECASE | re.DOTALL
)
_TIME = re.compile(
    r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2})?)(?:\.\d+)?\s*(Z|UTC|GMT|[+-]\d{2}:?\d{2})?"
)


@dataclass(frozen=True)
class Link:
    url: str
    label: str


@dataclass(frozen=True)
class SlackMessage:
    """One Slack message, read: what every alert parser looks at."""

    text: str
    """Readable text of the whole message, markup undone; PARSE_LIMIT per part at most."""
    raw_text: str = ""
    """The top-level `text` exactly as posted, Slack markup intact."""
    title: str = ""
    """The alert's headline: attachment title, else header block, else first line."""
    title_mark: str = ""
    """What was stripped from the front of the title (emoji often carry the state)."""
    title_link: str | None = None
    links: tuple[Link, ...] = ()
    fields: tuple[tuple[str, str], ...] = ()
    """Attachment fields and Block Kit section fields, as (title, value)."""
    pairs: tuple[tuple[str, str], ...] = ()
    """Every `Key: value` found: the fields first, then lines of the readable text."""
    colors: tuple[str, ...] = ()
    footers: tuple[str, ...] = ()
    fallbacks: tuple[str, ...] = ()
    sender: str = ""
    """The posting app's name (bot_profile.name or username), if any."""
    is_bot: bool = False
    is_thread_reply: bool = False

    def value(self, *keys: str) -> str | None:
        """The first non-empty value whose key is one of `keys` (case-insensitive)."""
        wanted = {key.casefold() for key in keys}
        return next((v for k, v in self.pairs if v and k.casefold() in wanted), None)

    def first_link(self, pattern: re.Pattern[str]) -> re.Match[str] | None:
        """The first link (title link first) whose URL matches `pattern`."""
        urls = [self.title_link] if self.title_link else []
        urls.extend(link.url for link in self.links)
        return next((m for url in urls if (m := pattern.search(url))), None)


@dataclass(frozen=True)
class AlertParts:
    """What an integration parser reads from a message; slack.py makes the Alert.

    `identity`, when given, is what makes two messages the same alert (a Sentry
    issue id, a Datadog monitor and scope): the fingerprint is derived from it
    instead of from name and labels, so a resolution whose message carries fewer
    labels than the firing one still closes the same incident.
    """

    name: str
    status: AlertStatus = AlertStatus.FIRING
    severity: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    link: str | None = None
    starts_at: datetime | None = None
    identity: Mapping[str, str] | None = None
    text: str | None = None
    """What patterns search instead of the whole message (a person's statements)."""


def unformat(text: str, *, urls: bool = False) -> str:
    """Undo Slack's markup: `<url|label>`, `<@U…>`, `<!channel>`, `&amp;` and friends.

    A link becomes its label; with `urls`, a labelled web link becomes
    "label (url)" so readable text keeps where it points.
    """
    text = MARKUP.sub(lambda m: _render(m.group(1), m.group(2), urls), text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def line_pairs(text: str, limit: int = MAX_PAIRS) -> Iterator[tuple[str, str]]:
    """`Key: value` pairs of the lines of `text`; a line may hold several, spaced apart.

    Integrations lay details out as "Project: backend    Short ID: BACKEND-4A"
    or "*Namespace:* AWS/EC2"; the key is short and starts with a letter.
    """
    count = 0
    for line in text.split("\n"):
        for segment in _SEGMENT.split(line.strip()):
            if count >= limit:
                return
            if match := _LINE_PAIR.match(segment):
                count += 1
                # A value's link was shown as "label (url)"; the value is the label.
                yield match.group(1).strip(), bare(_SHOWN_URL.sub("", match.group(2)))


def split_status_title(title: str) -> tuple[AlertStatus, str] | None:
    """Alertmanager's subject, `[FIRING:2] …` or `[RESOLVED] …` (Grafana's too)."""
    match = _STATUS_TITLE.match(title.strip())
    if match is None:
        return None
    return AlertStatus(match.group(1).lower()), match.group(2).strip()


def subject_values(rest: str) -> tuple[list[str], list[str]]:
    """The group label values and common label values of `Name job (api prod)`.

    Alertmanager's default subject writes label *values* only: the group's, then
    in parentheses those common to every alert of the group but not grouped on.
    (Split in code: a regex here backtracks quadratically over long blank runs.)
    """
    rest = rest.strip()
    head, paren, common = rest[:-1].rpartition("(") if rest.endswith(")") else ("", "", "")
    if paren and not any(mark in head or mark in common for mark in "()"):
        return head.split(), common.split()
    return rest.split(), []


def color_kind(color: str) -> Literal["red", "green", "yellow"] | None:
    """What an attachment's colour bar says: Slack's names, or roughly the hue of a hex."""
    named = {"danger": "red", "good": "green", "warning": "yellow"}
    value = color.strip().lstrip("#").lower()
    if value in named:
        return named[value]  # type: ignore[return-value]
    if not re.fullmatch(r"[0-9a-f]{6}", value):
        return None
    red, green, blue = (int(value[i : i + 2], 16) for i in (0, 2, 4))
    if green > red + 24 and green > blue:
        return "green"
    if red > green + 24 and red > blue + 24:
        return "yellow" if green > 0.55 * red else "red"
    return None


def common_pairs(dicts: Iterable[Mapping[str, str]]) -> dict[str, str]:
    """The pairs every dict shares: a group's common labels, from its alerts' labels."""
    dicts = list(dicts)
    if not dicts:
        return {}
    return {k: v for k, v in dicts[0].items() if all(d.get(k) == v for d in dicts[1:])}


def parse_time(text: str | None) -> datetime | None:
    """The first ISO-like instant in `text` (Go's `2024-11-26 03:00:00 +0000 UTC` too).

    Without a zone it is taken as UTC, which is what these integrations print.
    """
    match = _TIME.search(text or "")
    if match is None:
        return None
    day, clock, zone = match.groups()
    try:
        found = datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=_zone(zone))
    except ValueError:  # a 30th of February, or a zone of +99:00
        return None
    return in_range_or_none(found)


def clean_title(text: str) -> tuple[str, str]:
    """(title, mark): a headline without the emoji and bold markers around it."""
    text = text.strip()
    decoration = _DECORATION.match(text)
    mark = decoration.group(0) if decoration else ""
    return text[len(mark) :].strip().rstrip("*_~ ").strip(), mark.strip(" *_~")


def is_web_url(url: str) -> bool:
    return url.lower().startswith(("http://", "https://"))


def _render(target: str, label: str | None, urls: bool) -> str:
    if target.startswith("@"):
        return "@" + (label or target[1:])
    if target.startswith("#"):
        return "#" + (label or target[1:])
    if target.startswith("!"):
        special = target[1:].split("^", 1)[0]
        if special in ("channel", "here", "everyone"):
            return "@" + special
        return label or ""
    if urls and label and label != target and is_web_url(target):
        return f"{label} ({target})"
    return label or target


def bare(value: str) -> str:
    """A value without the bold, italics and code marks around it."""
    return value.strip().strip("*_`").strip()


def _zone(zone: str | None) -> timezone:
    if zone is None or zone in ("Z", "UTC", "GMT"):
        return UTC
    sign = -1 if zone[0] == "-" else 1
    digits = zone[1:].replace(":", "")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
