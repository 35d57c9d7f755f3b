"""Datadog monitor notifications, as Datadog's Slack app posts them.

A notification to `@slack-<channel>` carries the monitor's title with its
transition, priority and, for a multi-alert monitor, the group that
transitioned (read by engine/intake/datadog_monitor.py, shared with the
webhook): `[Triggered on {host:web-1,env:prod}] Disk usage above 90%`,
`Recovered: [P2] CPU load is high on web-1`, `[P1] [Warn] …`.

The title links to the monitor (`https://app.datadoghq.com/monitors/ID?…`);
the text is the monitor's message with its `@slack-…` handles, the status line
(`**metric** over **host:web-1** was > 0.9 …`) or the query, and, where the
channel shows them, the monitor's tags (`env:prod, service:api`). Tags, the
status line's group and the title's group become labels, the title's winning.

The monitor and its group are the alert's identity: a recovery closes exactly
the incident its trigger opened, even if the title template prints values.
"""

from __future__ import annotations

from engine.intake import datadog_monitor as dd
from engine.intake.slack_format import AlertParts, SlackMessage, clean_title, is_web_url
from engine.intake.sources import SlackLayout, register_slack_layout


def parse(message: SlackMessage) -> AlertParts | None:
    if not message.is_bot or not _from_datadog(message):
        return None
    title = _title(message)
    if title is None:
        return None
    monitor = message.first_link(dd.MONITOR_URL)
    monitor_id = monitor.group(1) if monitor else ""
    name = title.name or (f"Datadog monitor {monitor_id}" if monitor_id else "")
    query = dd.query_in(message.text)
    labels = {"monitor_id": monitor_id, "priority": title.priority}
    labels |= dd.tags(", ".join(v for k, v in message.pairs if k.casefold() in _TAG_KEYS))
    labels |= dd.tags(dd.status_scope(message.text))
    labels |= dd.tags(title.scope)
    if metric := dd.metric_of(query) or dd.status_metric(message.text):
        labels["metric"] = metric
    return AlertParts(
        name=name,
        status=title.status,
        severity=title.severity,
        labels=labels,
        annotations={"transition": title.transition, "scope": title.scope, "query": query},
        link=monitor.string if monitor else _web(message.title_link),
        identity={"monitor": monitor_id, "scope": dd.scope_key(title.scope)}
        if monitor_id
        else None,
    )


_TAG_KEYS = frozenset({"tags", "monitor tags", "scope"})


def _from_datadog(message: SlackMessage) -> bool:
    return "datadog" in message.sender.casefold() or message.first_link(dd.DATADOG_URL) is not None


def _title(message: SlackMessage) -> dd.Title | None:
    """Datadog's headline: the attachment or block title, else the fallback or text."""
    candidates = [message.title, *(clean_title(fallback)[0] for fallback in message.fallbacks)]
    return next((title for text in candidates if (title := dd.read_title(text))), None)


def _web(url: str | None) -> str | None:
    return url if url and is_web_url(url) else None


register_slack_layout(SlackLayout("datadog", parse, order=30))
