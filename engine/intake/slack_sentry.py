"""Sentry issue alerts and issue notifications, as Sentry's Slack app posts them.

Sentry has posted two layouts (getsentry/sentry, integrations/slack/message_builder):

- legacy attachments: title = the issue's title (`ZeroDivisionError: division by
  zero`), title_link to the issue (`…/organizations/acme/issues/4509/` or
  `acme.sentry.io/issues/4509/`), text = the culprit, one field per tag the alert
  rule shows (environment, level, release…), footer `BACKEND-4A via <rule>`,
  buttons Resolve / Ignore, fallback `[backend] ZeroDivisionError: …`;
- Block Kit: a section `:red_circle: <issue-url|*title*>`, the culprit, the tags
  as "environment: `production`  level: `error`", "State: *New*", buttons
  Resolve / Archive, a context "Project: backend    Alert: …    Short ID: …".

A workflow notification to a team channel says `Jane marked <issue|BACKEND-4A> as
resolved` above the issue's title: that one is resolved. The issue is the
alert's identity, so the resolution closes the incident the alert opened.
"""

from __future__ import annotations

import re

from engine.intake.slack_format import AlertParts, SlackMessage, clean_title, parse_time
from engine.intake.sources import SlackLayout, register_slack_layout
from engine.models import AlertStatus

_ISSUE = re.compile(r"^(https?://([^/\s?#]+)(?:/organizations/[^/\s?#]+)?/issues/(\d+))", re.I)
_SHORT_ID = re.compile(r"^[A-Z][A-Z0-9_-]*-[A-Z0-9]+$")
_FOOTER_SHORT_ID = re.compile(r"^([A-Z][A-Z0-9_-]*-[A-Z0-9]+) via\b")
_FALLBACK_PROJECT = re.compile(r"^\[([^\]\n]{1,100})\]\s")
_RESOLVED = re.compile(
    r"\bmarked\b[^\n]{0,300}?\bas resolved\b|\bwas resolved\b|\bIssue resolved by\b",
    re.IGNORECASE,
)
_LEVEL_MARKS = {
    "red_circle": "error",
    "\U0001f534": "error",
    "large_yellow_circle": "warning",
    "\U0001f7e1": "warning",
    "large_blue_circle": "info",
    "\U0001f535": "info",
    "bug": "debug",
}


def parse(message: SlackMessage) -> AlertParts | None:
    if not message.is_bot:
        return None
    issue = _issue_link(message)
    if issue is None:
        return None
    url, host, issue_id = issue.group(1), issue.group(2), issue.group(3)
    title = _title(message, url)
    if not title:
        return None
    tags = {key: message.value(key) or "" for key in ("environment", "level", "release")}
    level = tags["level"].casefold()
    labels = {
        "issue_id": issue_id,
        "short_id": _short_id(message),
        "project": _project(message),
        **tags,
    }
    return AlertParts(
        name=title,
        status=AlertStatus.RESOLVED if _RESOLVED.search(message.text) else AlertStatus.FIRING,
        severity=level or _level_by_mark(message.title_mark),
        labels=labels,
        annotations={"culprit": _culprit(message, title)},
        link=message.title_link if message.title_link and _ISSUE.match(message.title_link) else url,
        starts_at=parse_time(message.value("Approx. Start Time")),
        identity={"sentry": host.casefold(), "issue": issue_id},
    )


def _issue_link(message: SlackMessage) -> re.Match[str] | None:
    """The link to the issue, when Sentry's app posted it or its host says it is Sentry."""
    match = message.first_link(_ISSUE)
    if match is None:
        return None
    from_sentry = "sentry" in message.sender.casefold() or "sentry" in match.group(2).casefold()
    return match if from_sentry else None


def _title(message: SlackMessage, issue_url: str) -> str:
    """The issue's title: the label of a link to the issue that is not its short id."""
    for link in message.links:
        label = clean_title(link.label)[0]
        if link.url.startswith(issue_url) and label and not _SHORT_ID.match(label):
            return label
    return message.title


def _short_id(message: SlackMessage) -> str:
    if value := message.value("Short ID"):
        return value
    for footer in message.footers:
        if match := _FOOTER_SHORT_ID.match(footer):
            return match.group(1)
    labels = (clean_title(link.label)[0] for link in message.links)
    return next((label for label in labels if _SHORT_ID.match(label)), "")


def _project(message: SlackMessage) -> str:
    if value := message.value("Project"):
        return value
    for fallback in message.fallbacks:
        if match := _FALLBACK_PROJECT.match(fallback):
            return match.group(1)
    if match := _FALLBACK_PROJECT.match(message.raw_text):
        return match.group(1)
    for footer in message.footers:
        project, sep, rest = footer.partition(" | ")
        if sep and "notification settings" in rest.casefold():
            return project.strip()
    return ""


def _culprit(message: SlackMessage, title: str) -> str:
    """The line under the title: where the error happened (`app.views in divide`)."""
    lines = message.text.split("\n")
    for index, line in enumerate(lines[:-1]):
        if line.startswith(title) or clean_title(line)[0].startswith(title):
            following = lines[index + 1].strip()
            return "" if ":" in following.split(" ", 1)[0] else following
    return ""


def _level_by_mark(mark: str) -> str | None:
    folded = mark.casefold()
    return next((level for m, level in _LEVEL_MARKS.items() if m in folded), None)


register_slack_layout(SlackLayout("sentry", parse, order=50))
