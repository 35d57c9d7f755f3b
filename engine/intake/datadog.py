"""Datadog's webhook integration (POST /alerts/datadog), authorised by a custom header.

Datadog posts the payload its Webhooks integration tile holds, with `$VARIABLES`
filled in. The default payload is

    {"body": "$EVENT_MSG", "last_updated": "$LAST_UPDATED", "event_type": "$EVENT_TYPE",
     "title": "$EVENT_TITLE", "date": "$DATE", "org": {"id": "$ORG_ID", "name": "$ORG_NAME"},
     "id": "$ID"}

and teams commonly add `$ALERT_ID`, `$ALERT_TRANSITION`, `$ALERT_STATUS`,
`$ALERT_TYPE`, `$ALERT_PRIORITY`, `$TAGS`, `$HOSTNAME`, `$ALERT_QUERY`,
`$ALERT_METRIC`, `$ALERT_SCOPE`, `$LINK`, `$AGGREG_KEY`, `$ALERT_CYCLE_KEY`,
under keys of their choosing, at the top or in objects such as
`"alert": {"id": "$ALERT_ID"}`. So any JSON object is accepted and each value
is found by its key, spelt any common way (`alert_id`, `alertId`, `ALERT_ID`,
`alert.id`); values may be strings or numbers, dates epoch milliseconds.

The title carries the transition (`[Triggered on {host:web-1}] …`,
`[Recovered] …`, `[P1] [Warn] …`), read as the Slack layout reads it
(engine/intake/datadog_monitor.py). Tags, the scope's `key:value` pairs and the
host become labels; the monitor and scope are the identity, so a Recovered
closes what Triggered opened. The event id (`$ID`) keys the alert: Datadog's
retries of one notification are stored once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from engine.intake import datadog_monitor as dd
from engine.intake.errors import IntakeError, intake_error
from engine.intake.limits import (
    MAX_NAME,
    MAX_VALUE,
    cap_identity,
    cap_pairs,
    cap_text,
    capped_link,
    fresh_key,
)
from engine.intake.sources import bearer_plugin, register_webhook
from engine.models import Alert, AlertStatus
from engine.routing import ChannelFor, nowhere

_ALIASES: dict[str, tuple[str, ...]] = {
    "title": ("title", "eventtitle"),
    "alert_title": ("alerttitle",),
    "body": ("body", "eventmsg", "textonlymsg", "message", "msg", "text"),
    "event_id": ("id", "eventid"),
    "event_type": ("eventtype",),
    "date": ("date", "lastupdated"),
    "alert_id": ("alertid", "monitorid"),
    "transition": ("alerttransition", "transition"),
    "alert_type": ("alerttype",),
    "alert_status": ("alertstatus",),
    "priority": ("alertpriority", "priority"),
    "tags": ("tags", "eventtags", "alerttags", "monitortags"),
    "hostname": ("hostname", "host"),
    "query": ("alertquery", "query"),
    "metric": ("alertmetric", "metric"),
    "scope": ("alertscope", "scope"),
    "link": ("link", "eventurl", "alerturl", "url"),
    "aggreg_key": ("aggregkey", "aggregationkey"),
    "cycle_key": ("alertcyclekey", "cyclekey"),
    "org": ("orgname",),
}
_WANTED = {alias: name for name, aliases in _ALIASES.items() for alias in aliases}
_GENERIC = frozenset(
    {"id", "title", "body", "date", "type", "name", "status", "priority", "query", "scope"}
    | {"metric", "tags", "link", "url", "message", "text", "transition", "host", "msg"}
)
"""Keys that mean something only with their parent's name: `org.id` is not the event id."""
_ACCEPT: dict[str, Callable[[str], bool]] = {"priority": dd.is_priority, "alert_id": str.isdigit}
"""Variables whose key is also used for something else: `priority` is $PRIORITY (normal,
low) as often as $ALERT_PRIORITY (P1…P5); only the second says anything here."""
_MAX_DEPTH, _MAX_VALUES = 4, 2000
_UNFILLED = re.compile(r"^\$[A-Z][A-Z0-9_]*(?:\[[^\]]*\])?$")
_MARKDOWN = re.compile(r"^%%%\s*|\s*%%%$")
_BODY: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])


def parse_datadog(
    body: bytes, *, received_at: datetime, channel_for: ChannelFor = nowhere
) -> list[Alert]:
    """The alert of one webhook notification; IntakeError when it names no alert."""
    try:
        payload = _BODY.validate_json(body)
    except ValidationError as error:
        raise intake_error(error) from None
    found = variables(payload)
    headline = (found.get("title") or found.get("alert_title") or "").strip()
    if not headline:
        raise IntakeError("title: Field required (the webhook payload needs $EVENT_TITLE)")
    title = dd.read_title(headline) or dd.read_title(found.get("alert_title", ""))
    text = _MARKDOWN.sub("", found.get("body", "")).strip()
    transition = found.get("transition") or (title.transition if title else "")
    status = _status(transition, found.get("alert_type", ""))
    name = (title.name if title else "") or headline
    # The group that transitioned: the title's `on {…}`, else $ALERT_SCOPE.
    scope = (title.scope if title else "") or found.get("scope", "")
    labels = _labels(found, title, scope, text)
    monitor = labels.get("monitor_id", "")
    priority = labels.get("priority", "")
    identity = f"{monitor or 'name:' + name}|{dd.scope_key(scope)}"
    event_id = found.get("event_id", "")
    return [
        Alert(
            source="datadog",
            source_key=f"event:{cap_identity(event_id)}" if event_id else fresh_key(),
            name=cap_text(name, MAX_NAME),
            status=status,
            severity=priority or ("warning" if dd.is_warning(transition) else None),
            labels=labels,
            annotations=cap_pairs(_annotations(found, transition, scope)),
            text=cap_text("\n".join(part for part in (headline, text) if part)),
            starts_at=_epoch(found.get("date", "")),
            link=_link(found, text),
            fingerprint=cap_identity(f"datadog:{identity}"),
            channel=channel_for(labels),
            received_at=received_at,
        )
    ]


def variables(payload: Mapping[str, Any]) -> dict[str, str]:
    """Each Datadog variable the payload carries, by its canonical name; the first wins.

    Keys are compared without case or punctuation (`alert_id`, `alertId`,
    `ALERT_ID`); a key in an object is also tried with its parent's name
    (`alert.id`). A value Datadog left unfilled (`$ALERT_ID`, `null`, "") is none.
    """
    found: dict[str, str] = {}
    for key, value in _leaves(payload):
        name = _WANTED.get(key)
        if name is None or name in found or not (text := _value(value)):
            continue
        if name not in _ACCEPT or _ACCEPT[name](text):
            found[name] = text
    return found


def _leaves(payload: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """(normalised key, value) of every scalar or list, breadth first, bounded."""
    queue: list[tuple[str, Mapping[str, Any], int]] = [("", payload, 0)]
    seen = 0
    while queue:
        parent, mapping, depth = queue.pop(0)
        for raw_key, value in mapping.items():
            seen += 1
            if seen > _MAX_VALUES:
                return
            key = _normal(raw_key)
            if isinstance(value, Mapping):
                if depth < _MAX_DEPTH:
                    queue.append((key, value, depth + 1))
                continue
            if not parent or key not in _GENERIC:
                yield key, value
            if parent:
                yield parent + key, value


def _normal(key: object) -> str:
    return "".join(ch for ch in str(key)[:64].casefold() if ch.isalnum())


def _value(value: object) -> str:
    """A variable's value as text; a list (tags) joined by commas; unfilled ones none."""
    if isinstance(value, list):
        return ", ".join(text for item in value[:200] if (text := _value(item)))
    if isinstance(value, bool) or value is None:
        return ""
    text = str(value).strip()[: 8 * MAX_VALUE] if isinstance(value, str | int | float) else ""
    if text.casefold() in ("null", "none") or _UNFILLED.match(text):
        return ""
    return text


def _status(transition: str, alert_type: str) -> AlertStatus:
    if transition:
        return dd.transition_status(transition)
    # Without a transition, $ALERT_TYPE says it: success is a recovery.
    return AlertStatus.RESOLVED if alert_type.casefold() == "success" else AlertStatus.FIRING


def _labels(
    found: Mapping[str, str], title: dd.Title | None, scope: str, text: str
) -> dict[str, str]:
    link = dd.monitor_link_in(text)
    query = found.get("query") or dd.query_in(text)
    metric = found.get("metric") or dd.metric_of(query) or dd.status_metric(text)
    labels = {
        "monitor_id": found.get("alert_id") or (link[0] if link else ""),
        "priority": (found.get("priority") or (title.priority if title else "")).upper(),
        "metric": metric,
    }
    labels |= dd.tags(found.get("tags", ""))
    labels |= dd.tags(dd.status_scope(text))
    labels |= dd.tags(scope)
    if (host := found.get("hostname")) and "host" not in labels:
        labels["host"] = host
    return cap_pairs((k, v) for k, v in labels.items() if v)


def _annotations(
    found: Mapping[str, str], transition: str, scope: str
) -> Iterator[tuple[str, str]]:
    yield "transition", transition
    yield "scope", scope
    for name in ("event_type", "alert_type", "alert_status", "query", "org", "cycle_key"):
        if value := found.get(name):
            yield name, value
    if aggregation := found.get("aggreg_key"):
        yield "aggreg_key", aggregation


def _link(found: Mapping[str, str], text: str) -> str | None:
    """The monitor's status page, else the event's ($LINK)."""
    monitor = dd.monitor_link_in(text)
    return capped_link(monitor[1] if monitor else None) or capped_link(found.get("link"))


def _epoch(value: str) -> datetime | None:
    """$DATE: epoch milliseconds (seconds from some relays); anything else is no time."""
    try:
        number = float(value)
    except ValueError:
        return None
    seconds = number / 1000 if number > 1e11 else number
    try:
        return datetime.fromtimestamp(seconds, UTC) if seconds > 0 else None
    except (OverflowError, OSError, ValueError):
        return None


register_webhook(
    bearer_plugin(
        "datadog",
        "Datadog's webhook integration (Authorization: Bearer GRACE_WEBHOOK_TOKEN header)",
        parse_datadog,
    )
)
