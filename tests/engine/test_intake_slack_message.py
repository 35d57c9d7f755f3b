from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.intake.slack_message import parse_message
from engine.models import AlertStatus

NOW = datetime(2026, 11, 24, tzinfo=UTC)


def parse(text: str):
    return parse_message(text, channel="C0ALERTS", ts="1.000100", reporter="U1", received_at=NOW)


def test_plain_alert_with_a_label():
    alert = parse("SQLiteWALTooLarge db_path=/var/lib/app/app.db")
    assert alert.name == "SQLiteWALTooLarge"
    assert alert.labels == {"db_path": "/var/lib/app/app.db"}
    assert alert.status is AlertStatus.FIRING
    assert alert.source_key == "C0ALERTS/1.000100" and alert.reporter == "U1"


def test_alertmanager_style_status_prefix_and_quoted_values():
    alert = parse('[RESOLVED] alertname=Disk path="/var/log/my app" severity=critical')
    assert alert.status is AlertStatus.RESOLVED
    assert alert.name == "Disk" and alert.severity == "critical"
    assert alert.labels["path"] == "/var/log/my app"


def test_slack_formatting_is_undone_before_parsing():
    alert = parse("SQLiteWALTooLarge db_path=<http://app.db|/srv/app.db> note=a&amp;b")
    assert alert.labels == {"db_path": "/srv/app.db", "note": "a&b"}


@pytest.mark.parametrize("text", ["hello team", "deploy done at 10:00", "", "x=1"])
def test_chatter_is_not_an_alert(text):
    assert parse(text) is None


def test_label_values_and_counts_are_capped():
    alert = parse("Big " + " ".join(f"k{i}={'v' * 5000}" for i in range(100)))
    assert len(alert.labels) == 64
    assert all(len(v) == 1024 for v in alert.labels.values())
