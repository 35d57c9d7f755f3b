"""Messages in Slack alert channels become alerts, whoever posted them.

Alertmanager, Grafana, Datadog, AWS Chatbot (CloudWatch) and Sentry each post
their own layout; people type `[FIRING:1] Name key=value`. Each layout is a
module that registers itself (engine/intake/sources.py), recognises its own
messages and returns None for anything else, so the layouts are tried in
their order and the plain-text reading comes last. None means
"not an alert": chatter in an alert channel is normal and is ignored quietly.

Every alert made here has source "slack", source_key "<channel>/<ts>" (Slack's
own identity of the message, so a redelivered event is the same alert), and
`labels["integration"]` naming what posted it, so playbooks can tell a Sentry
issue from a Grafana rule of the same name.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from engine.intake.limits import MAX_KEY, MAX_NAME, MAX_VALUE, cap_pairs, cap_text, capped_link
from engine.intake.slack_format import AlertParts, SlackMessage
from engine.intake.slack_people import PERSON
from engine.intake.slack_reader import read_message
from engine.intake.sources import SlackLayout, slack_layouts
from engine.models import Alert, canonical_json, sha256_hex

logger = logging.getLogger(__name__)

# Plain messages, integrations' posts, broadcasts of thread replies and messages
# with a file. Edits, deletions, joins, topic changes and the like are not alerts.
_ALERT_SUBTYPES = frozenset({"bot_message", "thread_broadcast", "file_share"})


def parse_slack_message(event: object, *, channel: str, received_at: datetime) -> Alert | None:
    """The alert a Slack `message` event carries, or None when it is not one.

    A reply in a thread is conversation about an alert, so the plain-text
    reading never applies to it; an integration's reply (a status update an
    app posts under its alert) is still read by that integration's parser.
    """
    if not isinstance(event, Mapping):
        return None
    if not _alert_subtype(event.get("subtype")):
        return None
    message = read_message(event)
    for layout in _layouts(message):
        try:
            parts = layout.parse(message)
        except Exception:
            # One broken parser must not blind GRACE to every other format.
            logger.exception("the %s parser failed on a message in %s", layout.name, channel)
            continue
        if parts is not None and parts.name.strip():
            return _alert(parts, layout.name, message, event, channel, received_at)
    return None


def _alert_subtype(subtype: object) -> bool:
    return subtype is None or (isinstance(subtype, str) and subtype in _ALERT_SUBTYPES)


def _layouts(message: SlackMessage) -> Iterator[SlackLayout]:
    return (
        layout for layout in slack_layouts() if layout.thread_replies or not message.is_thread_reply
    )


def _alert(
    parts: AlertParts,
    integration: str,
    message: SlackMessage,
    event: Mapping[str, Any],
    channel: str,
    received_at: datetime,
) -> Alert:
    name = cap_text(parts.name.strip(), MAX_NAME)
    labels = cap_pairs(_labels(name, integration, parts.labels))
    ts = event.get("ts")
    # A person answers for what they post; an integration's bot user does not.
    user = event.get("user")
    reporter = user if isinstance(user, str) and not message.is_bot else None
    return Alert(
        source="slack",
        source_key=f"{channel}/{ts if isinstance(ts, str) else ''}",
        name=name,
        status=parts.status,
        severity=cap_text(parts.severity, MAX_KEY) if parts.severity else None,
        labels=labels,
        annotations=cap_pairs((k, v) for k, v in parts.annotations.items() if k and v),
        text=cap_text(message.text if parts.text is None else parts.text),
        starts_at=parts.starts_at,
        link=capped_link(parts.link),
        fingerprint=_fingerprint(integration, parts.identity),
        channel=channel,
        reporter=reporter,
        thread_ts=ts if integration == PERSON and isinstance(ts, str) else None,
        received_at=received_at,
    )


def _labels(name: str, integration: str, labels: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    # alertname and integration first, so the label cap can never cut them.
    yield "alertname", name
    yield "integration", integration
    for key, value in labels.items():
        if key and value and key not in ("alertname", "integration"):
            yield key, value


def _fingerprint(integration: str, identity: Mapping[str, str] | None) -> str:
    """From the integration's own identity of the alert; "" lets the Alert derive it."""
    if not identity:
        return ""
    capped = {key: value[:MAX_VALUE] for key, value in identity.items()}
    return sha256_hex(canonical_json({"integration": integration, **capped}))[:16]
