"""The layers behind the HTTP edge, fuzzed directly and with more examples: every
webhook's reader and the Slack message reader. Whatever they are given, they return
alerts or refuse with IntakeError, and every alert they return can be stored and shown:
its text is UTF-8, its instants are UTF-8 text in UTC (storage/db.py time_text), and
its card carries no raw mention or link from it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.cards import card_blocks, card_text
from bot.ids import slack_id
from bot.settings import Settings
from bot.webhooks import build_sources
from engine.intake.errors import IntakeError
from engine.intake.limits import storable_json
from engine.intake.slack import parse_slack_message
from engine.models import Alert, Incident, IncidentState
from storage.db import time_text
from tests.fuzz.conftest import FUZZ, raw_markup
from tests.fuzz.samples import mutated_samples
from tests.fuzz.strategies import broken_bodies, json_values, message_event, mostly

DEEPER = settings(FUZZ, max_examples=4000)
NOW = datetime(2024, 11, 26, 3, 0, tzinfo=UTC)
SOURCES = build_sources(Settings(sns_topics=["arn:aws:sns:us-east-1:1:t"]))
READERS = ("alertmanager", "grafana", "datadog", "generic", "sentry", "sns")
SENTRY_RESOURCES = {"sentry-hook-resource": "issue"}


def assert_storable_and_shown(alert: Alert) -> None:
    for value in alert.model_dump(mode="json").values():
        json.dumps(value, ensure_ascii=False).encode("utf-8")  # no lone surrogate anywhere
    for instant in (alert.starts_at, alert.ends_at, alert.received_at):
        if instant is not None:
            time_text(instant)
    incident = Incident(
        id=1,
        state=IncidentState.OPEN,
        fingerprint=alert.fingerprint,
        alert=alert,
        channel="C0ALERTS",
        first_seen=alert.received_at,
        last_seen=alert.received_at,
        created_at=NOW,
        updated_at=NOW,
    )
    shown = json.dumps([b.to_dict() for b in card_blocks(incident)]) + card_text(incident)
    assert raw_markup(shown) == [], raw_markup(shown)


def _read(source: str, body: bytes) -> list[Alert]:
    headers = SENTRY_RESOURCES if source == "sentry" else None
    try:
        return SOURCES[source].read(
            body, received_at=NOW, channel_for=lambda _: "C0ALERTS", headers=headers
        )
    except IntakeError:
        return []


def _bodies(source: str) -> st.SearchStrategy[bytes]:
    valid = mutated_samples(source).map(lambda doc: json.dumps(doc).encode())
    return mostly(
        valid,
        st.one_of(json_values.map(lambda v: json.dumps(v).encode()), valid.flatmap(broken_bodies)),
    )


@given(source=st.sampled_from(READERS), data=st.data())
@DEEPER
def test_every_webhook_reader_refuses_or_reads_what_can_be_stored(
    source: str, data: st.DataObject
) -> None:
    for alert in _read(source, data.draw(_bodies(source))):
        assert_storable_and_shown(alert)


slack_messages = mostly(mutated_samples("slack"), message_event(), one_in=3)


@given(event=slack_messages)
@DEEPER
def test_the_slack_message_reader_reads_what_can_be_stored(event: Any) -> None:
    # As bot/listeners/alerts.py hands it over: surrogates replaced, the event's ts checked.
    if not isinstance(event, dict) or slack_id("ts", event.get("ts")) is None:
        return
    alert = parse_slack_message(storable_json(event), channel="C0ALERTS", received_at=NOW)
    if alert is not None:
        assert_storable_and_shown(alert)
