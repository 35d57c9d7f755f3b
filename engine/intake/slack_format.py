"""Slack messages as readable text, whatever shape their sender gave them.

Integrations post alerts in three shapes, often mixed in one message: top-level
`text` in Slack's markup, Block Kit `blocks`, and legacy `attachments` (title,
fields, footer, colour bar). Each alert parser needs the same few things from
them (the title, its link, the links, the `key: value` pairs, the colour), so
`read_message` flattens any message into one `SlackMessage` once, and the parsers
never walk Slack's JSON themselves.

Everything here is untrusted input: a value of the wrong type is skipped, lists
are read up to `MAX_ITEMS` entries, strings up to `PARSE_LIMIT` characters, and
the readable text of each part (text, blocks, attachments) stops growing at
`PARSE_LIMIT`, so a hostile message costs bounded time whatever its size. (The
alert's text is cut again, to MAX_TEXT, when the Alert is built.)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

from engine.intake.limits import MAX_TEXT, in_range_or_none
from engine.models import AlertStatus

PARSE_LIMIT = 8 * MAX_TEXT
"""Characters of a message read for parsing; enough for a long multi-alert group."""

MAX_ITEMS = 100
"""Entries read from any one list (attachments, blocks, fields, elements)."""

_MAX_PAIRS = 500
_MARKUP = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")
_URL = re.compile(r"^(?:https?|mailto):", re.IGNORECASE)
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
_PREVIEW_KEYS = ("from_url", "original_url", "is_app_unfurl", "is_msg_unfurl", "is_share")
_TITLE_ATTACHMENT, _TITLE_HEADER, _TITLE_SECTION, _TITLE_TEXT = range(4)


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


def read_message(event: Mapping[str, Any]) -> SlackMessage:
    """Read text, blocks and legacy attachments of a Slack `message` event alike."""
    reader = _Reader()
    raw_text = _string(event.get("text"))
    blocks = _items(event.get("blocks"))
    if raw_text:
        reader.title(unformat(raw_text).split("\n", 1)[0], None, _TITLE_TEXT)
        reader.line(reader.mrkdwn(raw_text))
    # A person's message carries its text twice: as `text` and as rich_text blocks.
    if not (raw_text and blocks and all(b.get("type") == "rich_text" for b in blocks)):
        reader.new_part()
        reader.blocks(blocks)
    reader.new_part()  # so a flood of blocks cannot hide the attachments
    for attachment in _items(event.get("attachments")):
        reader.attachment(attachment)
    profile = event.get("bot_profile")
    sender = _string(profile.get("name")) if isinstance(profile, Mapping) else ""
    ts, thread_ts = _string(event.get("ts")), _string(event.get("thread_ts"))
    text = "\n".join(reader.lines)
    title, mark, title_link = reader.best_title()
    return SlackMessage(
        text=text,
        raw_text=raw_text,
        title=title,
        title_mark=mark,
        title_link=title_link,
        links=tuple(reader.links),
        fields=tuple(reader.fields),
        pairs=tuple(reader.fields) + tuple(line_pairs(text, _MAX_PAIRS - len(reader.fields))),
        colors=tuple(reader.colors),
        footers=tuple(reader.footers),
        fallbacks=tuple(reader.fallbacks),
        sender=sender or _string(event.get("username")),
        is_bot=bool(event.get("bot_id"))
        or event.get("subtype") == "bot_message"
        or isinstance(profile, Mapping),
        is_thread_reply=bool(thread_ts) and thread_ts != ts,
    )


def unformat(text: str, *, urls: bool = False) -> str:
    """Undo Slack's markup: `<url|label>`, `<@U…>`, `<!channel>`, `&amp;` and friends.

    A link becomes its label; with `urls`, a labelled web link becomes
    "label (url)" so readable text keeps where it points.
    """
    text = _MARKUP.sub(lambda m: _render(m.group(1), m.group(2), urls), text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def line_pairs(text: str, limit: int = _MAX_PAIRS) -> Iterator[tuple[str, str]]:
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
                yield match.group(1).strip(), _bare(_SHOWN_URL.sub("", match.group(2)))


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


# -- reading ------------------------------------------------------------------


class _Reader:
    """Accumulates the readable lines, links and fields of one message, within budget."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.links: list[Link] = []
        self.fields: list[tuple[str, str]] = []
        self.colors: list[str] = []
        self.footers: list[str] = []
        self.fallbacks: list[str] = []
        self._titles: list[tuple[int, str, str, str | None]] = []
        self._budget = PARSE_LIMIT
        self._seen_urls: set[str] = set()

    def new_part(self) -> None:
        """Text, blocks and attachments each get PARSE_LIMIT characters of lines."""
        self._budget = PARSE_LIMIT

    def line(self, text: str) -> bool:
        text = text.strip()
        if not text or self._budget <= 0:
            return False
        text = text[: self._budget]
        self._budget -= len(text) + 1
        self.lines.append(text)
        return True

    def link(self, url: str, label: str) -> None:
        url = url.strip()
        if url and url not in self._seen_urls and len(self.links) < MAX_ITEMS:
            self._seen_urls.add(url)
            self.links.append(Link(url, label.strip()))

    def title(self, text: str, link: str | None, rank: int) -> None:
        title, mark = clean_title(text)
        if title:
            self._titles.append((rank, title, mark, link or None))

    def best_title(self) -> tuple[str, str, str | None]:
        if not self._titles:
            return "", "", None
        _, title, mark, link = min(self._titles, key=lambda entry: entry[0])
        return title, mark, link

    def mrkdwn(self, raw: object) -> str:
        """Readable text of a markup string; its web links are remembered."""
        text = _string(raw)
        for match in _MARKUP.finditer(text):
            target, label = match.group(1), match.group(2)
            if _URL.match(target):
                self.link(unformat(target), unformat(label or target))
        return unformat(text, urls=True)

    def blocks(self, blocks: Iterable[Mapping[str, Any]]) -> None:
        for block in blocks:
            if self._budget <= 0:
                return
            kind = block.get("type")
            if kind == "header":
                text = self._text_object(block.get("text"))
                self.title(text, None, _TITLE_HEADER)
                self.line(text)
            elif kind == "section":
                self._section(block)
            elif kind == "context":
                texts = (self._text_object(e) for e in _items(block.get("elements")))
                self.line("  ".join(t for t in texts if t))
            elif kind == "rich_text":
                self.line(self._rich_text(_items(block.get("elements"))))
            elif kind == "actions":
                for element in _items(block.get("elements")):
                    self._button(element)

    def _section(self, block: Mapping[str, Any]) -> None:
        text_object = block.get("text")
        text = self._text_object(text_object)
        if text:
            raw = _string(text_object.get("text")) if isinstance(text_object, Mapping) else ""
            first = unformat(raw).split("\n", 1)[0]
            links = [m.group(1) for m in _MARKUP.finditer(raw.split("\n", 1)[0])]
            urls = [unformat(url) for url in links if _URL.match(url)]
            self.title(first, urls[0] if len(urls) == 1 else None, _TITLE_SECTION)
            self.line(text)
        for item in _items(block.get("fields")):
            text = self._text_object(item)
            if self.line(text) and (pair := _field_pair(text)):
                self.fields.append(pair)
        accessory = block.get("accessory")
        if isinstance(accessory, Mapping):
            self._button(accessory)

    def _text_object(self, value: object) -> str:
        if not isinstance(value, Mapping):
            return ""
        if value.get("type") == "mrkdwn":
            return self.mrkdwn(value.get("text"))
        return _string(value.get("text"))  # plain_text is shown as written

    def _button(self, element: Mapping[str, Any]) -> None:
        url = _string(element.get("url"))
        text = element.get("text")
        label = self._text_object(text) if isinstance(text, Mapping) else _string(text)
        if url:
            self.link(url, label)
            self.line(f"{label} ({url})" if label else url)

    def _rich_text(self, elements: Iterable[Mapping[str, Any]], depth: int = 0) -> str:
        parts: list[str] = []
        for element in elements:
            kind = element.get("type")
            children = _items(element.get("elements"))
            if kind == "rich_text_list" and depth < 4:
                items = (self._rich_text([child], depth + 1) for child in children)
                parts.append("\n" + "\n".join(f"• {item}" for item in items) + "\n")
            elif kind in ("rich_text_section", "rich_text_quote", "rich_text_preformatted"):
                if depth < 4:
                    parts.append(self._rich_text(children, depth + 1))
                if kind != "rich_text_section":
                    parts.append("\n")
            else:
                parts.append(self._rich_leaf(kind, element))
        return "".join(parts)

    def _rich_leaf(self, kind: object, element: Mapping[str, Any]) -> str:
        if kind == "link":
            url, label = _string(element.get("url")), _string(element.get("text"))
            self.link(url, label)
            return f"{label} ({url})" if label and label != url else url
        if kind in ("user", "usergroup"):
            return "@" + _string(element.get("user_id") or element.get("usergroup_id"))
        if kind == "channel":
            return "#" + _string(element.get("channel_id"))
        if kind == "broadcast":
            return "@" + _string(element.get("range"))
        if kind == "emoji":
            return f":{_string(element.get('name'))}:"
        if kind == "date":
            return _string(element.get("fallback"))
        return _string(element.get("text"))

    def attachment(self, attachment: Mapping[str, Any]) -> None:
        if self._budget <= 0 or any(attachment.get(key) for key in _PREVIEW_KEYS):
            return  # a link preview or a shared message: not what was posted
        if color := _string(attachment.get("color")):
            self.colors.append(color)
        before = len(self.lines)
        self.line(self.mrkdwn(attachment.get("pretext")))
        self.line(self.mrkdwn(attachment.get("author_name")))
        title, title_link = _string(attachment.get("title")), _string(attachment.get("title_link"))
        if title:
            self.title(unformat(title), title_link, _TITLE_ATTACHMENT)
            self.line(self.mrkdwn(title))
        if title_link:
            self.link(title_link, unformat(title))
        self.line(self.mrkdwn(attachment.get("text")))
        for item in _items(attachment.get("fields")):
            if self._budget <= 0:
                break
            name, value = unformat(_string(item.get("title"))), _string(item.get("value"))
            shown = self.mrkdwn(value)
            if self.line(f"{name}: {shown}" if name else shown) and name:
                self.fields.append((name.strip(), _bare(unformat(value))))
        self.blocks(_items(attachment.get("blocks")))
        for action in _items(attachment.get("actions")):
            self._button(action)
        if footer := self.mrkdwn(attachment.get("footer")):
            self.footers.append(unformat(_string(attachment.get("footer"))))
            self.line(footer)
        fallback = unformat(_string(attachment.get("fallback")))
        if fallback:
            self.fallbacks.append(fallback)
            if len(self.lines) == before:
                self.line(fallback)


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


def _field_pair(text: str) -> tuple[str, str] | None:
    """A Block Kit field, "*Title*\\nvalue" or "*Title:* value", as (title, value)."""
    head, sep, rest = text.partition("\n")
    if not sep:
        head, sep, rest = text.partition(":")
    head = head.strip().strip("*_ ").rstrip(":").strip("*_ ")
    if not sep or not head or len(head) > 60:
        return None
    return head, _bare(rest)


def _bare(value: str) -> str:
    """A value without the bold, italics and code marks around it."""
    return value.strip().strip("*_`").strip()


def _zone(zone: str | None) -> timezone:
    if zone is None or zone in ("Z", "UTC", "GMT"):
        return UTC
    sign = -1 if zone[0] == "-" else 1
    digits = zone[1:].replace(":", "")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))


def _string(value: object) -> str:
    """A str as given (cut to PARSE_LIMIT), a number as text, anything else as ""."""
    if isinstance(value, str):
        return value[:PARSE_LIMIT]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""


def _items(value: object) -> list[Mapping[str, Any]]:
    """The mappings of a list, at most MAX_ITEMS; anything else is no items."""
    if not isinstance(value, list):
        return []
    return [item for item in value[:MAX_ITEMS] if isinstance(item, Mapping)]
