"""Grafana alerting's Slack contact point, as its messages appear in a channel.

Grafana's unified alerting (8 to 11, grafana/alerting's receivers/slack) posts
one attachment with the default templates:

- title: the subject, `[FIRING:1] HighCPU Infra (prod web-1 critical)`, also
  `[FIRING:2, RESOLVED:1] …` and `[RESOLVED] …`; title_link: the alert's
  generator URL when all alerts share one, else `…/alerting/list`;
- footer "Grafana v10.4.1", colour #D63232 firing and #36a64f resolved;
- text: `**Firing**` and `**Resolved**` sections, one block per alert of
  `Value: A=93.2` (9.x: `Value: [ var='A' labels={…} value=93.2 ]`; 8.0 to
  8.2: no Value line), `Labels:` and `Annotations:` with ` - name = value`
  lines, then `Source:`, `Silence:`, `Dashboard:` and `Panel:` URLs;
- mentions: up to 9.2 in a Block Kit section beside the title repeated as
  the message text; since 9.3 in the attachment's pretext.

Templated contact points and other senders put that same text in Block Kit
blocks or in the message text; it is read the same wherever it is. The labels
every alert of the notification shares become the alert's labels, as a group's
common labels would.

Legacy alerting (7.x and older, pkg/services/alerting/notifiers/slack.go)
posts one rule's state: the title `[Alerting] High CPU alert ` (also `[OK]`
and `[No Data]`), linked to the rule's panel (a relative link when Grafana's
root_url is unset), the rule's message as text (mentions before it, or since
7.x in a Block Kit section), one field per matching series with its NUMERIC
value, an "Error message" field, and the footer "Grafana v7.5.4". A Prometheus
series name, `up{instance="web-1:9100", job="node"}`, gives the labels every
series shares. `[No Data]` becomes DatasourceNoData, as unified alerting names
it, so that the rule's own playbook never runs on missing data.
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

NO_DATA, ERROR = "DatasourceNoData", "DatasourceError"
"""What unified alerting names an alert about a rule without data, or whose query failed."""

_SECTION = re.compile(r"^[ \t]*\*{1,2}(Firing|Resolved)\*{1,2}[ \t]*$", re.M | re.IGNORECASE)
_PAIR = re.compile(r"^[ \t]*-[ \t]*([^=\n]+)=[ \t]?(.*)$")
_URL_LINE = re.compile(r"^[ \t]*(Source|Silence|Dashboard|Panel):[ \t]*(\S+)")
_GRAFANA_FOOTER = re.compile(r"^Grafana v\d", re.MULTILINE)
_GRAFANA_RULE = re.compile(r"/alerting/(?:list\b|grafana/)|[?&]tab=alert\b")
_LEGACY_STATES = {
    "alerting": AlertStatus.FIRING,
    "ok": AlertStatus.RESOLVED,
    "no data": AlertStatus.FIRING,
}
_SERIES = re.compile(r"\{([^{}]*)\}\s*$")
_SERIES_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"')
_ERROR_FIELD = "Error message"


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
        return None if has_sections else _legacy(message)
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
    return AlertParts(
        name=name,
        status=status,
        severity=labels.get("severity"),
        labels=labels,
        annotations=_annotations(relevant, first),
        link=_link(message, first),
        identity=None if labelled else {"group": " ".join(group_values)},
    )


def _from_grafana(message: SlackMessage) -> bool:
    return (
        any(footer.casefold().startswith("grafana") for footer in message.footers)
        or "grafana" in message.sender.casefold()
        or _GRAFANA_FOOTER.search(message.text) is not None
        or (message.title_link is not None and _GRAFANA_RULE.search(message.title_link) is not None)
    )


def _link(message: SlackMessage, first: _Alert) -> str | None:
    """The title's link, unless it is only the rule list and the alert names its rule."""
    link = _web_link(message)
    generic = link is None or link.rstrip("/").endswith("/alerting/list")
    return first.urls.get("source_url", link) if generic else link


def _web_link(message: SlackMessage) -> str | None:
    link = message.title_link
    return link if link and is_web_url(link) else None


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
    """The alert blocks of a section. A block starts at its `Value:` line, or at
    `Labels:` where Grafana 8.0 to 8.2 wrote no value."""
    alerts: list[_Alert] = []
    alert: _Alert | None = None
    into: dict[str, str] | None = None
    for line in body.split("\n"):
        stripped = line.strip()
        starts_value = stripped.startswith("Value:")
        if starts_value or (stripped == "Labels:" and (alert is None or alert.labels)):
            alert = _Alert()
            alerts.append(alert)
        if alert is None:
            continue
        if starts_value:
            alert.value, into = stripped[len("Value:") :].strip(), None
        elif stripped in ("Labels:", "Annotations:"):
            into = alert.labels if stripped == "Labels:" else alert.annotations
        elif match := _URL_LINE.match(line):
            if is_web_url(match.group(2)):
                alert.urls[f"{match.group(1).lower()}_url"] = match.group(2)
            into = None
        elif into is not None and (pair := _PAIR.match(line)):
            into.setdefault(pair.group(1).strip(), pair.group(2).strip())
    return [alert for alert in alerts if alert.labels or alert.annotations or alert.value]


def _status_of(alerts: list[tuple[AlertStatus | None, _Alert]]) -> AlertStatus:
    firing = any(status is not AlertStatus.RESOLVED for status, _ in alerts)
    return AlertStatus.FIRING if firing else AlertStatus.RESOLVED


def _annotations(relevant: list[_Alert], first: _Alert) -> dict[str, str]:
    found = common_pairs(alert.annotations for alert in relevant if alert.annotations)
    found["values"] = first.value
    found.update(first.urls)
    return {key: value for key, value in found.items() if value}


# -- legacy alerting (Grafana 7 and older) ---------------------------------------------


def _legacy(message: SlackMessage) -> AlertParts | None:
    """`[Alerting] rule`, `[OK] rule` or `[No Data] rule`, with a field per series."""
    head, sep, rest = message.title.partition("]")
    state = head[1:].strip().casefold() if head.startswith("[") else ""
    rule = rest.strip()
    if not (sep and rule and state in _LEGACY_STATES):
        return None
    series = [(name, value) for name, value in message.fields if name != _ERROR_FIELD]
    labels = common_pairs(_series_labels(name) for name, _ in series)
    error = next((v for k, v in message.fields if k == _ERROR_FIELD), "")
    name = rule
    if state == "no data" or (error and state == "alerting"):  # the condition was not evaluated
        name, labels["rulename"] = NO_DATA if state == "no data" else ERROR, rule
    annotations = {"values": ", ".join(f"{metric}={value}" for metric, value in series)}
    annotations["error"] = error
    return AlertParts(
        name=name,
        status=_LEGACY_STATES[state],
        severity=labels.get("severity"),
        labels=labels,
        annotations={key: value for key, value in annotations.items() if value},
        link=_web_link(message),
        # The rule is the alert, whatever its state: OK closes what Alerting or No Data opened.
        identity={"rule": rule, "panel": message.title_link or ""},
    )


def _series_labels(metric: str) -> dict[str, str]:
    """The labels of a Prometheus series name, `up{instance="web-1:9100", job="node"}`."""
    match = _SERIES.search(metric)
    if match is None:
        return {}
    return {key: value.replace('\\"', '"') for key, value in _SERIES_LABEL.findall(match.group(1))}


# Grafana before Alertmanager: both write `[FIRING:n] …` titles, and only
# Grafana's messages carry marks (footer, **Firing** sections) to tell them apart.
register_slack_layout(SlackLayout("grafana", parse, order=10))
