"""Datadog monitor notifications, as Datadog's Slack app posts them.

Datadog titles a notification with the monitor's transition, its priority and,
for a multi-alert monitor, the group that transitioned:

- `Triggered: [P2] CPU load is high on web-1`, `Recovered: …`, `Warn: …`,
  `No Data: …`, `Re-Triggered: …`, `Renotify: …`;
- `[Triggered on {host:web-1,env:prod}] Disk usage above 90%`,
  `[Recovered on {…}] …`, `[P1] [Triggered] …`.

The title links to the monitor (`https://app.datadoghq.com/monitors/ID?…`, or
the EU and US3/US5/gov sites); the text is the monitor's message with its
`@slack-…` handles, often the metric query, and the monitor's tags
(`env:prod, service:api`). Tags and the group's `key:value` pairs become labels.

The monitor and its group are the alert's identity: a recovery closes exactly
the incident its trigger opened, even if the title template prints values.
"""

from __future__ import annotations

import re

from engine.intake.slack_format import AlertParts, SlackMessage, clean_title, is_web_url
from engine.intake.sources import SlackLayout, register_slack_layout
from engine.models import AlertStatus

_TRANSITION = (
    r"(?:Re-)?Triggered|Recovered|Warn Recovered|Re-Warn|Warn|(?:Re-)?No Data|Renotify|Resolved"
)
_TITLE = re.compile(
    r"^(?:\[(?P<p1>P[1-5])\]\s*)?"
    r"(?:\[(?P<t1>" + _TRANSITION + r")(?:\s+on\s+\{(?P<scope>[^{}]*)\})?\]"
    r"|(?P<t2>" + _TRANSITION + r"):)"
    r"\s*(?:\[(?P<p2>P[1-5])\]\s*)?(?P<name>.*)$",
    re.IGNORECASE | re.DOTALL,
)
_MONITOR = re.compile(
    r"^https?://(?:[\w-]+\.)*(?:datadoghq\.(?:com|eu)|ddog-gov\.com)/monitors(?:/|#)(\d+)",
    re.IGNORECASE,
)
_DATADOG = re.compile(r"^https?://(?:[\w-]+\.)*(?:datadoghq\.(?:com|eu)|ddog-gov\.com)/", re.I)
_TAG = re.compile(r"(?<![\w.@/-])([A-Za-z][\w.\-/]{0,127}):([^\s,`'\"{}()\[\]]{1,256})")
_QUERY = re.compile(
    r"\b(?:avg|sum|min|max|count|change|pct_change|percentile)\((?:last|current)_\w+\):[^\n`]{1,512}"
)
_METRIC = re.compile(r"\):(?:\w+):([A-Za-z][\w.]*)")


def parse(message: SlackMessage) -> AlertParts | None:
    if not message.is_bot or not _from_datadog(message):
        return None
    title = _title(message)
    if title is None:
        return None
    transition = (title.group("t1") or title.group("t2")).strip()
    priority = (title.group("p1") or title.group("p2") or "").upper()
    scope = title.group("scope") or ""
    monitor = message.first_link(_MONITOR)
    monitor_id = monitor.group(1) if monitor else ""
    name = title.group("name").strip().strip("*_").strip() or (
        f"Datadog monitor {monitor_id}" if monitor_id else ""
    )
    query = _QUERY.search(message.text)
    labels = {"monitor_id": monitor_id, "priority": priority}
    labels |= _tags(
        ", ".join(v for k, v in message.pairs if k.casefold() in ("tags", "monitor tags"))
    )
    labels |= _tags(scope)
    if query and (metric := _METRIC.search(query.group(0))):
        labels["metric"] = metric.group(1)
    warn = transition.casefold().startswith("warn") or transition.casefold() == "re-warn"
    return AlertParts(
        name=name,
        status=_status(transition),
        severity=priority or ("warning" if warn else None),
        labels=labels,
        annotations={
            "transition": transition,
            "scope": scope,
            "query": query.group(0).strip() if query else "",
        },
        link=monitor.string if monitor else _web(message.title_link),
        identity={"monitor": monitor_id, "scope": _scope_key(scope)} if monitor_id else None,
    )


def _from_datadog(message: SlackMessage) -> bool:
    return "datadog" in message.sender.casefold() or message.first_link(_DATADOG) is not None


def _title(message: SlackMessage) -> re.Match[str] | None:
    """Datadog's headline: the attachment or block title, else the fallback text."""
    candidates = [message.title, *(clean_title(fallback)[0] for fallback in message.fallbacks)]
    return next((match for text in candidates if (match := _TITLE.match(text))), None)


def _tags(text: str) -> dict[str, str]:
    """`key:value` tags of a comma or space separated list; bare tags carry no label."""
    return {key: value for key, value in _TAG.findall(text)}


def _scope_key(scope: str) -> str:
    """The group, written the same whatever order Datadog lists its tags in."""
    return ",".join(f"{key}:{value}" for key, value in sorted(_tags(scope).items()))


def _status(transition: str) -> AlertStatus:
    word = transition.casefold()
    return AlertStatus.RESOLVED if "recovered" in word or word == "resolved" else AlertStatus.FIRING


def _web(url: str | None) -> str | None:
    return url if url and is_web_url(url) else None


register_slack_layout(SlackLayout("datadog", parse, order=30))
