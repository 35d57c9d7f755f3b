"""Loading and parsing the recorded Slack message samples, shared by the source tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.intake.slack import parse_slack_message
from engine.models import Alert, AlertStatus

SAMPLES = Path(__file__).parent / "samples" / "slack"
NOW = datetime(2024, 11, 26, 3, 15, tzinfo=UTC)
FIRING, RESOLVED = AlertStatus.FIRING, AlertStatus.RESOLVED


def event(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / name).read_text())


def parse(message: dict[str, Any]) -> Alert | None:
    return parse_slack_message(message, channel="C0ALERTS", received_at=NOW)


def sample(name: str) -> Alert:
    alert = parse(event(name))
    assert alert is not None, name
    return alert


def assert_sample(
    name: str, expected: tuple[Any, ...], integration: str, *, link_prefix: bool = False
) -> None:
    """A sample parses to its expected (name, status, severity, labels, link).

    `labels` need only be included; `link_prefix` accepts links that carry tracking
    parameters after the expected address.
    """
    alert = sample(name)
    expected_name, status, severity, labels, link = expected
    assert (alert.name, alert.status, alert.severity) == (expected_name, status, severity)
    if link_prefix:
        assert alert.link is not None and alert.link.startswith(link), alert.link
    else:
        assert alert.link == link
    wanted = {"alertname": expected_name, "integration": integration, **labels}
    assert alert.labels.items() >= wanted.items()
