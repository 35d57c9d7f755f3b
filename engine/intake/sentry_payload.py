"""The bodies of Sentry's webhooks, the issue alert they carry, and what every Sentry alert shares.

Field names are Sentry's (getsentry/sentry: `_webhook_event_data`,
`_webhook_issue_data` and the incident serializer; the integration platform's
webhook docs). Every model ignores what it does not read: Sentry adds fields
often, and an upgrade must not break the door. What is read is typed, so a
body that breaks the documented shape is refused naming the field. Ids arrive
as strings or numbers alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from engine.intake.limits import (
    MAX_NAME,
    AnyInstant,
    cap_identity,
    cap_labels,
    cap_pairs,
    cap_text,
    capped_link,
)
from engine.models import Alert, AlertStatus
from engine.routing import ChannelFor

_MAX_EXCEPTIONS, _MAX_FRAMES = 5, 12
_PRIVATE_TAGS = frozenset({"user"})
"""Tags GRACE does not keep: a user's e-mail or address heals nothing."""
_BUILTIN_MODULES = frozenset({"builtins", "exceptions", "__builtin__"})


def _text(value: object) -> object:
    # Sentry sends ids and counts as strings in one place and numbers in another.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


_Id = Annotated[str, BeforeValidator(_text)]
_Str = Annotated[str | None, BeforeValidator(_text)]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Frame(_Lenient):
    abs_path: _Str = None
    filename: _Str = None
    module: _Str = None
    function: _Str = None
    lineno: int | None = None
    in_app: bool | None = None


class Stacktrace(_Lenient):
    frames: list[Frame] | None = None


class ExceptionValue(_Lenient):
    type: _Str = None
    value: _Str = None
    module: _Str = None
    stacktrace: Stacktrace | None = None


class Exceptions(_Lenient):
    values: list[ExceptionValue] | None = None


class Metadata(_Lenient):
    type: _Str = None
    value: _Str = None
    filename: _Str = None
    function: _Str = None


class LogEntry(_Lenient):
    formatted: _Str = None
    message: _Str = None


class Event(_Lenient):
    """`data.event` of an issue alert: the event as Sentry stores it, and its issue."""

    issue_id: _Id = Field(min_length=1)
    event_id: _Str = None
    title: _Str = None
    culprit: _Str = None
    level: _Str = None
    message: _Str = None
    logentry: LogEntry | None = None
    platform: _Str = None
    environment: _Str = None
    release: _Str = None
    happened: AnyInstant | None = Field(None, alias="datetime")
    project: _Str = None
    tags: list[Any] | None = None
    exception: Exceptions | None = None
    metadata: Metadata | None = None
    url: _Str = None
    web_url: _Str = None


class EventAlertData(_Lenient):
    event: Event
    triggered_rule: _Str = None


class EventAlertBody(_Lenient):
    action: str = "triggered"
    data: EventAlertData


class Project(_Lenient):
    id: _Str = None
    slug: _Str = None
    name: _Str = None


class Issue(_Lenient):
    """`data.issue`: the issue as Sentry's API serialises it, with its web_url."""

    id: _Id = Field(min_length=1)
    shortId: _Str = None
    title: _Str = None
    culprit: _Str = None
    level: _Str = None
    status: _Str = None
    substatus: _Str = None
    platform: _Str = None
    project: Project | None = None
    metadata: Metadata | None = None
    web_url: _Str = None
    permalink: _Str = None
    firstSeen: AnyInstant | None = None


class IssueData(_Lenient):
    issue: Issue


class IssueBody(_Lenient):
    action: str
    data: IssueData


class AlertRule(_Lenient):
    id: _Str = None
    name: _Str = None
    environment: _Str = None
    projects: list[_Id] = Field(default_factory=list)
    query: _Str = None
    aggregate: _Str = None
    dataset: _Str = None
    time_window: _Str = None


class MetricIncident(_Lenient):
    """`data.metric_alert`: the incident that an alert rule's trigger opened."""

    id: _Id = Field(min_length=1)
    identifier: _Str = None
    title: _Str = None
    projects: list[_Id] = Field(default_factory=list)
    date_started: AnyInstant | None = None
    alert_rule: AlertRule


class MetricAlertData(_Lenient):
    metric_alert: MetricIncident
    description_title: _Str = None
    description_text: _Str = None
    web_url: _Str = None


class MetricAlertBody(_Lenient):
    action: str
    data: MetricAlertData


class AnyBody(_Lenient):
    """Any other resource: a JSON object is all that is asked of it."""


@dataclass(frozen=True)
class Context:
    """What every alert of a request shares: when, where it goes, its source_key."""

    received_at: datetime
    channel_for: ChannelFor
    key: str


# -- alerts --------------------------------------------------------------------------


def event_alert(data: EventAlertData, context: Context) -> Alert:
    """An issue alert: the event that made the rule fire, named by its issue's title."""
    event = data.event
    title = _event_title(event)
    labels = {"issue_id": event.issue_id, "project": _project_of(event)}
    labels |= dict(_tags(event.tags))
    for key, value in (
        ("level", event.level),
        ("environment", event.environment),
        ("release", event.release),
        ("app_dir", _app_dir(event)),
    ):
        if value and key not in labels:
            labels[key] = value
    rule = data.triggered_rule or ""
    # One event fires one rule once: Sentry's own retries of it are stored once.
    key = f"event:{cap_identity(event.event_id)}:{cap_identity(rule)}" if event.event_id else ""
    return alert(
        context,
        name=title,
        status=AlertStatus.FIRING,
        severity=labels.get("level"),
        labels=labels,
        annotations={"culprit": event.culprit, "rule": rule, "event_id": event.event_id},
        text="\n".join(_event_lines(event, title)),
        starts_at=event.happened,
        link=event.web_url,
        fingerprint=issue_fingerprint(event.issue_id),
        source_key=key or context.key,
    )


def issue_fingerprint(issue_id: str) -> str:
    """The identity an issue alert and the issue's own webhooks share."""
    return cap_identity(f"sentry-issue:{issue_id}")


def alert(
    context: Context,
    *,
    name: str,
    labels: dict[str, str | None],
    annotations: dict[str, str | None],
    text: str,
    starts_at: datetime | None,
    link: str | None,
    **fields: Any,
) -> Alert:
    kept = cap_pairs((k, v) for k, v in labels.items() if k and v)
    return Alert(
        source="sentry",
        name=cap_text(name.strip() or "Sentry alert", MAX_NAME),
        labels=kept,
        annotations=cap_labels({k: v for k, v in annotations.items() if v}),
        text=cap_text(text),
        starts_at=_aware(starts_at),
        link=capped_link(link),
        channel=context.channel_for(kept),
        received_at=context.received_at,
        **fields,
    )


def _event_title(event: Event) -> str:
    metadata = event.metadata or Metadata()
    message = event.message or (event.logentry.formatted if event.logentry else None)
    return (
        event.title
        or joined(metadata.type, metadata.value)
        or (message or "").split("\n", 1)[0]
        or f"Sentry issue {event.issue_id}"
    )


def _event_lines(event: Event, title: str) -> Iterator[str]:
    """What a person reads: the title, the culprit, each exception and where it was raised."""
    yield title
    if event.culprit:
        yield event.culprit
    values = (event.exception.values if event.exception else None) or []
    for value in values[-_MAX_EXCEPTIONS:]:
        module = value.module if value.module not in _BUILTIN_MODULES else None
        kind = ".".join(part for part in (module, value.type) if part)
        yield joined(kind, value.value)
        frames = (value.stacktrace.frames if value.stacktrace else None) or []
        for frame in frames[-_MAX_FRAMES:]:
            where = frame.abs_path or frame.filename or frame.module or "?"
            yield f'  File "{where}", line {frame.lineno or "?"}, in {frame.function or "?"}'
    message = event.message or _logentry(event)
    if not values and message and message != title:
        yield message


def _logentry(event: Event) -> str | None:
    return (event.logentry.formatted or event.logentry.message) if event.logentry else None


def _tags(tags: list[Any] | None) -> Iterator[tuple[str, str]]:
    """The event's tags, `[[key, value], …]`; an entry of another shape is skipped."""
    for entry in tags or ():
        if not isinstance(entry, list | tuple) or len(entry) != 2:
            continue
        key, value = (_text(item) for item in entry)
        if isinstance(key, str) and isinstance(value, str) and key not in _PRIVATE_TAGS:
            yield key.removeprefix("sentry:"), value


def _project_of(event: Event) -> str | None:
    """The project's slug, from the event's API URL `/api/0/projects/<org>/<slug>/events/…`;
    else its numeric id, which is all `project` holds."""
    parts = (event.url or "").split("/api/0/projects/", 1)
    if len(parts) == 2 and (segments := parts[1].split("/")) and len(segments) >= 2:
        return segments[1] or event.project
    return event.project


def _app_dir(event: Event) -> str | None:
    """Where the application's code lives: an in-app frame's absolute path less the
    path Python imported it by (`/srv/app/orders/views.py` less `orders/views.py`).

    Only a label: the engine acts on a folder only through its allowlist.
    """
    values = (event.exception.values if event.exception else None) or []
    for value in reversed(values):
        frames = (value.stacktrace.frames if value.stacktrace else None) or []
        for frame in reversed(frames):
            path, name = frame.abs_path or "", frame.filename or ""
            relative = bool(name) and not name.startswith("/")
            if frame.in_app and relative and path.startswith("/") and path.endswith("/" + name):
                return path[: -len(name) - 1] or None
    return None


def joined(kind: str | None, value: str | None) -> str:
    return ": ".join(part for part in (kind, value) if part)


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value
