"""Sentry's integration-platform webhooks (POST /alerts/sentry), from an internal integration.

Sentry signs each delivery: `Sentry-Hook-Signature` is the hex HMAC-SHA256 of
the raw body keyed with the integration's Client Secret
(`GRACE_SENTRY_CLIENT_SECRET`), checked in constant time before the body is
parsed. `Sentry-Hook-Resource` says what the body is; `Request-ID` names the
delivery, so a retry is stored once. `Sentry-Hook-Timestamp` is not signed, so
checking it would stop nothing a replay could not forge; it is not read.

What is read (getsentry/sentry: sentry_apps/tasks/sentry_apps.py builds the
bodies; "Integration Platform > Webhooks" documents them):

- `event_alert` (an issue alert rule's action, always "triggered"):
  `data.event` is the event as Sentry stores it (title, culprit, level, tags as
  `[[key, value], …]`, issue_id, web_url, exception frames) and
  `data.triggered_rule` the rule's name. It fires.
- `issue`: `created` and `unresolved` fire, `resolved` resolves; `assigned`,
  `ignored` and `archived` change nothing GRACE acts on and store nothing.
- `metric_alert`: `critical`, `warning` (and `open`) fire, `resolved` resolves;
  the alert rule names it.
- any other resource (installation, error, comment, seer, …) is not an alert:
  200, nothing stored, and the answer says so.

Identity: an issue alert and the issue's own webhooks share the fingerprint
`sentry-issue:<id>`, so `resolved` closes what `triggered` or `created`
opened; a metric alert's is its incident's id.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, SecretStr, TypeAdapter, ValidationError

from engine.intake import sentry_payload as body
from engine.intake.errors import intake_error
from engine.intake.limits import cap_identity, fresh_key
from engine.intake.sources import (
    JSON,
    Received,
    Request,
    Unauthorized,
    Unavailable,
    WebhookPlugin,
    WebhookSource,
    register_webhook,
)
from engine.models import Alert, AlertStatus
from engine.routing import ChannelFor, nowhere

SECRET_ENV = "GRACE_SENTRY_CLIENT_SECRET"
_M = TypeVar("_M", bound=BaseModel)
ISSUE_ACTIONS = {
    "created": AlertStatus.FIRING,
    "unresolved": AlertStatus.FIRING,
    "resolved": AlertStatus.RESOLVED,
}
"""Issue actions that say whether it fires; assigned, ignored and archived do not."""
METRIC_ACTIONS = {
    "critical": AlertStatus.FIRING,
    "warning": AlertStatus.FIRING,
    "open": AlertStatus.FIRING,
    "resolved": AlertStatus.RESOLVED,
}


class SentryConfig(BaseModel):
    """The settings Sentry's webhook reads: the internal integration's Client Secret."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    sentry_client_secret: SecretStr | None = None


@dataclass(frozen=True)
class Reading:
    """What one body brought: its alerts, or why it brought none."""

    alerts: list[Alert]
    note: str = ""


def parse_sentry(
    raw: bytes,
    *,
    received_at: datetime,
    channel_for: ChannelFor = nowhere,
    resource: str | None = None,
    request_id: str | None = None,
) -> Reading:
    """The alert in one webhook body (or none, and why); IntakeError when it does not fit.

    `resource` is the Sentry-Hook-Resource header; without it (`grace simulate`
    reads a bare body) the body's own shape says which resource it is.
    """
    resource = (resource or "").strip().lower() or _resource_of(raw)
    key = f"request:{cap_identity(request_id)}" if request_id else fresh_key()
    context = body.Context(received_at, channel_for, key)
    if resource == "event_alert":
        return _event_alert(_validate(body.EventAlertBody, raw), context)
    if resource == "issue":
        return _issue(_validate(body.IssueBody, raw), context)
    if resource == "metric_alert":
        return _metric_alert(_validate(body.MetricAlertBody, raw), context)
    _validate(body.AnyBody, raw)  # bad JSON is refused whatever the resource
    shown = _shown(resource) if resource else "unknown"
    return Reading([], f"Sentry resource {shown} is not an alert; nothing stored")


def _event_alert(payload: body.EventAlertBody, context: body.Context) -> Reading:
    if payload.action != "triggered":
        return Reading([], f"event_alert {_shown(payload.action)} is not an alert")
    return Reading([body.event_alert(payload.data, context)])


def _issue(payload: body.IssueBody, context: body.Context) -> Reading:
    status = ISSUE_ACTIONS.get(payload.action)
    if status is None:
        return Reading([], f"issue {_shown(payload.action)}: nothing to heal; nothing stored")
    return Reading([issue_alert(payload.data.issue, status, context)])


def _metric_alert(payload: body.MetricAlertBody, context: body.Context) -> Reading:
    status = METRIC_ACTIONS.get(payload.action)
    if status is None:
        return Reading([], f"metric_alert {_shown(payload.action)} is not an alert")
    return Reading([metric_alert(payload.data, payload.action, status, context)])


def _validate(model: type[_M], raw: bytes) -> _M:
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        raise intake_error(error) from None


_SHAPE: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])


def _resource_of(raw: bytes) -> str:
    """The resource a body without its header is: by the object under `data`."""
    try:
        data = _SHAPE.validate_json(raw).get("data")
    except ValidationError as error:
        raise intake_error(error) from None
    if not isinstance(data, Mapping):
        return ""
    for key, resource in (("event", "event_alert"), ("metric_alert", "metric_alert")):
        if isinstance(data.get(key), Mapping):
            return resource
    return "issue" if isinstance(data.get("issue"), Mapping) else ""


def _shown(value: str) -> str:
    """A sender's word, quoted and cut, for an answer or an error."""
    return repr(value if len(value) <= 40 else value[:40] + "…")


# -- issues and metric alerts ------------------------------------------------------


def issue_alert(issue: body.Issue, status: AlertStatus, context: body.Context) -> Alert:
    """An issue created, reopened or resolved. Its body has no tags: only the issue's own."""
    metadata = issue.metadata or body.Metadata()
    title = issue.title or body.joined(metadata.type, metadata.value) or f"Sentry issue {issue.id}"
    project = issue.project or body.Project()
    labels = {
        "issue_id": issue.id,
        "short_id": issue.shortId,
        "project": project.slug or project.name or project.id,
        "level": issue.level,
        "platform": issue.platform,
    }
    lines = [title, issue.culprit or "", body.joined(metadata.type, metadata.value)]
    return body.alert(
        context,
        name=title,
        status=status,
        severity=issue.level,
        labels=labels,
        annotations={"culprit": issue.culprit, "substatus": issue.substatus},
        text="\n".join(line for line in dict.fromkeys(lines) if line),
        starts_at=issue.firstSeen,
        link=issue.web_url or issue.permalink,
        fingerprint=body.issue_fingerprint(issue.id),
        source_key=context.key,
    )


def metric_alert(
    data: body.MetricAlertData, action: str, status: AlertStatus, context: body.Context
) -> Alert:
    """A metric alert's incident, named by its alert rule."""
    incident, rule = data.metric_alert, data.metric_alert.alert_rule
    name = rule.name or incident.title or _untitled(data.description_title)
    labels = {
        "alert_rule_id": rule.id,
        "project": ",".join(rule.projects or incident.projects),
        "environment": rule.environment,
    }
    firing = status is AlertStatus.FIRING
    return body.alert(
        context,
        name=name or f"Sentry metric alert {incident.id}",
        status=status,
        severity=action if firing and action != "open" else None,
        labels=labels,
        annotations={
            "query": rule.query,
            "aggregate": rule.aggregate,
            "dataset": rule.dataset,
            "time_window": rule.time_window,
        },
        text="\n".join(t for t in (data.description_title, data.description_text) if t),
        starts_at=incident.date_started,
        link=data.web_url,
        fingerprint=cap_identity(f"sentry-metric:{incident.id}"),
        source_key=context.key,
    )


def _untitled(title: str | None) -> str:
    """`Critical: Too many errors` without its state."""
    head, sep, rest = (title or "").partition(": ")
    return rest if sep and head in ("Critical", "Warning", "Resolved") else title or ""


# -- the source -------------------------------------------------------------------


@dataclass(frozen=True)
class SentrySource:
    """Sentry's webhook: signed with the Client Secret, one resource per request."""

    secret: SecretStr | None
    name: str = "sentry"
    content_types: frozenset[str] = JSON

    def check_headers(self, headers: Mapping[str, str]) -> None:
        if self.secret is None:
            raise Unavailable(f"Sentry webhooks are off: set {SECRET_ENV} to the Client Secret")
        if not headers.get("sentry-hook-signature", "").strip():
            raise Unauthorized("missing Sentry-Hook-Signature")

    async def receive(self, request: Request) -> Received:
        self.check_headers(request.headers)
        assert self.secret is not None  # check_headers refused otherwise
        verify(request.body, request.headers.get("sentry-hook-signature", ""), self.secret)
        request_id = request.headers.get("request-id", "").strip() or None
        reading = parse_sentry(
            request.body,
            received_at=request.received_at,
            channel_for=request.channel_for,
            resource=request.headers.get("sentry-hook-resource"),
            request_id=request_id,
        )
        answer = {"note": reading.note} if reading.note else {}
        key = cap_identity(request_id) if request_id else None
        return Received(reading.alerts, delivery_key=key, answer=answer)

    def read(
        self,
        body: bytes,
        *,
        received_at: datetime,
        channel_for: ChannelFor,
        headers: Mapping[str, str] | None = None,
    ) -> list[Alert]:
        resource = (headers or {}).get("sentry-hook-resource")
        reading = parse_sentry(
            body, received_at=received_at, channel_for=channel_for, resource=resource
        )
        return reading.alerts

    async def aclose(self) -> None:
        return None


def sign(raw: bytes, secret: str) -> str:
    """Sentry's signature of a body: hex HMAC-SHA256 keyed with the Client Secret."""
    return hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def verify(raw: bytes, given: str, secret: SecretStr) -> None:
    """Refuse a body whose signature is not the Client Secret's, in constant time."""
    expected = sign(raw, secret.get_secret_value())
    if not hmac.compare_digest(expected.encode(), given.strip().lower().encode()):
        raise Unauthorized("Sentry-Hook-Signature does not match the body")


def _factory(config: SentryConfig) -> WebhookSource:
    return SentrySource(config.sentry_client_secret)


register_webhook(
    WebhookPlugin(
        "sentry",
        "Sentry's integration-platform webhooks: issue alerts, issues, metric alerts",
        SentryConfig,
        _factory,
    )
)
