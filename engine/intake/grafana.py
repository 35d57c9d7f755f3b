"""Grafana's webhook contact point (POST /alerts/grafana): unified and legacy alerting.

Unified alerting (Grafana 8 and later, grafana/alerting's receivers/webhook)
posts Alertmanager's notification with Grafana's additions: payload
`"version": "1"`, `orgId`, and per alert `values` (ref id -> number, or null),
`valueString` and the silence, dashboard and panel URLs. One notification is
one alert group, firing and resolved alerts together, so:

- its alerts share one incident group, derived from the organisation, the
  receiver and Grafana's groupKey (as alertmanager_group does);
- each alert keeps Grafana's fingerprint as its identity;
- Grafana names every alert by its rule title in `alertname`; its NoData and
  Error alerts are named `DatasourceNoData` and `DatasourceError` and carry
  the rule title in `rulename`, which is also read when `alertname` is missing.

Legacy alerting (Grafana 7 and earlier) posts one rule's state instead:
grafana_legacy.py reads it. The two shapes are told apart by their fields (`alerts`, or the rule's
fields); anything else is refused with what GRACE expected. Unknown keys are
ignored: both payloads grew across releases.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    TypeAdapter,
    ValidationError,
)

from engine.intake.alertmanager import AlertmanagerAlert, prometheus_alert
from engine.intake.errors import MAX_ALERTS, IntakeError, intake_error
from engine.intake.grafana_legacy import LegacyPayload, read_legacy, show_value
from engine.intake.limits import (
    Instant,
    capped_link,
    fresh_key,
)
from engine.intake.sources import (
    JSON,
    BearerConfig,
    Received,
    Request,
    WebhookPlugin,
    WebhookSource,
    register_webhook,
    require_bearer,
)
from engine.models import Alert, canonical_json, sha256_hex
from engine.routing import ChannelFor, nowhere

_LEGACY_KEYS = frozenset({"ruleId", "ruleName", "evalMatches", "ruleUrl", "rule_url"})
_EXPECTED = (
    "not a Grafana notification; GRACE expected unified alerting's webhook"
    ' ({"version": "1", "alerts": [...]}) or legacy alerting\'s'
    ' ({"ruleId", "ruleName", "state", "evalMatches", ...})'
)


# -- unified alerting (Grafana 8 and later) ----------------------------------------


class GrafanaAlert(AlertmanagerAlert):
    """One alert of a unified notification (templates.ExtendedAlert in grafana/alerting):
    Alertmanager's alert with Grafana's additions."""

    endsAt: Instant | None = None
    silenceURL: str = ""
    dashboardURL: str = ""
    panelURL: str = ""
    imageURL: str = ""
    values: dict[str, float | None] | None = None
    valueString: str = ""


class UnifiedPayload(BaseModel):
    """The unified webhook body, as far as GRACE reads it. Only `alerts` is required.

    Grafana also sends status, commonLabels, commonAnnotations, truncatedAlerts
    and the rendered title, state ("alerting" or "ok") and message: all of it
    is in the alerts already, so none of it is read (nor refused).
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    version: Literal["1"] = "1"
    receiver: str = ""
    orgId: int = 0
    groupKey: str = ""
    groupLabels: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    alerts: Annotated[list[GrafanaAlert], Field(min_length=1, max_length=MAX_ALERTS)]


def _shape(value: Any) -> str | None:
    # Choosing the branch by its fields (rather than trying both) keeps error
    # messages about the shape the sender meant.
    if isinstance(value, dict):
        if "alerts" in value:
            return "unified"
        return "legacy" if _LEGACY_KEYS & value.keys() else None
    return None


_TAGS = frozenset({"unified", "legacy"})
_BODY: TypeAdapter[UnifiedPayload | LegacyPayload] = TypeAdapter(
    Annotated[
        Annotated[UnifiedPayload, Tag("unified")] | Annotated[LegacyPayload, Tag("legacy")],
        Discriminator(_shape, custom_error_type="body_shape", custom_error_message=_EXPECTED),
    ]
)


def read_grafana(
    body: bytes, *, received_at: datetime, channel_for: ChannelFor = nowhere
) -> Received:
    """What one Grafana notification brings; IntakeError when it is not one."""
    try:
        payload = _BODY.validate_json(body)
    except ValidationError as error:
        raise _version_error(error) or intake_error(error, tags=_TAGS) from None
    if isinstance(payload, UnifiedPayload):
        return Received(_unified(payload, received_at, channel_for))
    return read_legacy(payload, received_at, channel_for)


def parse_grafana(
    body: bytes, *, received_at: datetime, channel_for: ChannelFor = nowhere
) -> list[Alert]:
    """The alerts of one notification (none for a paused or pending legacy rule)."""
    return read_grafana(body, received_at=received_at, channel_for=channel_for).alerts


def grafana_group(org_id: int, receiver: str, group_key: str) -> str:
    """The incident key of a unified notification's group: one group, one incident."""
    return sha256_hex(canonical_json(["grafana", org_id, receiver, group_key]))[:16]


def _version_error(error: ValidationError) -> IntakeError | None:
    first = error.errors(include_url=False)[0]
    if first["loc"] != ("unified", "version"):
        return None
    given = first.get("input")
    shown = repr(given) if isinstance(given, str | int | float | None) else "that"
    shown = shown if len(shown) <= 24 else shown[:24] + "…"
    hint = " (Alertmanager's webhook goes to /alerts/alertmanager)" if given in ("3", "4") else ""
    return IntakeError(f"version: {shown} is not Grafana's webhook version '1'{hint}")


def _unified(
    payload: UnifiedPayload, received_at: datetime, channel_for: ChannelFor
) -> list[Alert]:
    batch = fresh_key()  # one per request; the index makes each alert's key unique
    group = _group_of(payload)
    fallback = capped_link(payload.externalURL)
    return [
        _unified_alert(item, index, f"{batch}-{index}", group, fallback, received_at, channel_for)
        for index, item in enumerate(payload.alerts)
    ]


def _group_of(payload: UnifiedPayload) -> str:
    """The group's key. Without a groupKey its group labels name it within the
    receiver; with neither, each alert is its own group ("")."""
    if payload.groupKey:
        return grafana_group(payload.orgId, payload.receiver, payload.groupKey)
    if payload.groupLabels:
        return grafana_group(payload.orgId, payload.receiver, canonical_json(payload.groupLabels))
    return ""


def _unified_alert(
    item: GrafanaAlert,
    index: int,
    source_key: str,
    group: str,
    fallback_link: str | None,
    received_at: datetime,
    channel_for: ChannelFor,
) -> Alert:
    return prometheus_alert(
        item,
        source="grafana",
        name=_rule_title(item.labels, index),
        annotations={**_grafana_extras(item), **item.annotations},
        source_key=source_key,
        group=group,
        fallback_link=fallback_link,
        received_at=received_at,
        channel_for=channel_for,
    )


def _rule_title(labels: Mapping[str, str], index: int) -> str:
    """`alertname` (the rule title), else `rulename` (a NoData or Error alert's rule)."""
    for key in ("alertname", "rulename"):
        if (value := labels.get(key)) and value.strip():
            return value
    blank = "must not be blank" if "alertname" in labels else "Field required"
    raise IntakeError(
        f"alerts[{index}].labels.alertname: {blank}; Grafana names each alert by its rule"
        " title there (or in rulename), and this alert has neither"
    )


def _grafana_extras(item: GrafanaAlert) -> dict[str, str]:
    """What Grafana adds to an alert, kept as annotations: the values and its links."""
    extras: dict[str, str] = {}
    if item.values:
        pairs = sorted(item.values.items())  # Go's templates range over a map in key order
        extras["values"] = ", ".join(f"{ref}={show_value(value)}" for ref, value in pairs)
    if item.valueString:
        extras["value_string"] = item.valueString
    for key, url in (
        ("silence_url", item.silenceURL),
        ("dashboard_url", item.dashboardURL),
        ("panel_url", item.panelURL),
        ("image_url", item.imageURL),
    ):
        if link := capped_link(url):
            extras[key] = link
    return extras


# -- the source -------------------------------------------------------------------------


@dataclass(frozen=True)
class GrafanaSource:
    """A BearerSource that can also answer "nothing to store", and that takes the
    token as a Basic password too.

    Unified alerting sends `Authorization: Bearer GRACE_WEBHOOK_TOKEN` since 9.1
    (the contact point's Authorization header). Legacy alerting and unified
    alerting before 9.1 can only send Basic authentication (username and
    password): the password is then the token, whatever the username.
    """

    token: SecretStr | None
    name: str = "grafana"
    content_types: frozenset[str] = JSON

    def check_headers(self, headers: Mapping[str, str]) -> None:
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            headers = {"authorization": f"Bearer {_basic_password(given.strip())}"}
        require_bearer(headers, self.token)

    async def receive(self, request: Request) -> Received:
        return read_grafana(
            request.body, received_at=request.received_at, channel_for=request.channel_for
        )

    def read(
        self,
        body: bytes,
        *,
        received_at: datetime,
        channel_for: ChannelFor,
        headers: Mapping[str, str] | None = None,
    ) -> list[Alert]:
        return parse_grafana(body, received_at=received_at, channel_for=channel_for)

    async def aclose(self) -> None:
        return None


def _basic_password(credentials: str) -> str:
    """The password of Basic credentials (base64 of `user:password`), or "" when malformed."""
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return ""
    _user, colon, password = decoded.partition(":")
    return password if colon else ""


def _source(config: BearerConfig) -> WebhookSource:
    return GrafanaSource(config.webhook_token)


register_webhook(
    WebhookPlugin(
        "grafana",
        "Grafana's webhook contact point: unified alerting (8 and later) and legacy alerting",
        BearerConfig,
        _source,
    )
)
