"""Alerts posted as plain messages in an alert channel.

People and simple integrations write alerts like
`[FIRING:1] SQLiteWALTooLarge db_path=/var/lib/app/app.db severity=warning`.
A message with no alert name or no labels is chatter and yields nothing.

A person's message needs only a name and a label: the channel is an alert
channel, and people write alerts tersely. A bot's message must say it is an
alert (a `[FIRING]`/`[RESOLVED]` prefix or an `alertname=` label): apps post
deploy notices and reports full of `key=value`, and those are not alerts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.intake.limits import MAX_NAME, cap_pairs, cap_text
from engine.intake.slack_format import AlertParts, SlackMessage, is_web_url, unformat
from engine.intake.sources import SlackLayout, register_slack_layout
from engine.models import AlertStatus

_STATUS = re.compile(r"^\s*\[(FIRING|RESOLVED)(?::\d+)?\]\s*", re.IGNORECASE)
_LABEL = re.compile(r'(?<![^\s,;(\[])([A-Za-z_][A-Za-z0-9_.-]*)=("(?:[^"\\]|\\.)*"|[^\s,;)\]]+)')
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_:.-]{2,127}$")


@dataclass(frozen=True)
class _TextAlert:
    name: str
    status: AlertStatus
    labels: dict[str, str]
    explicit: bool
    """It said it is an alert: a status prefix or an alertname label."""


def parse(message: SlackMessage) -> AlertParts | None:
    """The alert written as text in `message`, or None for chatter."""
    found = _read(message.raw_text or message.text)
    if found is None or (message.is_bot and not found.explicit):
        return None
    link = next((link.url for link in message.links if is_web_url(link.url)), None)
    return AlertParts(
        name=found.name,
        status=found.status,
        severity=found.labels.get("severity"),
        labels=found.labels,
        link=link,
    )


def _read(text: str) -> _TextAlert | None:
    plain = unformat(text)
    status = AlertStatus.FIRING
    explicit = False
    if match := _STATUS.match(plain):
        status = AlertStatus(match.group(1).lower())
        plain = plain[match.end() :]
        explicit = True
    labels = cap_pairs((key, _unquote(raw)) for key, raw in _LABEL.findall(plain))
    alertname = labels.pop("alertname", None)
    name = alertname or _first_name(_LABEL.sub(" ", plain))
    if name is None or not labels:
        return None
    return _TextAlert(cap_text(name, MAX_NAME), status, labels, explicit or alertname is not None)


def _first_name(text: str) -> str | None:
    return next((word for word in text.split() if _NAME.match(word)), None)


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return re.sub(r"\\(.)", r"\1", raw[1:-1])
    return raw


register_slack_layout(SlackLayout("text", parse, order=90, thread_replies=False))
