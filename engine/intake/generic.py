"""The generic JSON webhook (POST /alerts/generic), documented in docs/alerts.md.

It is the door for anything that is not Alertmanager: a cron job, a CI check,
a home-grown monitor. Its schema is strict (unknown keys are refused) because
the people writing these payloads type them by hand and a misspelt `sevrity`
silently ignored would cost them an afternoon.

The small cap helpers at the bottom are shared with alertmanager.py: both
sources cut untrusted values the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
)

from engine.intake.errors import MAX_ALERTS, intake_error
from engine.intake.limits import (
    MAX_NAME,
    MAX_VALUE,
    Instant,
    cap_identity,
    cap_labels,
    cap_text,
    capped_link,
    fresh_key,
    summary_text,
)
from engine.intake.sources import bearer_plugin, register_webhook
from engine.models import Alert, AlertStatus
from engine.routing import ChannelFor, nowhere


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _http_url(value: str) -> str:
    # Slack renders the link as a button; only web links make sense there, and a
    # javascript: or file: URL from an untrusted sender has no business in a card.
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http or https URL")
    return value


_Name = Annotated[str, AfterValidator(_not_blank)]
_Key = Annotated[str, Field(min_length=1)]
_Url = Annotated[str, AfterValidator(_http_url)]


class GenericAlert(BaseModel):
    """One alert as the generic webhook accepts it; every field is in docs/alerts.md."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: _Name
    status: AlertStatus = AlertStatus.FIRING
    severity: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    text: str | None = None
    starts_at: Instant | None = None
    ends_at: Instant | None = None
    link: _Url | None = None
    fingerprint: _Key | None = None
    group: _Key | None = None
    id: _Key | None = None


class GenericBatch(BaseModel):
    """Several alerts in one request: {"alerts": [...]}."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    alerts: Annotated[list[GenericAlert], Field(min_length=1, max_length=MAX_ALERTS)]


def _shape(value: Any) -> str | None:
    # Choosing the branch by the presence of "alerts" (rather than trying both)
    # keeps error messages about the branch the sender meant.
    if isinstance(value, dict):
        return "batch" if "alerts" in value else "single"
    if isinstance(value, GenericBatch):
        return "batch"
    return "single" if isinstance(value, GenericAlert) else None


_TAGS = frozenset({"batch", "single"})
_BODY: TypeAdapter[GenericBatch | GenericAlert] = TypeAdapter(
    Annotated[
        Annotated[GenericBatch, Tag("batch")] | Annotated[GenericAlert, Tag("single")],
        Discriminator(
            _shape,
            custom_error_type="body_shape",
            custom_error_message='expected one alert object or {"alerts": [...]}',
        ),
    ]
)
_ALERT_FIELDS = "; allowed: " + ", ".join(GenericAlert.model_fields)


def parse_generic(
    body: bytes, *, received_at: datetime, channel_for: ChannelFor = nowhere
) -> list[Alert]:
    """The alerts in one generic webhook body, capped; IntakeError when it does not fit.

    An alert with an `id` gets source_key "id:<id>", so a retried request is
    stored once; without one every received alert is a new one (a fresh key).
    """
    try:
        payload = _BODY.validate_json(body)
    except ValidationError as error:
        raise intake_error(error, tags=_TAGS, unknown_hint=_unknown_hint) from None
    alerts = payload.alerts if isinstance(payload, GenericBatch) else [payload]
    return [_alert(item, received_at, channel_for) for item in alerts]


def _unknown_hint(loc: Sequence[str | int]) -> str:
    return "; allowed: alerts" if list(loc[:1]) == ["batch"] and len(loc) == 2 else _ALERT_FIELDS


def _alert(item: GenericAlert, received_at: datetime, channel_for: ChannelFor) -> Alert:
    labels = cap_labels(item.labels)
    severity = item.severity if item.severity is not None else item.labels.get("severity")
    text = item.text if item.text is not None else summary_text(item.annotations)
    return Alert(
        source="generic",
        source_key=f"id:{cap_identity(item.id)}" if item.id else fresh_key(),
        name=cap_text(item.name, MAX_NAME),
        status=item.status,
        severity=None if severity is None else cap_text(severity, MAX_VALUE),
        labels=labels,
        annotations=cap_labels(item.annotations),
        text=cap_text(text),
        starts_at=item.starts_at,
        ends_at=item.ends_at,
        link=capped_link(item.link),
        channel=channel_for(labels),
        fingerprint=cap_identity(item.fingerprint) if item.fingerprint else "",
        group=cap_identity(item.group) if item.group else "",
        received_at=received_at,
    )


register_webhook(
    bearer_plugin("generic", "GRACE's own JSON, for anything else (docs/alerts.md)", parse_generic)
)
