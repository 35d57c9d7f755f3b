"""Grafana alerting's Slack contact point, as its messages appear in a channel.

Grafana's unified alerting (8 to 11, grafana/alerting's receivers/slack) posts
one attachment with the default templates:

- title: the subject, `[FIRING:1] HighCPU (prod Infra web-1)`, also
  `[FIRING:2, RESOLVED:1] …` and `[RESOLVED] …`; title_link: the alert's
  generator URL when all alerts share one, else `…/alerting/list`;
- footer "Grafana v10.4.1", colour #D63232 firing and #36a64f resolved;
- text: `**Firing**` and `**Resolved**` sections, one block per alert of
  `Value: A=93.2`, `Labels:` and `Annotations:` with ` - name = value` lines,
  then `Source:`, `Silence:`, `Dashboard:` and `Panel:` URLs.

Templated contact points and other senders put that same text in Block Kit
blocks or in the message text; it is read the same wherever it is. The labels
every alert of the notification shares become the alert's labels, as a group's
common labels would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from engine.intake.slack_format import (
    AlertParts,
    SlackMessage,
    common_pairs,
    is_web_url,
    split_status_title,
    subject_values,
)
from engine.intake.sources import SlackLayout, register_slack_layout
from engine.models import AlertStatus

_SECTION = re.compile(r"^[ \t]*\*{1,2}(Firing|Resolved)\*{1,2}[ \t]*$", re.M | re.IGNORECASE)
_VALUE = re.compile(r"^[ \t]*Value:", re.MULTILINE)
_PAIR = re.compile(r"^[ \t]*-[ \t]*([^=\n]+)=[ \t]?(.*)$")
_URL_LINE = re.compile(r"^[ \t]*(Source|Silence|Dashboard|Panel):[ \t]*(\S+)")
_GRAFANA_FOOTER = re.compile(r"^Grafana v\d", re.MULTILINE)
_GRAFANA_RULE = re.compile(r"/alerting/(?:list\b|grafana/)")


@dataclass
class _Alert:
    """One alert's block of the default message."""

    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    value: str = ""


def parse(message: SlackMessage) -> AlertParts | None:
    if not message.is_bot:
        return None
    sections = _sections(message.text)
    has_sections = sections[0][0] is not None
    if not (has_sections or _from_grafana(message)):
        return None
    subject = split_status_title(message.title)
    alerts = [(status, alert) for status, body in sections for alert in _alerts(body)]
    if subject is None and not (has_sections and alerts):
        return None
    status = subject[0] if subject else _status_of(alerts)
    group_values = subject_values(subject[1])[0] if subject else []
    # The alerts the headline is about: the firing ones while any fire.
    relevant = [a for s, a in alerts if s in (status, None)] or [a for _, a in alerts]
    labelled = [alert.labels for alert in relevant if alert.labels]
    labels = common_pairs(labelled)
    name = labels.get("alertname") or next(iter(group_values), None)
    name = name or next((a["alertname"] for a in labelled if "alertname" in a), None)
    if not name:
        return None
    first = relevant[0] if relevant else _Alert()
    link = message.title_link if message.title_link and is_web_url(message.title_link) else None
    return AlertParts(
        name=name,
        status=status,
        severity=labels.get("severity"),
        labels=labels,
        annotations=_annotations(relevant, first),
        link=link or first.urls.get("source_url"),
        identity=None if labelled else {"group": " ".join(group_values)},
    )


def _from_grafana(message: SlackMessage) -> bool:
    return (
        any(footer.casefold().startswith("grafana") for footer in message.footers)
        or "grafana" in message.sender.casefold()
        or _GRAFANA_FOOTER.search(message.text) is not None
        or (message.title_link is not None and _GRAFANA_RULE.search(message.title_link) is not None)
    )


def _sections(text: str) -> list[tuple[AlertStatus | None, str]]:
    marks = list(_SECTION.finditer(text))
    if not marks:
        return [(None, text)]
    ends = [mark.start() for mark in marks[1:]] + [len(text)]
    return [
        (AlertStatus(mark.group(1).lower()), text[mark.end() : end])
        for mark, end in zip(marks, ends, strict=True)
    ]


def _alerts(body: str) -> list[_Alert]:
    starts = [match.start() for match in _VALUE.finditer(body)] or [0]
    ends = [*starts[1:], len(body)]
    alerts = [_alert(body[start:end]) for start, end in zip(starts, ends, strict=True)]
    return [alert for alert in alerts if alert.labels or alert.annotations or alert.value]


def _alert(chunk: str) -> _Alert:
    alert = _Alert()
    into: dict[str, str] | None = None
    for line in chunk.split("\n"):
        stripped = line.strip()
        if stripped.startswith("Value:"):
            alert.value, into = stripped[len("Value:") :].strip(), None
        elif stripped in ("Labels:", "Annotations:"):
            into = alert.labels if stripped == "Labels:" else alert.annotations
        elif match := _URL_LINE.match(line):
            if is_web_url(match.group(2)):
                alert.urls[f"{match.group(1).lower()}_url"] = match.group(2)
            into = None
        elif into is not None and (pair := _PAIR.match(line)):
            into.setdefault(pair.group(1).strip(), pair.group(2).strip())
    return alert


def _status_of(alerts: list[tuple[AlertStatus | None, _Alert]]) -> AlertStatus:
    firing = any(status is not AlertStatus.RESOLVED for status, _ in alerts)
    return AlertStatus.FIRING if firing else AlertStatus.RESOLVED


def _annotations(relevant: list[_Alert], first: _Alert) -> dict[str, str]:
    found = common_pairs(alert.annotations for alert in relevant if alert.annotations)
    found["values"] = first.value
    found.update(first.urls)
    return {key: value for key, value in found.items() if value}


# Grafana before Alertmanager: both write `[FIRING:n] …` titles, and only
# Grafana's messages carry marks (footer, **Firing** sections) to tell them apart.
register_slack_layout(SlackLayout("grafana", parse, order=10))
