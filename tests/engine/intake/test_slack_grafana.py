from __future__ import annotations

import pytest

from tests.engine.intake.slack_samples import FIRING, RESOLVED, assert_sample, event, parse, sample

G = "https://grafana.example.com"
HIGH_CPU_RULE = f"{G}/alerting/grafana/cdz8h3k9qxxc0a/view?orgId=1"
DISK_RULE = f"{G}/alerting/grafana/b1f4e2a8/view?orgId=1"


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
}


@pytest.mark.parametrize("name", EXPECTED)
def test_samples(name):
    assert_sample(name, EXPECTED[name], "grafana")


@pytest.mark.parametrize(
    ("firing", "resolved"),
    [
        ("grafana_firing.json", "grafana_resolved.json"),
        ("grafana_blocks_firing.json", "grafana_text_only_resolved.json"),
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
