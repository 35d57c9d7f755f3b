from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.intake.slack import parse_slack_message
from engine.models import AlertStatus

NOW = datetime(2026, 11, 24, tzinfo=UTC)
ADDED = ("alertname", "integration")  # labels the entry point adds to every alert


def parse(text: str):
    """A person's plain message, as the Slack listener hands it over."""
    message = {"type": "message", "user": "U1", "text": text, "ts": "1.000100"}
    return parse_slack_message(message, channel="C0ALERTS", received_at=NOW)


def own(labels: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if k not in ADDED}


def test_plain_alert_with_a_label():
    alert = parse("SQLiteWALTooLarge db_path=/var/lib/app/app.db")
    assert alert.name == "SQLiteWALTooLarge"
    assert own(alert.labels) == {"db_path": "/var/lib/app/app.db"}
    assert alert.labels["integration"] == "text"
    assert alert.status is AlertStatus.FIRING
    assert alert.source_key == "C0ALERTS/1.000100" and alert.reporter == "U1"


def test_alertmanager_style_status_prefix_and_quoted_values():
    alert = parse('[RESOLVED] alertname=Disk path="/var/log/my app" severity=critical')
    assert alert.status is AlertStatus.RESOLVED
    assert alert.name == "Disk" and alert.severity == "critical"
    assert alert.labels["path"] == "/var/log/my app"


def test_slack_formatting_is_undone_before_parsing():
    alert = parse("SQLiteWALTooLarge db_path=<http://app.db|/srv/app.db> note=a&amp;b")
    assert own(alert.labels) == {"db_path": "/srv/app.db", "note": "a&b"}


@pytest.mark.parametrize("text", ["hello team", "deploy done at 10:00", "", "x=1"])
def test_chatter_is_not_an_alert(text):
    assert parse(text) is None


def test_label_values_and_counts_are_capped():
    many = parse("Big " + " ".join(f"k{i}={'v' * 40}" for i in range(100)))
    assert len(many.labels) == 64
    long = parse("Big k=" + "v" * 5000)
    assert len(long.labels["k"]) == 1024


# -- through parse_slack_message: whole events --------------------------------


def event(text: str, **extra: object) -> dict[str, object]:
    return {"type": "message", "user": "U0ONCALL", "text": text, "ts": "1.000200", **extra}


def from_slack(message: dict[str, object]):
    return parse_slack_message(message, channel="C0ALERTS", received_at=NOW)


def test_a_persons_alert_through_the_entry_point():
    alert = from_slack(
        event("[FIRING:1] SQLiteWALTooLarge db_path=<http://x|/srv/app.db> severity=warning")
    )
    assert alert.name == "SQLiteWALTooLarge" and alert.severity == "warning"
    assert alert.labels == {
        "alertname": "SQLiteWALTooLarge",
        "integration": "text",
        "db_path": "/srv/app.db",
        "severity": "warning",
    }
    assert (alert.reporter, alert.source_key, alert.link) == (
        "U0ONCALL",
        "C0ALERTS/1.000200",
        "http://x",
    )


def test_firing_and_resolved_text_alerts_share_a_fingerprint():
    firing = from_slack(event("[FIRING:1] Disk path=/var host=db-1"))
    resolved = from_slack(event("[RESOLVED] Disk path=/var host=db-1"))
    assert resolved.status is AlertStatus.RESOLVED
    assert firing.fingerprint == resolved.fingerprint


def test_text_in_rich_text_blocks_only_is_read():
    text = "SQLiteWALTooLarge db_path=/srv/app.db"
    block = {"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}
    alert = from_slack(event("", blocks=[{"type": "rich_text", "elements": [block]}]))
    assert alert is not None and alert.labels["db_path"] == "/srv/app.db"


def bot(text: str) -> dict[str, object]:
    return {"type": "message", "subtype": "bot_message", "bot_id": "B1", "text": text, "ts": "2.0"}


@pytest.mark.parametrize(
    "text",
    ["[FIRING:1] QueueBacklog queue=orders", "alertname=QueueBacklog queue=orders"],
)
def test_an_app_posting_the_text_format_is_read(text):
    alert = from_slack(bot(text))
    assert alert is not None and alert.name == "QueueBacklog"
    assert alert.labels["integration"] == "text" and alert.reporter is None


def test_an_app_message_with_key_values_but_no_alert_mark_is_not_an_alert():
    assert from_slack(bot("Deployed api v1.2 to env=prod sha=abc123")) is None
    assert from_slack(event("Deployed api v1.2 to env=prod sha=abc123")) is not None  # a person


def test_a_persons_thread_reply_is_never_an_alert():
    message = event("[FIRING:1] Disk path=/var", thread_ts="0.5")
    assert from_slack(message) is None


def test_a_thread_broadcast_is_read():
    message = event("[FIRING:1] Disk path=/var", subtype="thread_broadcast", thread_ts="1.000200")
    assert from_slack(message) is not None


def test_the_text_format_from_alertmanagers_own_app_keeps_its_labels():
    message = {
        **bot("[FIRING:1] SQLiteWALTooLarge db_path=/srv/app.db"),
        "username": "Alertmanager",
    }
    alert = from_slack(message)
    assert alert is not None and alert.labels["integration"] == "text"
    assert alert.labels["db_path"] == "/srv/app.db"
