"""Grafana's legacy alerting webhook (Grafana 7 and earlier), read for engine/intake/grafana.py.

Legacy alerting (pkg/services/alerting/notifiers/webhook.go) posts one rule's
state: `ruleId`, `ruleName`, `state`, `evalMatches` (series that crossed the
threshold, `value` a number or null) and the rule's `tags`. Its identity is
the rule, so `ok` closes what `alerting` or `no_data` opened. `no_data` is a
firing alert named DatasourceNoData, as unified alerting names it, so that it
never runs the rule's playbook: missing data is not the rule's problem.
`paused`, `pending` and `unknown` are not alerts: they are accepted, nothing
is stored, and the answer says why.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from engine.intake.errors import MAX_ALERTS, IntakeError
from engine.intake.limits import (
    MAX_NAME,
    cap_labels,
    cap_text,
    capped_link,
    fresh_key,
    summary_text,
)
from engine.intake.sources import Received
from engine.models import Alert, AlertStatus, canonical_json, sha256_hex
from engine.routing import ChannelFor

NO_DATA = "DatasourceNoData"
"""The name Grafana's unified alerting gives an alert about a rule that got no data."""

QUIET_STATES = frozenset({"paused", "pending", "unknown"})
"""Legacy states that are not alerts: nothing fires, nothing resolves."""


class EvalMatch(BaseModel):
    """One series that crossed the rule's threshold; `value` is null without data."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    value: float | None = None
    metric: str = ""
    tags: dict[str, str] | None = None


class LegacyPayload(BaseModel):
    """The legacy webhook body (its dashboardId and panelId are not read).
    Grafana 4 spelt the links rule_url and image_url."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    state: Literal["alerting", "ok", "no_data", "paused", "pending", "unknown"]
    ruleId: int | None = None
    ruleName: str = ""
    title: str = ""
    message: str = ""
    ruleUrl: str = Field("", validation_alias=AliasChoices("ruleUrl", "rule_url"))
    imageUrl: str = Field("", validation_alias=AliasChoices("imageUrl", "image_url"))
    evalMatches: Annotated[list[EvalMatch] | None, Field(max_length=MAX_ALERTS)] = None
    tags: dict[str, str] | None = None
    orgId: int = 0


def legacy_rule_key(org_id: int, rule: int | str) -> str:
    """The identity (fingerprint and group) of a legacy rule, whatever its state."""
    return sha256_hex(canonical_json(["grafana-legacy", org_id, rule]))[:16]


def show_value(value: float | None) -> str:
    """A value as Grafana's templates print it: 93.2, 1 (not 1.0), or no value."""
    if value is None:
        return "[no value]"
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


def read_legacy(payload: LegacyPayload, received_at: datetime, channel_for: ChannelFor) -> Received:
    if payload.state in QUIET_STATES:
        reason = f"Grafana legacy state {payload.state!r} is not an alert; nothing was stored"
        return Received([], answer={"ignored": reason})
    rule = payload.ruleName.strip() or _title_rule(payload.title)
    if not rule:
        raise IntakeError("ruleName: must not be blank; Grafana names a legacy alert by its rule")
    matches = payload.evalMatches or []
    labels = {**_common_tags(matches), **(payload.tags or {})}
    name = rule
    if payload.state == "no_data":
        name, labels["rulename"] = NO_DATA, rule
    labels = cap_labels(labels)
    identity = legacy_rule_key(payload.orgId, payload.ruleId if payload.ruleId else rule)
    annotations = _legacy_annotations(payload, matches, rule)
    alert = Alert(
        source="grafana",
        source_key=fresh_key(),
        name=cap_text(name, MAX_NAME),
        status=AlertStatus.RESOLVED if payload.state == "ok" else AlertStatus.FIRING,
        severity=labels.get("severity"),
        labels=labels,
        annotations=cap_labels(annotations),
        text=cap_text(summary_text(annotations)),
        link=capped_link(payload.ruleUrl),
        fingerprint=identity,
        group=identity,
        channel=channel_for(labels),
        received_at=received_at,
    )
    return Received([alert])


def _title_rule(title: str) -> str:
    """The rule name in a notification title, `[Alerting] High CPU`."""
    head, sep, rest = title.strip().partition("] ")
    return rest.strip() if sep and head.startswith("[") else ""


def _common_tags(matches: list[EvalMatch]) -> dict[str, str]:
    """The series tags every match shares: what the alert is about, when it is about one thing."""
    tagged = [match.tags or {} for match in matches]
    if not tagged:
        return {}
    return {k: v for k, v in tagged[0].items() if all(t.get(k) == v for t in tagged[1:])}


def _legacy_annotations(
    payload: LegacyPayload, matches: list[EvalMatch], rule: str
) -> dict[str, str]:
    notes: dict[str, str] = {"grafana_state": payload.state}
    if payload.state == "no_data":
        notes["summary"] = f"Grafana rule {rule} got no data"
    if payload.message.strip():
        notes["description"] = payload.message.strip()
    elif "summary" not in notes and payload.title.strip():
        notes["summary"] = payload.title.strip()
    if matches:
        notes["values"] = ", ".join(f"{m.metric}={show_value(m.value)}" for m in matches[:50])
    if link := capped_link(payload.imageUrl):
        notes["image_url"] = link
    return notes
