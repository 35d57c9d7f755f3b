"""Alerts posted as plain messages in an alert channel.

People and simple integrations write alerts like
`[FIRING:1] SQLiteWALTooLarge db_path=/var/lib/app/app.db severity=warning`.
A message with no alert name or no labels is chatter and yields nothing.
"""

from __future__ import annotations

import re
from datetime import datetime

from engine.models import Alert, AlertStatus

_STATUS = re.compile(r"^\s*\[(FIRING|RESOLVED)(?::\d+)?\]\s*", re.IGNORECASE)
_LABEL = re.compile(r'(?<![^\s,;(\[])([A-Za-z_][A-Za-z0-9_.-]*)=("(?:[^"\\]|\\.)*"|[^\s,;)\]]+)')
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_:.-]{2,127}$")
_LINK = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")
_MAX_LABELS = 64
_MAX_VALUE = 1024


def parse_message(
    text: str,
    *,
    channel: str,
    ts: str,
    reporter: str | None,
    received_at: datetime,
) -> Alert | None:
    plain = _unformat(text)
    status = AlertStatus.FIRING
    if match := _STATUS.match(plain):
        status = AlertStatus(match.group(1).lower())
        plain = plain[match.end() :]
    labels: dict[str, str] = {}
    for key, raw in _LABEL.findall(plain)[:_MAX_LABELS]:
        labels[key] = _unquote(raw)[:_MAX_VALUE]
    name = labels.pop("alertname", None) or _first_name(_LABEL.sub(" ", plain))
    if name is None or not labels:
        return None
    return Alert(
        source="slack",
        source_key=f"{channel}/{ts}",
        name=name,
        status=status,
        severity=labels.get("severity"),
        labels=labels,
        text=text,
        channel=channel,
        reporter=reporter,
        received_at=received_at,
    )


def _first_name(text: str) -> str | None:
    return next((word for word in text.split() if _NAME.match(word)), None)


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return re.sub(r"\\(.)", r"\1", raw[1:-1])
    return raw


def _unformat(text: str) -> str:
    """Undo Slack's message formatting: links to their label, entities to characters."""
    text = _LINK.sub(lambda m: m.group(2) if m.group(2) is not None else m.group(1), text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
