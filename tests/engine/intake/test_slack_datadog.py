from __future__ import annotations

from typing import Any

import pytest

from tests.engine.intake.slack_samples import FIRING, RESOLVED, assert_sample, event, parse, sample

DD = "https://app.datadoghq.com/monitors/"


CPU = {
    "monitor_id": "12345678",
    "priority": "P2",
    "env": "prod",
    "host": "web-1",
    "service": "api",
    "team": "sre",
    "metric": "system.load.1",
}
DISK = {
    "monitor_id": "87654321",
    "host": "db-1",
    "env": "prod",
    "service": "postgres",
    "team": "dba",
    "metric": "system.disk.in_use",
}
DISK_NAME = "Disk usage above 90% on /var/lib/postgresql"
# name, status, severity, labels (at least), link prefix
EXPECTED = {
    "datadog_triggered.json": (
        "CPU load is high on web-1",
        FIRING,
        "P2",
        CPU,
        DD + "12345678?group=host%3Aweb-1&from_ts=1732598700000",
    ),
    "datadog_recovered.json": (
        "CPU load is high on web-1",
        RESOLVED,
        "P2",
        CPU,
        DD + "12345678?group=host%3Aweb-1&from_ts=1732600500000",
    ),
    "datadog_multi_triggered_blocks.json": (DISK_NAME, FIRING, None, DISK, DD + "87654321?"),
    "datadog_multi_recovered_blocks.json": (DISK_NAME, RESOLVED, None, DISK, DD + "87654321?"),
    "datadog_warn_text_only.json": (
        "Memory usage high on worker-4",
        FIRING,
        "P3",
        {"monitor_id": "55501234", "priority": "P3", "env": "staging", "host": "worker-4"},
        DD + "55501234?link_source=monitor_notif",
    ),
}


@pytest.mark.parametrize("name", EXPECTED)
def test_samples(name):
    assert_sample(name, EXPECTED[name], "datadog", link_prefix=True)


@pytest.mark.parametrize(
    ("firing", "resolved"),
    [
        ("datadog_triggered.json", "datadog_recovered.json"),
        ("datadog_multi_triggered_blocks.json", "datadog_multi_recovered_blocks.json"),
    ],
)
def test_recovery_is_the_same_alert_as_its_trigger(firing, resolved):
    assert sample(firing).fingerprint == sample(resolved).fingerprint


def retitled(title: str, name: str = "datadog_triggered.json") -> dict[str, Any]:
    message = event(name)
    message["attachments"][0]["title"] = title
    message["attachments"][0]["fallback"] = title
    return message


@pytest.mark.parametrize(
    ("title", "status", "severity", "scope"),
    [
        (
            "[Triggered on {host:web-1,env:prod}] CPU load is high",
            FIRING,
            None,
            "host:web-1,env:prod",
        ),
        (
            "[Recovered on {host:web-1,env:prod}] CPU load is high",
            RESOLVED,
            None,
            "host:web-1,env:prod",
        ),
        ("[P1] [Triggered] CPU load is high", FIRING, "P1", ""),
        ("Re-Triggered: CPU load is high", FIRING, None, ""),
        ("Warn: CPU load is high", FIRING, "warning", ""),
        ("No Data: CPU load is high", FIRING, None, ""),
        ("[Warn Recovered] CPU load is high", RESOLVED, "warning", ""),
    ],
)
def test_title_forms(title, status, severity, scope):
    alert = parse(retitled(title))
    assert alert is not None
    assert (alert.name, alert.status, alert.severity) == ("CPU load is high", status, severity)
    assert alert.annotations.get("scope", "") == scope


def test_the_group_is_part_of_the_identity_in_any_tag_order():
    web_1 = parse(retitled("[Triggered on {host:web-1,env:prod}] CPU load is high"))
    same = parse(retitled("[Recovered on {env:prod,host:web-1}] CPU load is high"))
    web_2 = parse(retitled("[Triggered on {host:web-2,env:prod}] CPU load is high"))
    assert web_1 is not None and same is not None and web_2 is not None
    assert web_1.fingerprint == same.fingerprint != web_2.fingerprint
    assert web_2.labels["host"] == "web-2"  # the group wins over the monitor's tags


def test_monitor_query_is_kept():
    alert = sample("datadog_triggered.json")
    assert alert.annotations["query"] == (
        "avg(last_5m):avg:system.load.1{env:prod,service:api} by {host} > 4"
    )
    assert "@slack-ops-alerts" in alert.text


def test_monitors_on_other_datadog_sites_are_linked():
    message = retitled("Triggered: Queue depth high")
    message["attachments"][0]["title_link"] = "https://app.datadoghq.eu/monitors/777?x=1"
    alert = parse(message)
    assert alert is not None
    assert (alert.labels["monitor_id"], alert.link) == (
        "777",
        "https://app.datadoghq.eu/monitors/777?x=1",
    )


def test_a_datadog_message_that_is_not_a_monitor_notification_is_ignored():
    message = retitled("Weekly usage report")
    assert parse(message) is None


def test_a_monitor_title_from_another_app_without_datadog_links_is_ignored():
    message = retitled("Triggered: CPU load is high")
    message["bot_profile"]["name"] = "Opsbot"
    message["attachments"][0]["title_link"] = "https://ops.example.com/m/1"
    message["attachments"][0]["footer"] = ""
    assert parse(message) is None
