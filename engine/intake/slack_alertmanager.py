"""Alertmanager's Slack notifications (slack_configs), as they appear in a channel.

Two layouts cover nearly every installation:

- The default templates: one attachment titled with the group's subject,
  `[FIRING:2] HighLatency (api prod)` or `[RESOLVED] HighLatency (api prod)`,
  linked to the Alertmanager UI (`…/#/alerts?receiver=…`), coloured danger or
  good, with no text. The subject holds label *values* only, the group's and
  then (in parentheses) the others common to the whole group, so all it tells
  for sure is the alert name (Alertmanager sorts alertname first) and which
  group this is: the receiver and the group values are the alert's identity.
- The custom text of Prometheus' notification examples, copied everywhere: one
  block per alert of `*Alert:* summary - `severity``, `*Description:* …` and
  `*Details:*` with `• *label:* `value`` lines. Those are real labels: the ones
  common to every alert of the group become the alert's labels, as the group's
  common labels would.

Alertmanager posts through an incoming webhook or an app, so only messages from
integrations are read here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote_plus

from engine.intake.slack_format import (
    AlertParts,
    SlackMessage,
    color_kind,
    common_pairs,
    is_web_url,
    parse_time,
    split_status_title,
    subject_values,
)
from engine.intake.sources import SlackLayout, register_slack_layout
from engine.models import AlertStatus

SEVERITIES = frozenset(
    {"critical", "warning", "info", "error", "page", "major", "minor", "high", "medium", "low"}
)
_RECEIVER = re.compile(r"[?&]receiver=([^&#\s]+)")
_UI = re.compile(r"/#/alerts\b")
_KEY_VALUE = re.compile(r"(?:^|\s)[A-Za-z_][\w.-]*=\S")
_ALERT_START = re.compile(r"^[ \t]*\*Alert:\*", re.MULTILINE)
_ALERT_LINE = re.compile(r"^[ \t]*\*Alert:\*(.*)$", re.MULTILINE)
_DESCRIPTION = re.compile(r"^[ \t]*\*Description:\*(.*)$", re.MULTILINE)
_DETAIL = re.compile(
    r"^[ \t]*[•·-][ \t]*\*([A-Za-z_][A-Za-z0-9_]*):\*[ \t]*(?:`([^`\n]*)`[ \t]*$|(.*)$)",
    re.MULTILINE,
)


@dataclass
class _Alert:
    """One alert's block of the custom text."""

    labels: dict[str, str] = field(default_factory=dict)
    summary: str = ""
    severity: str = ""
    description: str = ""


def parse(message: SlackMessage) -> AlertParts | None:
    if not message.is_bot:
        return None
    subject = split_status_title(message.title)
    alerts = _alerts(message.text)
    if subject is None and not (alerts and _posted_by_alertmanager(message)):
        return None
    if subject and not alerts and _KEY_VALUE.search(subject[1]):
        return None  # `[FIRING:1] Name key=value` is the text format, labels and all
    if subject is not None:
        status, rest = subject
    else:
        status, rest = _status_by_color(message), ""
    group_values, common_values = subject_values(rest)
    labelled = [alert.labels for alert in alerts if alert.labels]
    labels = common_pairs(labelled)
    name = labels.get("alertname") or next(iter(group_values), None)
    name = name or next((a["alertname"] for a in labelled if "alertname" in a), None)
    if not name:
        return None
    first = alerts[0] if alerts else _Alert()
    severity = labels.get("severity") or first.severity or _severity_word(group_values)
    receiver = _receiver(message)
    if receiver:
        labels.setdefault("receiver", receiver)
    return AlertParts(
        name=name,
        status=status,
        severity=severity or _severity_word(common_values),
        labels=labels,
        annotations=_annotations(message, first, group_values, common_values),
        link=_link(message),
        starts_at=parse_time(message.value("Started", "Starts at", "Start time", "Since")),
        # Without real labels the subject is all there is to tell two groups apart.
        identity=None if labelled else {"receiver": receiver, "group": " ".join(group_values)},
    )


def _alerts(text: str) -> list[_Alert]:
    starts = [match.start() for match in _ALERT_START.finditer(text)] or [0]
    ends = [*starts[1:], len(text)]
    alerts = [_alert(text[start:end]) for start, end in zip(starts, ends, strict=True)]
    return [alert for alert in alerts if alert.labels or alert.summary]


def _alert(chunk: str) -> _Alert:
    alert = _Alert()
    for key, quoted, bare in _DETAIL.findall(chunk):
        alert.labels.setdefault(key, quoted or bare.strip())
    if line := _ALERT_LINE.search(chunk):
        alert.summary, alert.severity = _summary_and_severity(line.group(1))
    if description := _DESCRIPTION.search(chunk):
        alert.description = description.group(1).strip()
    return alert


def _summary_and_severity(line: str) -> tuple[str, str]:
    """`Pod is crash looping - `critical`` as (summary, severity), without regex backtracking."""
    line = line.strip()
    if line.endswith("`"):
        head, tick, severity = line[:-1].rpartition("`")
        head = head.rstrip()
        if tick and head.endswith("-"):
            return head[:-1].rstrip(), severity.strip()
    return line, ""


def _annotations(
    message: SlackMessage, first: _Alert, group_values: list[str], common_values: list[str]
) -> dict[str, str]:
    found = {
        "summary": first.summary,
        "description": first.description,
        "runbook_url": _link_about(message, "runbook", "spiral_note_pad"),
        "graph_url": _link_about(message, "graph", "chart_with_upwards_trend"),
    }
    if not first.labels:
        found["group_values"] = " ".join(group_values)
        found["common_values"] = " ".join(common_values)
    return {key: value for key, value in found.items() if value}


def _link(message: SlackMessage) -> str | None:
    if message.title_link and is_web_url(message.title_link):
        return message.title_link
    if ui := message.first_link(_UI):
        return ui.string
    web = (link.url for link in message.links if is_web_url(link.url))
    return _link_about(message, "graph", "chart_with_upwards_trend") or next(web, None)


def _link_about(message: SlackMessage, *words: str) -> str:
    """The first web link whose label or URL mentions one of `words`."""
    for link in message.links:
        where = f"{link.label} {link.url}".casefold()
        if is_web_url(link.url) and any(word in where for word in words):
            return link.url
    return ""


def _receiver(message: SlackMessage) -> str:
    match = message.first_link(_RECEIVER)
    return unquote_plus(match.group(1)) if match else ""


def _posted_by_alertmanager(message: SlackMessage) -> bool:
    return "alertmanager" in message.sender.casefold() or message.first_link(_UI) is not None


def _status_by_color(message: SlackMessage) -> AlertStatus:
    kinds = [color_kind(color) for color in message.colors]
    return AlertStatus.RESOLVED if kinds and kinds[0] == "green" else AlertStatus.FIRING


def _severity_word(values: list[str]) -> str | None:
    return next((value for value in values if value.casefold() in SEVERITIES), None)


register_slack_layout(SlackLayout("alertmanager", parse, order=20))
