"""Alertmanager's webhook (POST /alerts/alertmanager), and the alerts API beside it.

https://prometheus.io/docs/alerting/latest/configuration/#webhook_config

Alertmanager sends one notification per alert group: every alert of the group,
firing and resolved, each time the group changes or repeats. So:

- all alerts of one notification share a `group` derived from the receiver and
  Alertmanager's groupKey, and become ONE incident, however many they are;
- each alert keeps Alertmanager's own fingerprint as its identity, so the
  incident knows which of its members still fire;
- every received alert is counted (source_key is fresh per alert, never derived
  from content): Alertmanager's repeats are real notifications, and content
  hashing would cost time on the hottest path for nothing the store needs.

Every release since 0.15 is read: payload version "3" or "4", with or without
`truncatedAlerts`, a `groupKey` that relays send as a number or not at all,
and alerts without `status` (their end time says whether they resolved).
Unknown keys are ignored, not refused: the payload grows across releases and
GRACE must not break on an upgrade.

vmalert, and Prometheus itself, post alerts to Alertmanager's API instead: a
JSON array of alerts without status or group (`/api/v2/alerts`, which vmalert
appends to its `-notifier.url`). The same route takes that array, and the
route `/alerts/alertmanager/api/v2/alerts` is there for vmalert to find; each
such alert is its own group.

This is the hottest parser (alert storms arrive here), so the body is validated
once, straight from the bytes, and nothing is serialised again per alert.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError

from engine.intake.errors import MAX_ALERTS, IntakeError, intake_error
from engine.intake.limits import (
    MAX_NAME,
    Instant,
    cap_identity,
    cap_labels,
    cap_text,
    capped_link,
    fresh_key,
    summary_text,
)
from engine.intake.sources import bearer_plugin, register_webhook
from engine.models import Alert, AlertStatus, canonical_json, sha256_hex
from engine.routing import ChannelFor, nowhere

ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)
"""Go's zero time, which Alertmanager sends as endsAt of an alert that has not ended."""

API_PATH = "/api/v2/alerts"
"""What vmalert appends to its notifier URL: served under this source's route too."""


class AlertmanagerAlert(BaseModel):
    """One alert of a notification. Defaults exist so tests and benches can build them.

    Without `status` (Alertmanager's alerts API, older relays) it is firing
    until its `endsAt` has passed.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    status: AlertStatus | None = None
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: Instant | None = None
    endsAt: Instant | None = ZERO_TIME
    generatorURL: str = ""
    fingerprint: str = ""


class AlertmanagerPayload(BaseModel):
    """The webhook body, field names as on the wire, so model_dump_json() is a valid payload.

    Only `alerts` is required: the rest is what every release sends, and a
    relay that leaves some of it out still delivers real alerts.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    version: Literal["3", "4"] = "4"
    groupKey: str | int | None = None
    truncatedAlerts: int = 0
    status: Literal["firing", "resolved"] = "firing"
    receiver: str = ""
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    alerts: Annotated[list[AlertmanagerAlert], Field(min_length=1, max_length=MAX_ALERTS)]


class _ApiAlerts(RootModel[list[AlertmanagerAlert]]):
    """The alerts API's body: a bare array of alerts, as vmalert and Prometheus post it."""

    root: Annotated[list[AlertmanagerAlert], Field(min_length=1, max_length=MAX_ALERTS)]


def parse_alertmanager(
    body: bytes, *, received_at: datetime, channel_for: ChannelFor = nowhere
) -> list[Alert]:
    """The alerts of one webhook notification (or alerts API array), capped;
    IntakeError when it does not fit.

    Webhook alerts are counted, not de-duplicated by content: each gets a fresh
    source_key (one fresh key per request plus the alert's index), so a repeated
    notification is stored as new alerts that join the same incident.
    """
    batch = fresh_key()  # one per request; the index makes each alert's key unique
    if body.lstrip()[:1] == b"[":
        try:
            items = _ApiAlerts.model_validate_json(body).root
        except ValidationError as error:
            raise intake_error(error, root="alerts") from None
        group, fallback_link = "", None
    else:
        try:
            payload = AlertmanagerPayload.model_validate_json(body)
        except ValidationError as error:
            raise _version_error(error) or intake_error(error) from None
        items = payload.alerts
        group, fallback_link = _group_of(payload), capped_link(payload.externalURL)
    return [
        _alert(item, index, f"{batch}-{index}", group, fallback_link, received_at, channel_for)
        for index, item in enumerate(items)
    ]


def alertmanager_group(receiver: str, group_key: str) -> str:
    """The incident key of an Alertmanager group: one group, one incident.

    The receiver is part of it because two receivers may route the same group
    to GRACE with different intent (say, a team channel and a platform one).
    """
    return sha256_hex(canonical_json(["alertmanager", receiver, group_key]))[:16]


def _group_of(payload: AlertmanagerPayload) -> str:
    """The group's key. Without a groupKey its group labels name it within the
    receiver; with neither, nothing says which alerts belong together, so each
    alert is its own group ("")."""
    if isinstance(payload.groupKey, str | int) and not isinstance(payload.groupKey, bool):
        return alertmanager_group(payload.receiver, str(payload.groupKey))
    if payload.groupLabels:
        return alertmanager_group(payload.receiver, canonical_json(payload.groupLabels))
    return ""


def _version_error(error: ValidationError) -> IntakeError | None:
    # version is validated first, so a payload of another version is refused for
    # its version, not for whatever else changed between versions.
    first = error.errors(include_url=False)[0]
    if first["loc"] != ("version",):
        return None
    return IntakeError(_unsupported(first["input"]))


def _unsupported(version: object) -> str:
    shown = repr(version) if isinstance(version, str | int | float | None) else "that"
    if len(shown) > 24:
        shown = shown[:24] + "…"
    return f"version: webhook version {shown} is not supported; GRACE reads versions '3' and '4'"


def _alert(
    item: AlertmanagerAlert,
    index: int,
    source_key: str,
    group: str,
    fallback_link: str | None,
    received_at: datetime,
    channel_for: ChannelFor,
) -> Alert:
    name = item.labels.get("alertname")
    if not name or not name.strip():
        problem = "Field required" if name is None else "must not be blank"
        raise IntakeError(f"alerts[{index}].labels.alertname: {problem}")
    return prometheus_alert(
        item,
        source="alertmanager",
        name=name,
        annotations=item.annotations,
        source_key=source_key,
        group=group,
        fallback_link=fallback_link,
        received_at=received_at,
        channel_for=channel_for,
    )


def prometheus_alert(
    item: AlertmanagerAlert,
    *,
    source: str,
    name: str,
    annotations: dict[str, str],
    source_key: str,
    group: str,
    fallback_link: str | None,
    received_at: datetime,
    channel_for: ChannelFor,
) -> Alert:
    """An alert in Alertmanager's shape as GRACE stores it; Grafana's are too."""
    labels = cap_labels(item.labels)
    fields: dict[str, Any] = {
        "source": source,
        "source_key": source_key,
        "name": cap_text(name, MAX_NAME),
        "status": item.status or _status_by_end(item.endsAt, received_at),
        "severity": labels.get("severity"),
        "labels": labels,
        "annotations": cap_labels(annotations),
        "text": cap_text(summary_text(item.annotations)),
        "starts_at": _real_time(item.startsAt),
        "ends_at": _real_time(item.endsAt),
        "link": capped_link(item.generatorURL) or fallback_link,
        "fingerprint": cap_identity(item.fingerprint),
        "group": group,
        "channel": channel_for(labels),
        "received_at": received_at,
    }
    # Validating the Alert again keeps its invariants (and derives the fingerprint
    # when none was sent); measured, it is cheaper than model_construct.
    return Alert.model_validate(fields)


def _status_by_end(ends_at: datetime | None, received_at: datetime) -> AlertStatus:
    ended = ends_at is not None and ends_at.year > 1 and ends_at <= received_at
    return AlertStatus.RESOLVED if ended else AlertStatus.FIRING


def _real_time(value: datetime | None) -> datetime | None:
    # Any instant in year 1 is Go's zero time, whatever offset it was written with.
    return None if value is None or value.year == 1 else value


register_webhook(
    bearer_plugin(
        "alertmanager",
        "Alertmanager's webhook (every release since 0.15), and the alerts API vmalert posts to",
        parse_alertmanager,
        subpaths=(API_PATH,),
        lenient=True,
    )
)
