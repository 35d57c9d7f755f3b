"""Slack messages as a person reads them: the demo's transcript, and what tests read."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bot.devslack.message import Message

RULE = "─" * 40
_LINK = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")


class Reader:
    """Renders with the workspace's names, so mentions read as people and channels."""

    def __init__(self, users: Mapping[str, str], channels: Mapping[str, str]) -> None:
        self.users = users
        self.channels = channels

    def _plain(self, text: str) -> str:
        """mrkdwn as a reader sees it: mentions and links resolved, entities unescaped."""

        def link(m: re.Match[str]) -> str:
            target, label = m.group(1), m.group(2)
            if target.startswith("@"):
                return "@" + (label or self.users.get(target[1:], target[1:]))
            if target.startswith("#"):
                return "#" + (label or self.channels.get(target[1:], target[1:]))
            if target.startswith("!date^"):  # the reader's own time; the fallback here
                return label or target
            if target.startswith("!subteam^"):
                return "@" + (label or target.removeprefix("!subteam^"))
            if target.startswith("!"):
                return "@" + (label or target[1:].split("^")[0])
            return label or target

        return html.unescape(_LINK.sub(link, text))

    def _text(self, obj: Any) -> str:
        return self._plain(obj.get("text", "")) if isinstance(obj, dict) else ""

    def _element_label(self, el: Mapping[str, Any]) -> str:
        if el.get("type") == "button":
            return f"[{self._text(el.get('text'))}]"
        return f"[{self._text(el.get('placeholder')) or el.get('type', '?')} ▾]"

    def _render_block(self, b: Mapping[str, Any]) -> list[str]:
        kind = b.get("type")
        if kind in ("header", "markdown"):
            return [self._text(b.get("text")) if kind == "header" else self._plain(b["text"])]
        if kind == "section":
            lines = self._text(b.get("text")).splitlines() if "text" in b else []
            lines += [line for f in b.get("fields", []) for line in self._text(f).splitlines()]
            if isinstance(b.get("accessory"), dict) and b["accessory"].get("type") != "image":
                lines.append(self._element_label(b["accessory"]))
            return lines
        if kind == "context":
            return [
                " · ".join(self._text(e) for e in b.get("elements", []) if e.get("type") != "image")
            ]
        if kind == "divider":
            return [RULE]
        if kind == "actions":
            return [" ".join(self._element_label(e) for e in b.get("elements", []))]
        if kind == "image":
            return [f"[image: {b.get('alt_text', '')}]"]
        if kind == "input":
            return [f"{self._text(b.get('label'))}: [________]"]
        if kind == "rich_text":
            return "".join(_rich_text(b)).splitlines()
        return [f"[{kind}]"]

    def message(self, message: Message) -> str:
        """Block Kit as a person reads it; ``text`` only when there is nothing richer."""
        lines = [line for b in message.blocks for line in self._render_block(b)]
        if not message.blocks:
            lines = self._plain(message.text).splitlines()
        for att in message.attachments:
            body = [self._plain(att[k]) for k in ("pretext", "title", "text") if att.get(k)]
            body += [f"{f.get('title', '')}: {f.get('value', '')}" for f in att.get("fields", [])]
            body += [line for b in att.get("blocks", []) for line in self._render_block(b)]
            lines += [
                "▌ " + line
                for text in (body or [att.get("fallback", "")])
                for line in text.splitlines()
            ]
        return "\n".join(lines)

    def _author(self, m: Message) -> str:
        if m.username:
            return m.username
        name = self.users.get(m.user or "", m.user or m.bot_id or "?")
        return f"{name} (bot)" if m.bot_id else name

    def entry(self, m: Message, indent: str) -> list[str]:
        head = f"{indent}[{m.ts}] {self._author(m)}"
        if not m.edits:
            return [head, *_indent(self.message(m), indent + "  ")]
        deeper = indent + "    "
        first = _indent(self.message(m.edits[0]), deeper)
        return [
            f"{head} (edited {len(m.edits)}x)",
            f"{indent}  first posted version:",
            *first,
            f"{indent}  final version:",
            *_indent(self.message(m), deeper),
        ]

    def transcript(
        self, channel: str, messages: Sequence[Message], thread: Callable[[str], list[Message]]
    ) -> str:
        """The channel as a reader scrolls it: each message, its edits, its thread below it."""
        lines = [f"#{self.channels.get(channel, channel)}"]
        for m in messages:
            lines += [RULE, *self.entry(m, "")]
            replies = thread(m.ts)
            if replies:
                count = f"{len(replies)} repl{'y' if len(replies) == 1 else 'ies'}"
                lines.append(f"  thread ({count}):")
                for r in replies:
                    lines += self.entry(r, "    ")
        return "\n".join(lines)


def _indent(text: str, prefix: str) -> list[str]:
    return [prefix + line for line in (text.splitlines() or [""])]


def _rich_text(node: Any) -> list[str]:
    if isinstance(node, dict):
        if node.get("type") == "text":
            return [node.get("text", "")]
        if node.get("type") == "link":
            return [node.get("text") or node.get("url", "")]
        return [t for child in node.get("elements", []) for t in _rich_text(child)]
    return []
