"""Any Slack message as one `SlackMessage`, whatever shape its sender gave it.

Integrations post alerts in three shapes, often mixed in one message: top-level
`text` in Slack's markup, Block Kit `blocks`, and legacy `attachments` (title,
fields, footer, colour bar). `read_message` flattens them once, so the alert
parsers never walk Slack's JSON themselves.

Everything here is untrusted input: a value of the wrong type is skipped, lists
are read up to `MAX_ITEMS` entries, strings up to `PARSE_LIMIT` characters, and
the readable text of each part (text, blocks, attachments) stops growing at
`PARSE_LIMIT`, so a hostile message costs bounded time whatever its size. (The
alert's text is cut again, to MAX_TEXT, when the Alert is built.)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from engine.intake.limits import MAX_TEXT
from engine.intake.slack_format import (
    MARKUP,
    MAX_PAIRS,
    Link,
    SlackMessage,
    bare,
    clean_title,
    line_pairs,
    unformat,
)

PARSE_LIMIT = 8 * MAX_TEXT
"""Characters of a message read for parsing; enough for a long multi-alert group."""

MAX_ITEMS = 100
"""Entries read from any one list (attachments, blocks, fields, elements)."""

_URL = re.compile(r"^(?:https?|mailto):", re.IGNORECASE)
_PREVIEW_KEYS = ("from_url", "original_url", "is_app_unfurl", "is_msg_unfurl", "is_share")
_TITLE_ATTACHMENT, _TITLE_HEADER, _TITLE_SECTION, _TITLE_TEXT = range(4)


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
        pairs=tuple(reader.fields) + tuple(line_pairs(text, MAX_PAIRS - len(reader.fields))),
        colors=tuple(reader.colors),
        footers=tuple(reader.footers),
        fallbacks=tuple(reader.fallbacks),
        sender=sender or _string(event.get("username")),
        is_bot=bool(event.get("bot_id"))
        or event.get("subtype") == "bot_message"
        or isinstance(profile, Mapping),
        is_thread_reply=bool(thread_ts) and thread_ts != ts,
    )


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
        for match in MARKUP.finditer(text):
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
            links = [m.group(1) for m in MARKUP.finditer(raw.split("\n", 1)[0])]
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
                self.fields.append((name.strip(), bare(unformat(value))))
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


def _field_pair(text: str) -> tuple[str, str] | None:
    """A Block Kit field, "*Title*\\nvalue" or "*Title:* value", as (title, value)."""
    head, sep, rest = text.partition("\n")
    if not sep:
        head, sep, rest = text.partition(":")
    head = head.strip().strip("*_ ").rstrip(":").strip("*_ ")
    if not sep or not head or len(head) > 60:
        return None
    return head, bare(rest)


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
