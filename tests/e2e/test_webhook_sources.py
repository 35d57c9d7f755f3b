"""Webhook sources as plugins: each registered source is served, however it arrives."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.intake import sources
from engine.intake.generic import parse_generic
from engine.models import Alert, IncidentState
from engine.routing import ChannelFor

SAMPLES = Path(__file__).parents[1] / "engine" / "intake" / "samples" / "alertmanager"


def vmalert_body() -> bytes:
    """vmalert's array, sent now: a firing alert's end lies a few minutes ahead."""
    alerts = json.loads((SAMPLES / "vmalert_api_v2.json").read_text())
    alerts[0]["endsAt"] = (datetime.now(UTC) + timedelta(minutes=4)).isoformat()
    return json.dumps(alerts).encode()


async def test_vmalert_posting_to_its_notifier_path_opens_incidents(make_harness):
    h = await make_harness()
    body = vmalert_body()
    status, answer = await h.post("alertmanager/api/v2/alerts", body)
    assert status == 200, answer
    # One firing alert opens an incident; the resolved one has nothing to close.
    assert (answer["received"], answer["opened"]) == (2, 1)
    await h.grace.healer.drain()
    [incident] = await h.incidents()
    assert incident.alert.name == "ContainerUnhealthy"
    assert incident.alert.labels["container"] == "web-1"


async def test_the_api_path_is_refused_like_the_webhook_without_the_token(make_harness):
    h = await make_harness()
    status, answer = await h.post("alertmanager/api/v2/alerts", vmalert_body(), token="wrong")
    assert status == 401 and answer["ok"] is False
    assert await h.incidents() == []


def _shouting(body: bytes, *, received_at: datetime, channel_for: ChannelFor) -> list[Alert]:
    """A test-only format: the generic JSON with every alert name upper-cased."""
    alerts = parse_generic(body, received_at=received_at, channel_for=channel_for)
    return [alert.model_copy(update={"name": alert.name.upper()}) for alert in alerts]


@pytest.fixture
def shouting_source(monkeypatch):
    """A source registered the way a new module in engine/intake registers itself."""
    plugin = sources.bearer_plugin("shouting", "a test-only source", _shouting)
    monkeypatch.setitem(sources.WEBHOOKS.entries, plugin.name, plugin)
    return plugin


async def test_a_registered_source_is_served_with_nothing_else_edited(
    shouting_source, make_harness
):
    h = await make_harness()
    body = json.dumps({"name": "DiskFilling", "labels": {"host": "web-1"}})
    status, answer = await h.post("shouting", body)
    assert status == 200 and answer["opened"] == 1, answer
    assert (await h.post("shouting", body, token="wrong"))[0] == 401
    await h.grace.healer.drain()
    [incident] = await h.incidents()
    assert incident.alert.name == "DISKFILLING" and incident.alert.source == "generic"
    assert incident.state is IncidentState.NEEDS_HUMAN
    assert 'grace_alerts_received_total{source="shouting"} 1.0' in await h.metrics()
