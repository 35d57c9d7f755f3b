"""Alertmanager's Slack notifications (slack_configs), as they appear in a channel.

Alertmanager posts one legacy attachment per notification (notify/slack/slack.go):
title, title_link, pretext, text, fallback, footer, color, `fields` and
`actions` from the receiver's templates, sent through an incoming webhook
(username, icon) or with an app token; since 0.31 `message_text` adds a
top-level text. Two families of templates cover nearly every installation:

- The defaults (template/default.tmpl): the title is the group's subject,
  `[FIRING:2] HighLatency (api prod)` or `[RESOLVED] …`, linked to the
  Alertmanager UI (`…/#/alerts?receiver=…`), with no text. The subject holds
  label *values* only, the group's and then (in parentheses) the others common
  to the whole group, alertname first among each; so all it tells for sure is
  the alert name and which group this is: the receiver and the group values are
  the alert's identity, and the values are kept as annotations. The fallback
  keeps that default subject even when the title is customised.
- Custom text that lists every alert of the group (read by slack_alert_list.py:
  Prometheus' notification example with `*Details:*` and `• *label:* `value``
  lines, and its many variants), `<url|:chart_with_upwards_trend:>` links, titles
  with emoji (`[FIRING:2] :fire: KubePodCrashLooping`), plus the labels a
  template shows for the group: `name="value"` pairs in the title, attachment
  fields, and the matchers of a silence link button (`#/silences/new?filter={…}`).

The message is about the group, one incident, and like a webhook's incident it
is about the group's first firing alert: its labels are those common to every
alert listed, plus that alert's own (its pod, its container: the target).
`annotations["alerts"]` says how many alerts the message listed, and the group
(its receiver and subject) is the identity, so the group's next message joins
the same incident.

Alertmanager posts through an incoming webhook or an app, so only messages from
integrations are read here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import unquote, unquote_plus

from engine.intake.slack_alert_list import (
    NAME_LIKE,
    STARTED,
    ListedAlert,
    label_key,
    read_alerts,
)
from engine.intake.slack_alert_list import unquote as unquote_value
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
_SILENCE = "/#/silences/new?"
_KEY_VALUE = re.compile(r"(?:^|\s)[A-Za-z_][\w.-]*=\S")
_EMOJI = re.compile(r":[a-z0-9_+'-]+:")
# Only at a word start: a run of letters without `=` is read once, not once per letter.
_MATCHER = re.compile(
    r'(?<![A-Za-z0-9_])([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!=|!~|=)\s*"((?:[^"\\]|\\.)*)"'
)
_TITLE_PAIR = re.compile(
    r'(?<![^\s,(\[{])([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|[^\s,;)\]}]+)'
)
_NAME_ENDS = frozenset({"for", "on", "in", "at", "-", "–", "—", "|"})


def parse(message: SlackMessage) -> AlertParts | None:
    """The group's alert in an Alertmanager notification, or None when it is not one.

    It is one when its title (or top-level text, or default fallback) is an
    Alertmanager subject, or when it lists alerts and comes from Alertmanager
    (its sender's name, a link to Alertmanager's alerts or silences).
    """
    if not message.is_bot:
        return None
    subject = _subject(message)
    alerts, header = read_alerts(message.text, _group_fields(message))
    group = {**header, **_group_labels(message)}
    by_alertmanager = _posted_by_alertmanager(message)
    if subject is None and not ((alerts or group) and by_alertmanager):
        return None
    if subject and not alerts and _KEY_VALUE.search(subject[1]):
        return None  # `[FIRING:1] Name key=value` is the text format, labels and all
    status = subject[0] if subject else _status_of(alerts, message)
    rest = _EMOJI.sub(" ", subject[1]) if subject else ""
    group_values, common_values = subject_values(_default_subject(message, rest))
    labels = common_pairs(alert.labels for alert in alerts if alert.labels)
    for key, value in group.items():
        labels.setdefault(key, value)
    first = _first(alerts, status)
    name = _name(labels, first, alerts, rest, group_values, common_values)
    if not name:
        return None
    receiver = _receiver(message)
    # The incident is about the group's first firing alert, as a webhook's is:
    # its own labels (its pod, its container) name the target. The group, not
    # that alert, is the identity, so the next message of the group (another
    # alert first, or resolved) joins the same incident.
    own = {k: v for k, v in first.labels.items() if v and k not in labels}
    identity = None
    if own or not labels:
        identity = {"receiver": receiver, "group": " ".join(group_values) or name}
    labels.update(own)
    if receiver:
        labels.setdefault("receiver", receiver)
    return AlertParts(
        name=name,
        status=status,
        severity=_severity(labels, first, group_values, common_values),
        labels=labels,
        annotations=_annotations(message, first, len(alerts), labels, group_values, common_values),
        link=_link(message),
        starts_at=parse_time(first.annotations.get("started") or message.value(*STARTED)),
        identity=identity,
    )


# -- the subject --------------------------------------------------------------------


def _subject(message: SlackMessage) -> tuple[AlertStatus, str] | None:
    """`[FIRING:n] …` from the title, else the top-level text, else the default fallback."""
    first_line = message.raw_text.strip().split("\n", 1)[0]
    for text in (message.title, first_line):
        if subject := split_status_title(text):
            return subject
    return _default_fallback(message)


def _default_fallback(message: SlackMessage) -> tuple[AlertStatus, str] | None:
    """The default fallback, `<default subject> | <Alertmanager UI link>`, which keeps
    the default subject when the title was customised; without its part after `|`."""
    for fallback in message.fallbacks:
        subject = split_status_title(fallback)
        if subject and _UI.search(subject[1].rpartition(" | ")[2]):
            return subject[0], subject[1].rpartition(" | ")[0]
    return None


def _default_subject(message: SlackMessage, rest: str) -> str:
    """The subject whose values name the group: the title's when it is one, else the
    default fallback's."""
    if split_status_title(message.title) is None and (fallback := _default_fallback(message)):
        return fallback[1]
    return rest


def _name(
    labels: Mapping[str, str],
    first: ListedAlert,
    alerts: list[ListedAlert],
    rest: str,
    group_values: list[str],
    common_values: list[str],
) -> str | None:
    named = (alert.labels["alertname"] for alert in alerts if "alertname" in alert.labels)
    if name := labels.get("alertname") or first.labels.get("alertname") or next(named, None):
        return name
    # A custom title: `:fire: KubePodCrashLooping`, `KubePodCrashLooping for job (…)`.
    words = rest.split("(", 1)[0].split()
    alone = len(words) == 1 or (len(words) > 1 and words[1].casefold() in _NAME_ENDS)
    if words and alone and _alert_name_like(words[0]):
        return words[0]
    # The default subject: alertname leads the group values when grouped by it, else
    # the common ones; alert names are CamelCase, label values rarely are.
    for candidate in (*group_values[:1], *common_values[:1]):
        if _alert_name_like(candidate):
            return candidate
    return next(iter(group_values or common_values or words), None)


def _alert_name_like(word: str) -> bool:
    return NAME_LIKE.fullmatch(word) is not None and not word.islower()


def _severity(
    labels: Mapping[str, str],
    first: ListedAlert,
    group_values: list[str],
    common_values: list[str],
) -> str | None:
    found = labels.get("severity") or first.labels.get("severity") or first.severity
    return found or _severity_word(group_values) or _severity_word(common_values)


def _severity_word(values: list[str]) -> str | None:
    return next((value for value in values if value.casefold() in SEVERITIES), None)


def _status_of(alerts: list[ListedAlert], message: SlackMessage) -> AlertStatus:
    if any(alert.status is not None for alert in alerts):
        firing = any(alert.status is not AlertStatus.RESOLVED for alert in alerts)
        return AlertStatus.FIRING if firing else AlertStatus.RESOLVED
    kinds = [color_kind(color) for color in message.colors]
    return AlertStatus.RESOLVED if kinds and kinds[0] == "green" else AlertStatus.FIRING


def _first(alerts: list[ListedAlert], status: AlertStatus) -> ListedAlert:
    """The alert the incident is about: the first firing one while any fires."""
    if status is AlertStatus.FIRING:
        firing = (alert for alert in alerts if alert.status is not AlertStatus.RESOLVED)
        return next(firing, alerts[0] if alerts else ListedAlert())
    return alerts[0] if alerts else ListedAlert()


# -- labels the template shows for the whole group ----------------------------------


def _group_fields(message: SlackMessage) -> set[tuple[str, str]]:
    """Attachment and Block Kit fields: templated per group, so not any one alert's."""
    return {(title.casefold(), value) for title, value in message.fields}


def _group_labels(message: SlackMessage) -> dict[str, str]:
    """Labels shown for the group: title pairs, label-named fields, silence matchers."""
    found: dict[str, str] = {}
    for key, raw in _TITLE_PAIR.findall(message.title):
        found.setdefault(key, unquote_value(raw))
    for title, value in message.fields:
        key = label_key(title, listed=False)
        if key and value and " " not in value.strip():
            found.setdefault(key, value.strip())
    for key, value in _silence_matchers(message):
        found.setdefault(key, value)
    return found


def _silence_matchers(message: SlackMessage) -> list[tuple[str, str]]:
    """The `=` matchers of a silence link, which templates build from the common labels."""
    for url in _urls(message):
        _, found, query = url.partition(_SILENCE)
        params = (param for param in query.split("#", 1)[0].split("&") if found)
        for param in params:
            if param.startswith("filter="):
                matchers = unquote(param[len("filter=") :].replace("+", " "))
                return [(k, v) for k, op, v in _MATCHER.findall(matchers) if op == "="]
    return []


def _urls(message: SlackMessage) -> list[str]:
    return [message.title_link or "", *(link.url for link in message.links)]


# -- annotations and links ----------------------------------------------------------


def _annotations(
    message: SlackMessage,
    first: ListedAlert,
    count: int,
    labels: Mapping[str, str],
    group_values: list[str],
    common_values: list[str],
) -> dict[str, str]:
    found = {
        # A field (a group's), when the template lists no alert of its own.
        "summary": first.annotations.get("summary") or message.value("summary") or "",
        "description": first.annotations.get("description") or message.value("description") or "",
        "runbook_url": _link_about(message, "runbook", "spiral_note_pad", "_book:"),
        "graph_url": _link_about(message, "graph", "chart_with_upwards_trend", ":mag:"),
        "silence_url": _link_about(message, _SILENCE),
        "alerts": str(count) if count > 1 else "",
    }
    if not labels or set(labels) == {"receiver"}:
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
    return (
        "alertmanager" in message.sender.casefold()
        or message.first_link(_UI) is not None
        or any(_SILENCE in url for url in _urls(message))
    )


register_slack_layout(SlackLayout("alertmanager", parse, order=20))
