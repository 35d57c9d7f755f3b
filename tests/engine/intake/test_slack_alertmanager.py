from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.engine.intake.slack_samples import FIRING, RESOLVED, assert_sample, event, parse, sample

UI = "http://alertmanager.example.com:9093/#/alerts?receiver="


CRASH_LOOP = {"namespace": "shop", "container": "checkout", "job": "kube-state-metrics"}
# name, status, severity, labels (at least), link
EXPECTED = {
    "alertmanager_default_firing.json": (
        "HighLatency",
        FIRING,
        None,
        {"receiver": "slack-sre"},
        UI + "slack-sre",
    ),
    "alertmanager_default_resolved.json": (
        "HighLatency",
        RESOLVED,
        None,
        {"receiver": "slack-sre"},
        UI + "slack-sre",
    ),
    "alertmanager_custom_firing.json": (
        "KubePodCrashLooping",
        FIRING,
        "critical",
        {**CRASH_LOOP, "severity": "critical", "receiver": "k8s-critical"},
        UI + "k8s-critical",
    ),
    "alertmanager_custom_resolved.json": (
        "KubePodCrashLooping",
        RESOLVED,
        "critical",
        {**CRASH_LOOP, "severity": "critical", "receiver": "k8s-critical"},
        UI + "k8s-critical",
    ),
    "alertmanager_blocks_firing.json": (
        "NodeFilesystemAlmostOutOfSpace",
        FIRING,
        "critical",
        {
            "instance": "node-3.example.com:9100",
            "job": "node",
            "mountpoint": "/var/lib/docker",
            "device": "/dev/nvme0n1p1",
            "receiver": "infra",
        },
        UI + "infra",
    ),
}


@pytest.mark.parametrize("name", EXPECTED)
def test_samples(name):
    assert_sample(name, EXPECTED[name], "alertmanager")


def test_resolution_of_the_default_template_is_the_same_alert():
    firing = sample("alertmanager_default_firing.json")
    resolved = sample("alertmanager_default_resolved.json")
    assert firing.fingerprint == resolved.fingerprint
    assert firing.annotations == {"group_values": "HighLatency", "common_values": "api prod"}


def default_template(title: str, receiver: str = "slack-sre") -> dict[str, Any]:
    message = event("alertmanager_default_firing.json")
    message["attachments"][0]["title"] = title
    message["attachments"][0]["title_link"] = UI + receiver
    return message


def test_default_template_groups_are_told_apart_by_group_values_and_receiver():
    api = parse(default_template("[FIRING:1] HighLatency api (prod)"))
    web = parse(default_template("[FIRING:1] HighLatency web (prod)"))
    other_receiver = parse(default_template("[FIRING:1] HighLatency api (prod)", "team-b"))
    assert api is not None and web is not None and other_receiver is not None
    assert len({api.fingerprint, web.fingerprint, other_receiver.fingerprint}) == 3
    assert other_receiver.labels["receiver"] == "team-b"


def test_default_template_severity_comes_from_a_severity_value():
    alert = parse(default_template("[FIRING:3] DiskFull (node-3 critical)"))
    assert alert is not None and alert.severity == "critical" and alert.name == "DiskFull"


def test_custom_template_keeps_only_the_labels_every_alert_shares():
    alert = sample("alertmanager_custom_firing.json")
    assert "pod" not in alert.labels  # the two pods differ
    assert alert.annotations["summary"] == "Pod is crash looping"
    assert alert.annotations["runbook_url"] == "https://runbooks.example.com/KubePodCrashLooping"
    assert alert.annotations["graph_url"].startswith("http://prometheus.example.com:9090/graph?")
    assert "&amp;" not in alert.annotations["graph_url"]


def test_custom_template_firing_and_resolved_share_a_fingerprint():
    firing = sample("alertmanager_custom_firing.json")
    resolved = sample("alertmanager_custom_resolved.json")
    assert firing.fingerprint == resolved.fingerprint


def test_custom_template_with_one_alert_keeps_its_pod():
    message = event("alertmanager_custom_firing.json")
    text = message["attachments"][0]["text"]
    message["attachments"][0]["text"] = text[: text.index("*Alert:*", 10)]
    alert = parse(message)
    assert alert is not None and alert.labels["pod"] == "checkout-7d9f8b6c5d-abcde"


def test_blocks_payload_reads_start_time():
    alert = sample("alertmanager_blocks_firing.json")
    assert alert.starts_at == datetime(2024, 11, 26, 3, 12, 45, tzinfo=UTC)


def test_text_only_subject_from_an_integration():
    message = {
        "type": "message",
        "subtype": "bot_message",
        "bot_id": "B07ALERTMGR",
        "username": "AlertManager",
        "text": "[FIRING:1] HighLatency (api prod)",
        "ts": "1732590061.000900",
    }
    alert = parse(message)
    assert alert is not None
    assert (alert.name, alert.status, alert.labels["integration"]) == (
        "HighLatency",
        FIRING,
        "alertmanager",
    )


def test_custom_title_without_status_reads_status_from_the_colour():
    message = event("alertmanager_custom_resolved.json")
    message["attachments"][0]["title"] = "Kubernetes alert"
    alert = parse(message)
    assert alert is not None
    assert (alert.status, alert.name) == (RESOLVED, "KubePodCrashLooping")


def test_details_from_an_unknown_app_without_a_subject_are_not_alertmanagers():
    message = event("alertmanager_custom_firing.json")
    message["attachments"][0]["title"] = "Weekly report"
    message["attachments"][0]["title_link"] = "https://reports.example.com/weekly"
    message["bot_profile"]["name"] = "Reporter"
    assert parse(message) is None


def test_a_person_typing_a_subject_is_read_as_text_not_alertmanager():
    message = {"type": "message", "user": "U0ONCALL", "text": "[FIRING:2] HighLatency (api prod)"}
    assert parse(message) is None  # no labels: the text format needs key=value
