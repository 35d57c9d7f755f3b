"""Grafana's Slack messages, unified (8 to 11) and legacy (6 and 7) alerting.

Shapes from grafana/alerting's receivers/slack (and, before it moved there,
Grafana's pkg/services/ngalert/notifier/channels/slack.go) with its default
templates (templates/default_template.go, whose Value line changed in 8.3 and
again in 9.x), and from Grafana 7's pkg/services/alerting/notifiers/slack.go.
"""

from __future__ import annotations

import pytest

from engine.intake import slack_grafana
from engine.intake.slack_reader import read_message
from tests.engine.intake.slack_samples import FIRING, RESOLVED, assert_sample, event, parse, sample

G = "https://grafana.example.com"
HIGH_CPU_RULE = f"{G}/alerting/grafana/cdz8h3k9qxxc0a/view?orgId=1"
DISK_RULE = f"{G}/alerting/grafana/b1f4e2a8/view?orgId=1"
OLD = "http://grafana.internal:3000"
WAL_PANEL = f"{OLD}/d/Jb3kR2mGz/sqlite?tab=alert&viewPanel=2&orgId=1"
DISK_PANEL = f"{OLD}/d/rYdddlPWk/node-exporter?tab=alert&fullscreen&edit&panelId=23&orgId=1"
QUEUE_PANEL = f"{G}/d/W9kX2p7Mz/orders?tab=alert&viewPanel=6&orgId=1"


WEB_1 = {"env": "prod", "grafana_folder": "Infra", "instance": "web-1", "severity": "critical"}
DB_1 = {
    "env": "prod",
    "grafana_folder": "Infra",
    "instance": "db-1",
    "mountpoint": "/var/lib/postgresql",
    "severity": "warning",
}
# name, status, severity, labels (at least), link
EXPECTED = {
    "grafana_firing.json": ("HighCPU", FIRING, "critical", WEB_1, HIGH_CPU_RULE),
    "grafana_resolved.json": ("HighCPU", RESOLVED, "critical", WEB_1, HIGH_CPU_RULE),
    "grafana_mixed_firing.json": (
        "HighCPU",
        FIRING,
        "critical",
        {"env": "prod", "grafana_folder": "Infra"},
        HIGH_CPU_RULE,
    ),
    "grafana_blocks_firing.json": ("DiskAlmostFull", FIRING, "warning", DB_1, DISK_RULE),
    "grafana_text_only_resolved.json": ("DiskAlmostFull", RESOLVED, "warning", DB_1, DISK_RULE),
    "grafana9_mentions_firing.json": (
        "SQLiteWALTooLarge",
        FIRING,
        "warning",
        {"db_path": "/var/lib/app/orders.db", "instance": "db-1", "grafana_folder": "SQLite"},
        f"{G}/alerting/grafana/e5b2c9d1a7f04k/view",
    ),
    "grafana8_no_value_lines.json": (
        "HighLogVolume",
        FIRING,
        "warning",
        {"service": "orders-worker", "level": "debug"},
        f"{G}/alerting/Kq7vTn2Mk/edit",
    ),
    "grafana10_nodata_pretext.json": (
        "DatasourceNoData",
        FIRING,
        "critical",
        {
            "rulename": "ContainerUnhealthy",
            "name": "worker-1",
            "datasource_uid": "P1809F7CD0C75ACF3",
        },
        f"{G}/alerting/grafana/ad91kf0x3c5w7e/view?orgId=1",
    ),
    "grafana7_alerting_mentions.json": (
        "High CPU alert",
        FIRING,
        None,
        {"name": "web-1", "instance": "docker-host-1:8080"},
        None,  # the rule's link is relative: Grafana's root_url was not set
    ),
    "grafana7_ok.json": ("High CPU alert", RESOLVED, None, {}, None),
    "grafana7_no_data.json": (
        "DatasourceNoData",
        FIRING,
        None,
        {"rulename": "Orders DB WAL size"},
        WAL_PANEL,
    ),
    "grafana6_mention_in_text.json": (
        "Disk almost full",
        FIRING,
        None,
        {"device": "/dev/sdb1", "job": "node", "mountpoint": "/var/log"},
        DISK_PANEL,
    ),
    "grafana7_error_field.json": (
        "DatasourceError",
        FIRING,
        None,
        {"rulename": "Orders worker queue depth"},
        QUEUE_PANEL,
    ),
}


@pytest.mark.parametrize("name", EXPECTED)
def test_samples(name):
    assert_sample(name, EXPECTED[name], "grafana")


@pytest.mark.parametrize(
    ("firing", "resolved"),
    [
        ("grafana_firing.json", "grafana_resolved.json"),
        ("grafana_blocks_firing.json", "grafana_text_only_resolved.json"),
        ("grafana7_alerting_mentions.json", "grafana7_ok.json"),
    ],
)
def test_firing_and_resolved_are_the_same_alert(firing, resolved):
    assert sample(firing).fingerprint == sample(resolved).fingerprint


def test_annotations_and_urls_of_the_alert():
    alert = sample("grafana_firing.json")
    assert alert.annotations == {
        "description": "CPU usage on web-1 has been above 90% for 5 minutes.",
        "runbook_url": "https://runbooks.example.com/HighCPU",
        "summary": "CPU is high",
        "values": "A=93.2",
        "source_url": HIGH_CPU_RULE,
        "silence_url": f"{G}/alerting/silence/new?alertmanager=grafana&matcher=alertname%3DHighCPU"
        "&matcher=instance%3Dweb-1&orgId=1",
        "dashboard_url": f"{G}/d/rYdddlPWk?orgId=1",
        "panel_url": f"{G}/d/rYdddlPWk?orgId=1&viewPanel=3",
    }


def test_mixed_notification_is_about_the_firing_alerts():
    alert = sample("grafana_mixed_firing.json")
    assert "instance" not in alert.labels  # web-2 and web-3 fire; web-1's resolution is ignored
    assert alert.annotations["values"] == "A=95.0"
    assert "@oncall" in alert.text


def test_without_title_link_the_source_url_is_the_link():
    message = event("grafana_firing.json")
    del message["attachments"][0]["title_link"]
    alert = parse(message)
    assert alert is not None and alert.link == HIGH_CPU_RULE


def test_sections_without_a_subject_title_still_read():
    message = event("grafana_firing.json")
    message["attachments"][0]["title"] = "CPU alert"
    alert = parse(message)
    assert alert is not None and (alert.name, alert.status) == ("HighCPU", FIRING)


def test_subject_only_grafana_message_names_the_alert_from_the_subject():
    message = event("grafana_firing.json")
    message["attachments"][0]["text"] = "CPU is high on web-1"
    alert = parse(message)
    assert alert is not None
    assert (alert.name, alert.labels["integration"]) == ("HighCPU", "grafana")


def test_a_grafana_subject_without_grafana_marks_is_left_to_alertmanager():
    message = event("grafana_firing.json")
    attachment = message["attachments"][0]
    attachment["text"], attachment["footer"] = "", ""
    attachment["title_link"] = "http://am.example.com/#/alerts?receiver=x"
    message["username"] = "prometheus"
    alert = parse(message)
    assert alert is not None and alert.labels["integration"] == "alertmanager"


def test_labels_of_a_lone_firing_alert_ignore_the_resolved_ones():
    message = event("grafana_mixed_firing.json")
    attachment = message["attachments"][0]
    text = attachment["text"]
    web_3 = text.index("\nValue: A=91.4")
    attachment["text"] = text[:web_3] + text[text.index("\n\n**Resolved**") :]
    attachment["title"] = "[FIRING:1, RESOLVED:1] HighCPU (prod Infra critical)"
    alert = parse(message)
    assert alert is not None and alert.labels["instance"] == "web-2"


def test_resolved_notification_of_several_alerts_keeps_their_common_labels():
    message = event("grafana_mixed_firing.json")
    attachment = message["attachments"][0]
    attachment["text"] = attachment["text"].replace("**Firing**", "**Resolved**")
    attachment["title"] = "[RESOLVED] HighCPU (prod Infra critical)"
    alert = parse(message)
    assert alert is not None and alert.status is RESOLVED
    assert "instance" not in alert.labels and alert.labels["env"] == "prod"


# -- unified alerting across releases ------------------------------------------


def test_grafana_8_alerts_without_value_lines_are_told_apart():
    """8.0 to 8.2 wrote no `Value:` line: each alert starts at its `Labels:`."""
    alert = sample("grafana8_no_value_lines.json")
    assert "instance" not in alert.labels  # worker-1 and worker-2: both fire
    assert "values" not in alert.annotations


def test_grafana_8_resolved_alert_of_a_section_is_not_the_firing_one():
    message = event("grafana8_no_value_lines.json")
    attachment = message["attachments"][0]
    second = attachment["text"].index("\nLabels:", attachment["text"].index("worker-1"))
    attachment["text"] = (
        attachment["text"][:second] + "\n\n**Resolved**\n" + attachment["text"][second:]
    )
    alert = parse(message)
    assert alert is not None and alert.labels["instance"] == "worker-1"


def test_grafana_9_value_string_and_mentions_block():
    """Up to 9.2 the title is repeated as the message text and mentions are a
    Block Kit section; neither is taken for the headline."""
    alert = sample("grafana9_mentions_firing.json")
    assert alert.annotations["values"].startswith("[ var='B0' metric='sqlite_wal_bytes'")
    assert "@here @U07ALICE1" in alert.text
    assert alert.annotations["dashboard_url"] == f"{G}/d/Jb3kR2mGz"


def test_a_title_link_to_the_rule_list_gives_way_to_the_alerts_rule():
    message = event("grafana9_mentions_firing.json")
    attachment = message["attachments"][0]
    attachment["text"] = attachment["text"].replace("Source: ", "Origin: ")
    alert = parse(message)
    assert alert is not None and alert.link == f"{G}/alerting/list"


def test_unified_no_data_is_named_as_grafana_names_it():
    alert = sample("grafana10_nodata_pretext.json")
    assert alert.annotations["values"] == "[no value]"
    assert "@channel" in alert.text


# -- legacy alerting (Grafana 7 and older) -------------------------------------


def test_legacy_fields_with_numeric_values_are_read():
    """Grafana 7 sends each series' value as a JSON number, not a string."""
    message = event("grafana7_alerting_mentions.json")
    assert isinstance(message["attachments"][0]["fields"][0]["value"], float)
    alert = sample("grafana7_alerting_mentions.json")
    metric = 'container_cpu_usage_percent{instance="docker-host-1:8080", name="web-1"}'
    assert alert.annotations == {"values": f"{metric}=97.43"}
    assert read_message(message).fields == ((metric, "97.43"),)


def test_legacy_title_keeps_no_trailing_spaces_and_mentions_stay_text():
    alert = sample("grafana7_alerting_mentions.json")
    assert alert.name == "High CPU alert"
    assert "@here @U07ALICE1" in alert.text
    assert "CPU of container web-1 is above 95%" in alert.text


def test_legacy_series_labels_are_those_every_series_shares():
    alert = sample("grafana6_mention_in_text.json")
    assert "instance" not in alert.labels  # web-1 and web-2
    assert alert.annotations["values"].endswith('mountpoint="/var/log"}=3.2')
    assert (
        'instance="web-1:9100", job="node", mountpoint="/var/log"}=4,'
        in alert.annotations["values"]
    )


@pytest.mark.parametrize("state", ["No Data", "Alerting", "OK"])
def test_every_legacy_state_of_a_rule_is_the_same_alert(state):
    message = event("grafana7_alerting_mentions.json")
    message["attachments"][0]["title"] = f"[{state}] High CPU alert "
    assert parse(message).fingerprint == sample("grafana7_alerting_mentions.json").fingerprint


def test_legacy_no_data_never_carries_the_rules_name():
    message = event("grafana7_alerting_mentions.json")
    message["attachments"][0]["title"] = "[No Data] High CPU alert "
    alert = parse(message)
    assert alert is not None and (alert.name, alert.status) == ("DatasourceNoData", FIRING)
    assert alert.labels["rulename"] == "High CPU alert"


def test_legacy_query_error_is_not_the_rules_alert():
    alert = sample("grafana7_error_field.json")
    assert alert.annotations["error"].endswith("connect: connection refused")
    assert "values" not in alert.annotations


def test_an_absolute_legacy_rule_link_is_the_link():
    message = event("grafana7_alerting_mentions.json")
    message["attachments"][0]["title_link"] = f"{G}/d/pMEd7m0Mz/docker?tab=alert&viewPanel=4"
    alert = parse(message)
    assert alert is not None and alert.link == f"{G}/d/pMEd7m0Mz/docker?tab=alert&viewPanel=4"


@pytest.mark.parametrize("title", ["[Unknown] High CPU alert", "[Pending] x", "[Alerting]", "High"])
def test_other_legacy_titles_are_not_grafana_alerts(title):
    message = event("grafana7_alerting_mentions.json")
    message["attachments"][0]["title"] = message["text"] = title
    assert slack_grafana.parse(read_message(message)) is None


def test_a_legacy_title_without_grafana_marks_is_not_grafanas():
    message = event("grafana7_no_data.json")
    attachment = message["attachments"][0]
    attachment["footer"], attachment["title_link"] = "Nagios", "https://nagios.example.com/x"
    message["username"] = "monitor"
    assert slack_grafana.parse(read_message(message)) is None


def test_a_legacy_link_to_a_rule_panel_is_a_grafana_mark():
    message = event("grafana7_no_data.json")
    message["attachments"][0]["footer"], message["username"] = "", "monitor"
    alert = slack_grafana.parse(read_message(message))
    assert alert is not None and alert.name == "DatasourceNoData"
