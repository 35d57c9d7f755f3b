"""Datadog's Slack posts: its app's attachments and blocks (title linked to the monitor,
the message with its @-handles, the status line, the tags where the channel shows
them), and a webhook relayed into Slack by a team's own payload."""

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
DOCKER = {
    "monitor_id": "148822107",
    "container_name": "web-1",
    "host": "web-host-3",
    "docker_image": "shop/web:1.4",
    "image_name": "shop/web",
    "short_image": "web",
}
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
    "datadog_docker_unhealthy.json": (
        "Docker container unhealthy",
        FIRING,
        None,
        DOCKER,
        DD + "148822107?group=container_name%3Aweb-1",
    ),
    "datadog_docker_recovered.json": (
        "Docker container unhealthy",
        RESOLVED,
        None,
        DOCKER,
        DD + "148822107?group=container_name%3Aweb-1",
    ),
    "datadog_kube_crashloop_blocks.json": (
        "Pods crash looping",
        FIRING,
        "P2",
        {
            "monitor_id": "151903344",
            "kube_namespace": "shop",
            "kube_deployment": "checkout",
            "env": "prod",
            "metric": "kubernetes_state.container.waiting",
        },
        "https://app.datadoghq.eu/monitors/151903344?group=",
    ),
    "datadog_webhook_relay.json": (
        "orders-worker heartbeat",
        FIRING,
        None,
        {"service": "orders-worker", "host": "worker-host-2", "env": "prod"},
        "https://app.datadoghq.com/event/event?id=7716200300400500600",
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
        ("datadog_docker_unhealthy.json", "datadog_docker_recovered.json"),
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


def test_the_status_line_names_the_group_when_no_tags_are_shown():
    message = event("datadog_multi_triggered_blocks.json")
    del message["blocks"][2]  # the Monitor and Tags fields
    message["blocks"][1]["text"]["text"] += (
        "\n\n*system.disk.in_use* over *device:/dev/nvme1n1,host:db-1* was *> 0.9* on average"
        " during the *last 10m*."
    )
    alert = parse(message)
    assert alert is not None
    assert (alert.labels["device"], alert.labels["host"]) == ("/dev/nvme1n1", "db-1")
    assert "service" not in alert.labels


def test_the_title_and_the_tags_are_read_by_the_webhooks_own_helpers():
    from engine.intake import datadog_monitor, slack_datadog

    assert slack_datadog.dd is datadog_monitor  # one reading of titles, not two


def test_the_status_line_names_the_metric_when_no_query_is_shown():
    message = {
        "type": "message",
        "bot_id": "B07DATADOG",
        "bot_profile": {"name": "Datadog"},
        "ts": "1732623700.200900",
        "attachments": [
            {
                "title": "[Triggered on {dbinstanceidentifier:orders-db}] RDS connections high",
                "title_link": "https://app.datadoghq.com/monitors/149200411?group=x",
                "text": "*aws.rds.database_connections* over *dbinstanceidentifier:orders-db* "
                "was *> 270.0* on average during the *last 5m*.",
            }
        ],
    }
    alert = parse(message)
    assert alert is not None
    assert alert.labels["metric"] == "aws.rds.database_connections"
    assert alert.labels["dbinstanceidentifier"] == "orders-db"
