"""Datadog's webhook integration, read from real-shaped payloads.

The samples in samples/datadog/ follow Datadog's Webhooks integration: the
default payload of its tile (body, last_updated, event_type, title, date, org,
id), with `$EVENT_MSG` as Datadog fills it (`%%%` markdown, the status line,
the Monitor Status link), and the custom payloads teams write with the
documented `$ALERT_*`, `$TAGS`, `$HOSTNAME`, `$LINK` variables, flat or nested.
The values are our own.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engine.intake.datadog import parse_datadog, variables
from engine.intake.errors import IntakeError
from engine.intake.sources import BearerSource, webhook_plugins
from engine.models import Alert, AlertStatus

SAMPLES = Path(__file__).parent / "samples" / "datadog"
NOW = datetime(2024, 11, 26, 3, 15, tzinfo=UTC)
FIRING, RESOLVED = AlertStatus.FIRING, AlertStatus.RESOLVED


def payload(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / name).read_text())


def read(data: dict[str, Any] | bytes) -> Alert:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    [alert] = parse_datadog(raw, received_at=NOW, channel_for=lambda labels: "C0ALERTS")
    return alert


def test_the_default_payload_of_a_multi_alert_monitor():
    alert = read(payload("default_triggered.json"))
    assert (alert.source, alert.name, alert.status, alert.severity) == (
        "datadog",
        "Docker container unhealthy",
        FIRING,
        None,
    )
    assert alert.labels == {
        "monitor_id": "148822107",  # from the Monitor Status link of the body
        "container_name": "web-1",
        "docker_image": "shop/web:1.4",
        "host": "web-host-3",
    }
    assert alert.link is not None
    assert alert.link.startswith("https://app.datadoghq.com/monitors/148822107?group=")
    assert alert.starts_at == datetime(2024, 11, 26, 3, 5, 12, tzinfo=UTC)
    assert alert.source_key == "event:7714326590112233445"
    assert alert.annotations["event_type"] == "service_check"
    assert "%%%" not in alert.text and "reports unhealthy" in alert.text
    assert alert.channel == "C0ALERTS"


@pytest.mark.parametrize(
    ("firing", "resolved"),
    [
        ("default_triggered.json", "default_recovered.json"),
        ("custom_triggered.json", "custom_recovered.json"),
    ],
)
def test_a_recovery_is_the_same_alert_as_its_trigger(firing, resolved):
    fired, ended = read(payload(firing)), read(payload(resolved))
    assert (fired.status, ended.status) == (FIRING, RESOLVED)
    assert fired.fingerprint == ended.fingerprint
    assert fired.source_key != ended.source_key  # two notifications, both stored


def test_another_group_of_the_monitor_is_another_alert():
    data = payload("default_triggered.json")
    data["title"] = data["title"].replace("container_name:web-1", "container_name:web-2")
    other = read(data)
    assert other.fingerprint != read(payload("default_triggered.json")).fingerprint
    assert other.labels["container_name"] == "web-2"


def test_a_custom_payload_brings_the_monitor_its_tags_and_its_query():
    alert = read(payload("custom_triggered.json"))
    assert (alert.name, alert.severity) == ("Pods crash looping", "P2")
    assert alert.labels == {
        "monitor_id": "151903344",
        "priority": "P2",
        "metric": "kubernetes_state.container.waiting",
        "env": "prod",
        "kube_cluster_name": "prod-eu-1",
        "kube_deployment": "checkout",
        "kube_namespace": "shop",
        "team": "payments",
    }
    assert alert.annotations["query"].startswith("max(last_10m):max:kubernetes_state")
    assert alert.annotations["cycle_key"] == "7715001122334455667"
    assert alert.link == "https://app.datadoghq.com/event/event?id=7715001122334455667"
    assert alert.starts_at == datetime(2024, 11, 26, 3, 35, tzinfo=UTC)  # a number, in ms


def test_nested_variables_and_a_tag_list_are_found():
    alert = read(payload("nested_warn.json"))
    assert (alert.name, alert.status, alert.severity) == (
        "Disk almost full on db-host-1",
        FIRING,
        "P1",
    )
    assert (
        alert.labels.items()
        >= {
            "monitor_id": "151911208",
            "host": "db-host-1",
            "device": "/dev/nvme1n1",
            "log_dir": "/var/log/app",
            "metric": "system.disk.in_use",
        }.items()
    )
    assert alert.annotations["transition"] == "Warn"


def test_unfilled_variables_are_no_values():
    alert = read(payload("no_data.json"))
    assert (alert.name, alert.status) == ("orders-worker heartbeat", FIRING)
    assert "monitor_id" not in alert.labels and "priority" not in alert.labels
    assert alert.labels == {"service": "orders-worker", "env": "prod", "host": "worker-host-2"}


def test_without_a_monitor_the_name_and_scope_are_the_identity():
    first, again = read(payload("no_data.json")), read(payload("no_data.json"))
    assert first.fingerprint == again.fingerprint
    data = payload("no_data.json")
    data["title"] = "[Recovered] orders-worker heartbeat"
    assert read(data).fingerprint == first.fingerprint


def test_a_payload_without_event_id_is_a_new_alert_each_time():
    data = payload("no_data.json")
    del data["id"]
    assert read(data).source_key != read(data).source_key


@pytest.mark.parametrize(
    ("title", "status", "severity"),
    [
        ("[Triggered] CPU high", FIRING, None),
        ("[Re-Triggered] CPU high", FIRING, None),
        ("[P1] [Triggered] CPU high", FIRING, "P1"),
        ("[Triggered] [P3] CPU high", FIRING, "P3"),
        ("[Warn] CPU high", FIRING, "warning"),
        ("[Re-Warn] CPU high", FIRING, "warning"),
        ("[No Data] CPU high", FIRING, None),
        ("[Re-No Data] CPU high", FIRING, None),
        ("[Renotify] CPU high", FIRING, None),
        ("[Recovered] CPU high", RESOLVED, None),
        ("[Recovered on {host:web-1}] CPU high", RESOLVED, None),
    ],
)
def test_title_transitions(title, status, severity):
    alert = read({"title": title, "id": "1", "body": ""})
    assert (alert.name, alert.status, alert.severity) == ("CPU high", status, severity)


def test_the_transition_variable_wins_over_a_title_without_one():
    alert = read({"title": "CPU high on web-1", "alert_transition": "Recovered"})
    assert (alert.name, alert.status) == ("CPU high on web-1", RESOLVED)
    alert = read({"title": "CPU high on web-1", "alert_type": "success"})
    assert alert.status is RESOLVED


@pytest.mark.parametrize(
    ("data", "wanted"),
    [
        ({"ALERT_ID": "12"}, {"alert_id": "12"}),
        ({"alertId": 12}, {"alert_id": "12"}),
        ({"monitor": {"id": "12"}}, {"alert_id": "12"}),
        ({"alert": {"id": "12", "transition": "Warn"}}, {"alert_id": "12", "transition": "Warn"}),
        ({"org": {"id": "99", "name": "Acme"}}, {"org": "Acme"}),  # org.id is not the event id
        ({"priority": "normal", "alert_priority": "P2"}, {"priority": "P2"}),
        ({"tags": ["a:b", "c"]}, {"tags": "a:b, c"}),
        ({"alert_id": "$ALERT_ID", "hostname": "null", "tags": ""}, {}),
    ],
)
def test_variables_are_found_however_the_payload_spells_them(data, wanted):
    assert variables(data) == wanted


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{broken", "invalid JSON"),
        (b"[]", "body"),
        (b'{"body": "something happened"}', "title: Field required"),
        (b'{"title": "   "}', "title: Field required"),
    ],
)
def test_a_payload_that_names_no_alert_is_refused(raw, message):
    with pytest.raises(IntakeError, match=message):
        read(raw)


def test_huge_and_deep_payloads_stay_capped():
    deep: dict[str, Any] = {"alert_id": "666"}
    for _ in range(50):
        deep = {"a": deep}
    data = payload("custom_triggered.json") | {
        "title": "[Triggered] " + "N" * 50_000,
        "tags": ",".join(f"k{i}:{'v' * 3000}" for i in range(300)),
        "text": "T" * 500_000,
        "deep": deep,
    }
    del data["alert_id"]
    alert = read(data)
    assert len(alert.name) <= 200 and len(alert.text) <= 8000
    assert len(alert.labels) <= 64 and all(len(v) <= 1024 for v in alert.labels.values())
    assert "monitor_id" not in alert.labels  # an id buried 50 objects down is not looked for


def test_nesting_deeper_than_json_allows_is_refused_not_crashed():
    raw = b'{"title": "[Triggered] x", "a": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5001
    with pytest.raises(IntakeError, match="invalid JSON"):
        read(raw)


def test_the_source_is_a_bearer_source_registered_by_its_module():
    source = webhook_plugins()["datadog"].build(type("S", (), {"webhook_token": None})())
    assert isinstance(source, BearerSource) and source.name == "datadog"
