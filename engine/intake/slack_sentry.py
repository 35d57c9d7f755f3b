"""Sentry issue alerts and issue notifications, as Sentry posts them in Slack.

Three layouts are read (getsentry/sentry integrations/slack/message_builder and
integrations/messaging/message_builder.py; getsentry/sentry-plugins slack):

- Block Kit (Sentry's Slack integration today): a section
  `:red_circle: <issue-url|*OperationalError*>` (for an error, the title is the
  exception's type only), the culprit as context, the exception's value quoted
  (```database is locked```), the alert rule's chosen tags as
  "environment: `production`  db_path: `/var/lib/app/orders.db`", a context
  "State: *New*   First Seen: …", buttons, and a footer context
  "Project: backend    Alert: BACKEND-4A via <rule>    Short ID: BACKEND-4A". The
  message's `text` is its fallback, `[backend] OperationalError: database is locked`.
- attachments (the integration before Block Kit): title = the type, title_link
  to the issue, text = the value, one field per chosen tag (its key as title),
  footer `BACKEND-4A via <rule>`, fallback `[backend] <whole title>`.
- the legacy Slack plugin (an incoming webhook, username "Sentry"): fallback
  `[backend] <title>`, title = the whole title, title_link to the issue (older
  Sentry: `/<org>/<project>/issues/<id>/`), colour by level, fields Culprit,
  Project, Triggered By and one per tag, titled by the tag's label
  ("Environment", "Server", "Db Path").

The alert's name is the whole title (from the fallback where the layout shows
only the type), its labels the tags (level, environment, release, server_name,
db_path, service …) with the issue id, short id and project. A workflow
notification (`Jane marked <issue|BACKEND-4A> as resolved`) is resolved. The
issue is the identity, so the resolution closes the incident the alert opened.
"""

from __future__ import annotations

import re

from engine.intake.slack_format import (
    AlertParts,
    SlackMessage,
    clean_title,
    parse_time,
    unformat,
)
from engine.intake.sources import SlackLayout, register_slack_layout
from engine.models import AlertStatus

_ISSUE = re.compile(
    r"^(https?://([^/\s?#]+)(?:/organizations/[^/\s?#]+|/[^/\s?#]+/[^/\s?#]+)?/issues/(\d+))",
    re.IGNORECASE,
)
_SHORT_ID = re.compile(r"^[A-Z][A-Z0-9_-]*-[A-Z0-9]+$")
_FOOTER_SHORT_ID = re.compile(r"^([A-Z][A-Z0-9_-]*-[A-Z0-9]+) via\b")
_FALLBACK = re.compile(r"^\[([^\]\n]{1,100})\]\s+(\S[^\n]*)")
_RESOLVED = re.compile(
    r"\bmarked\b[^\n]{0,300}?\bas resolved\b|\bwas resolved\b|\bIssue resolved by\b",
    re.IGNORECASE,
)
_TAG_KEY = re.compile(r"^[a-z][a-z0-9_.:-]{0,63}$")
_LABEL = re.compile(r"^[A-Z][A-Za-z0-9]*(?: [A-Za-z0-9]+){0,3}$")
_CULPRIT = re.compile(r"^(?:\S+ in \S+|\?\(.*\)|/\S*)$")
_NOT_TAGS = frozenset(
    {"culprit", "project", "triggered by", "notes", "user", "state", "first seen", "events"}
    | {"users affected", "approx. start time", "short id", "alert", "suspect commit"}
)
"""Fields and context pairs Sentry shows that are not the event's tags (and `user`,
a person's identity, which heals nothing)."""
_LABELS = {"server": "server_name", "exception type": "exc_type"}
"""Tag labels of the legacy plugin that are not their key spelt out."""
_LEVEL_MARKS = {
    "red_circle": "error",
    "\U0001f534": "error",
    "large_yellow_circle": "warning",
    "\U0001f7e1": "warning",
    "large_blue_circle": "info",
    "\U0001f535": "info",
    "bug": "debug",
}
_LEVEL_COLORS = {
    # The legacy plugin's colours, then the integration's (messaging/types.py).
    "cfd3da": "debug",
    "2788ce": "info",
    "f18500": "warning",
    "f43f20": "error",
    "d20f2a": "fatal",
    "fbe14f": "debug",
    "ffc227": "warning",
    "e03e2f": "error",
    "fa4747": "fatal",
}


def parse(message: SlackMessage) -> AlertParts | None:
    if not message.is_bot:
        return None
    issue = _issue_link(message)
    if issue is None:
        return None
    url, host, issue_id = issue.group(1), issue.group(2), issue.group(3)
    shown = _shown_title(message, url)
    title, project = _full_title(message, shown)
    if not title:
        return None
    tags = _tags(message)
    level = tags.get("level", "").casefold()
    labels = {
        "issue_id": issue_id,
        "short_id": _short_id(message),
        "project": message.value("Project") or project or _footer_project(message),
        **tags,
    }
    return AlertParts(
        name=title,
        status=AlertStatus.RESOLVED if _RESOLVED.search(message.text) else AlertStatus.FIRING,
        severity=level or _level_by_mark(message.title_mark) or _level_by_color(message),
        labels=labels,
        annotations={"culprit": _culprit(message, shown)},
        link=message.title_link if message.title_link and _ISSUE.match(message.title_link) else url,
        starts_at=parse_time(message.value("Approx. Start Time")),
        identity={"sentry": host.casefold(), "issue": issue_id},
    )


def _issue_link(message: SlackMessage) -> re.Match[str] | None:
    """The link to the issue, when Sentry posted it or its host says it is Sentry."""
    match = message.first_link(_ISSUE)
    if match is None:
        return None
    from_sentry = "sentry" in message.sender.casefold() or "sentry" in match.group(2).casefold()
    return match if from_sentry else None


def _shown_title(message: SlackMessage, issue_url: str) -> str:
    """The title as shown: the label of a link to the issue that is not its short id."""
    for link in message.links:
        label = clean_title(link.label)[0]
        if link.url.startswith(issue_url) and label and not _SHORT_ID.match(label):
            return label
    return message.title


def _full_title(message: SlackMessage, shown: str) -> tuple[str, str]:
    """(whole title, project) from the fallback `[project] Type: value`, which holds the
    whole title where the layout shows only the exception's type."""
    for text in (*message.fallbacks, unformat(message.raw_text)):
        match = _FALLBACK.match(text.strip())
        if match and (not shown or match.group(2).startswith(shown)):
            return match.group(2).strip(), match.group(1).strip()
    return shown, ""


def _tags(message: SlackMessage) -> dict[str, str]:
    """The event's tags as the alert rule shows them: fields (keys, or the legacy
    plugin's labels) and the Block Kit tags line, `key: value` pairs with tag keys."""
    tags: dict[str, str] = {}
    for title, value in message.fields:
        if (key := _field_key(title)) and value:
            tags.setdefault(key, value)
    for key, value in message.pairs:
        if _TAG_KEY.match(key) and key not in _NOT_TAGS and value:
            tags.setdefault(key, value)
    return tags


def _field_key(title: str) -> str | None:
    folded = title.strip().casefold()
    if not folded or folded in _NOT_TAGS:
        return None
    if _TAG_KEY.match(title.strip()):
        return title.strip()
    if _LABEL.match(title.strip()):  # the legacy plugin's "Db Path" is the tag db_path
        return _LABELS.get(folded, folded.replace(" ", "_"))
    return None


def _short_id(message: SlackMessage) -> str:
    if value := message.value("Short ID"):
        return value
    for footer in message.footers:
        if match := _FOOTER_SHORT_ID.match(footer):
            return match.group(1)
    labels = (clean_title(link.label)[0] for link in message.links)
    return next((label for label in labels if _SHORT_ID.match(label)), "")


def _footer_project(message: SlackMessage) -> str:
    for footer in message.footers:
        project, sep, rest = footer.partition(" | ")
        if sep and "notification settings" in rest.casefold():
            return project.strip()
    return ""


def _culprit(message: SlackMessage, shown: str) -> str:
    """Where the error happened (`app.views in divide`): the legacy plugin's Culprit
    field, else the line under the title when it reads like one."""
    if value := message.value("Culprit"):
        return value
    lines = message.text.split("\n")
    for index, line in enumerate(lines[:-1]):
        if shown and (line.startswith(shown) or clean_title(line)[0].startswith(shown)):
            following = lines[index + 1].strip()
            return following if _CULPRIT.match(following) else ""
    return ""


def _level_by_mark(mark: str) -> str | None:
    folded = mark.casefold()
    return next((level for m, level in _LEVEL_MARKS.items() if m in folded), None)


def _level_by_color(message: SlackMessage) -> str | None:
    colors = (color.strip().lstrip("#").casefold() for color in message.colors)
    return next((_LEVEL_COLORS[c] for c in colors if c in _LEVEL_COLORS), None)


register_slack_layout(SlackLayout("sentry", parse, order=50))
