"""Alertmanager's Slack notifications (slack_configs), default and custom templates.

Shapes from prometheus/alertmanager: notify/slack/slack.go builds one legacy
attachment (title, title_link, pretext, text, fallback, footer, color, fields
with `short`, actions, mrkdwn_in ["fallback", "pretext", "text"]) and, since
0.31, a top-level text from `message_text`; template/default.tmpl gives the
default title (`__subject`: the status, the group label values, then the other
common label values in parentheses, alertname first in each) and a fallback of
`title | titlelink`. The custom texts follow the templates people copy: the
Prometheus documentation's notification example (`*Alert:*`, `*Description:*`,
`*Graph:*`/`*Runbook:*` emoji links, `*Details:*` with `• *label:* `value``),
its title variant printing the common labels as `name="value"` pairs, Monzo's
template (severity emoji, descriptions only, Runbook/Query/Silence buttons whose
silence link lists the common labels), `*Alerts Firing:*`/`*Alerts Resolved:*`
lists, `{{ .Labels }}` printed on one line (`a=b, c=d` since 0.26 with
template.KV's String, Go's `map[a:b]` before), the default `__text_alert_list`
reused as Slack text, and a header of the group's labels. Label names and
values come from the node-mixin, kubernetes-mixin (kube-state-metrics through
kube-prometheus-stack, which adds the exporter's own pod and container), and
awesome-prometheus-alerts' cAdvisor and blackbox rules. Sample values are ours.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from engine.intake.slack_alert_list import MAX_ALERTS, read_alerts
from tests.engine.intake.slack_samples import FIRING, RESOLVED, assert_sample, event, parse, sample

UI = "http://alertmanager.example.com:9093/#/alerts?receiver="


CRASH_LOOP = {"namespace": "shop", "container": "checkout", "job": "kube-state-metrics"}
KSM = {"namespace": "shop", "deployment": "checkout", "container": "kube-state-metrics"}
COMPOSE = "container_label_com_docker_compose"
CADVISOR = {"instance": "cadvisor:8080", "job": "cadvisor", f"{COMPOSE}_project": "shop"}
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
    "alertmanager_default_app_token.json": (
        "KubePodCrashLooping",
        FIRING,
        "warning",
        {"receiver": "shop-oncall"},
        UI + "shop-oncall",
    ),
    "alertmanager_default_group_by_all.json": (
        "NodeSystemdServiceFailed",
        FIRING,
        "warning",
        {"receiver": "infra"},
        UI + "infra",
    ),
    "alertmanager_default_no_group_resolved.json": (
        "HostOutOfDiskSpace",
        RESOLVED,
        "critical",
        {"receiver": "default"},
        UI + "default",
    ),
    "alertmanager_default_fields_actions.json": (
        "KubeDeploymentReplicasMismatch",
        FIRING,
        "warning",
        {**KSM, "severity": "warning", "receiver": "shop-oncall"},
        UI + "shop-oncall",
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
    "alertmanager_custom_title_pairs.json": (
        "ContainerKilled",
        FIRING,
        "warning",
        {**CADVISOR, "severity": "warning", "receiver": "docker-hosts"},
        UI + "docker-hosts",
    ),
    "alertmanager_monzo_firing.json": (
        "KubeDeploymentReplicasMismatch",
        FIRING,
        "critical",
        {**KSM, "severity": "critical", "receiver": "slack-code-owners"},
        UI + "slack-code-owners",
    ),
    "alertmanager_monzo_resolved.json": (
        "KubeDeploymentReplicasMismatch",
        RESOLVED,
        "critical",
        {**KSM, "severity": "critical", "receiver": "slack-code-owners"},
        UI + "slack-code-owners",
    ),
    "alertmanager_sections_firing.json": (
        "ContainerUnhealthy",
        FIRING,
        "warning",
        {"instance": "cadvisor:8080", "receiver": "docker-hosts"},
        UI + "docker-hosts",
    ),
    "alertmanager_labels_one_line.json": (
        "SQLiteWALTooLarge",
        FIRING,
        "warning",
        {"instance": "app-1:9187", "job": "sqlite-exporter", "receiver": "app-team"},
        UI + "app-team",
    ),
    "alertmanager_labels_go_map.json": (
        "NodeFilesystemAlmostOutOfSpace",
        FIRING,
        "critical",
        {
            "device": "/dev/sdb1",
            "fstype": "ext4",
            "instance": "node-2.example.com:9100",
            "mountpoint": "/var/log",
            "log_dir": "/var/log/app",
        },
        UI + "infra",
    ),
    "alertmanager_text_alert_list.json": (
        "BlackboxProbeFailed",
        FIRING,
        "critical",
        {
            "instance": "https://shop.example.com/healthz",
            "job": "blackbox-http",
            "service": "checkout",
        },
        UI + "web-checks",
    ),
    "alertmanager_header_labels.json": (
        "KubeContainerWaiting",
        FIRING,
        None,
        {"cluster": "prod-eu-1", "namespace": "shop", "receiver": "shop-oncall"},
        UI + "shop-oncall",
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


# -- the default templates ------------------------------------------------------------


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


def test_grouped_by_namespace_the_name_is_the_first_common_value():
    # kube-prometheus-stack routes group by namespace: the subject starts with it.
    alert = sample("alertmanager_default_app_token.json")
    assert alert.annotations["group_values"] == "shop"
    assert alert.annotations["common_values"].startswith("KubePodCrashLooping http ")


def test_grouped_by_every_label_all_values_are_the_groups():
    alert = sample("alertmanager_default_group_by_all.json")
    values = alert.annotations["group_values"].split()
    assert values[0] == "NodeSystemdServiceFailed" and "orders-worker.service" in values
    assert "common_values" not in alert.annotations


def test_without_group_by_the_values_are_all_in_parentheses():
    alert = sample("alertmanager_default_no_group_resolved.json")
    assert "group_values" not in alert.annotations
    assert alert.annotations["common_values"].split()[0] == "HostOutOfDiskSpace"


def test_a_subject_of_lower_case_values_only_still_names_the_alert():
    # group_by: [namespace] and alerts of different names: no alertname anywhere.
    alert = parse(default_template("[FIRING:2] shop (warning)"))
    assert alert is not None and alert.name == "shop" and alert.severity == "warning"


def test_fields_silence_link_and_message_text_give_the_groups_labels():
    alert = sample("alertmanager_default_fields_actions.json")
    assert alert.annotations["summary"].startswith("Deployment has not matched")
    assert alert.annotations["runbook_url"].endswith("/kubedeploymentreplicasmismatch")
    assert alert.annotations["silence_url"].startswith("http://alertmanager.example.com:9093/#/")
    assert "@shop-oncall" in alert.text  # message_text, with its mention undone
    assert "group_values" not in alert.annotations  # real labels make it labelled


def test_a_custom_title_keeps_the_status_of_the_default_fallback():
    message = event("alertmanager_monzo_resolved.json")
    attachment = message["attachments"][0]
    attachment["title"] = "KubeDeploymentReplicasMismatch cleared"
    attachment.pop("color")
    alert = parse(message)
    assert alert is not None and alert.status == RESOLVED


# -- custom templates -----------------------------------------------------------------


def test_custom_template_is_about_the_first_firing_alert_of_the_group():
    alert = sample("alertmanager_custom_firing.json")
    assert alert.labels["pod"] == "checkout-7d9f8b6c5d-abcde"  # the first of two pods
    assert alert.annotations["summary"] == "Pod is crash looping"
    assert alert.annotations["runbook_url"] == "https://runbooks.example.com/KubePodCrashLooping"
    assert alert.annotations["graph_url"].startswith("http://prometheus.example.com:9090/graph?")
    assert "&amp;" not in alert.annotations["graph_url"]


def test_the_group_not_its_first_alert_is_the_identity():
    alert = sample("alertmanager_custom_firing.json")
    assert alert.annotations["alerts"] == "2"
    message = event("alertmanager_custom_firing.json")
    text = message["attachments"][0]["text"]
    second = text.index("*Alert:*", 10)
    message["attachments"][0]["text"] = text[second:] + "\n" + text[:second]
    swapped = parse(message)
    assert swapped is not None and swapped.labels["pod"] != alert.labels["pod"]
    assert swapped.fingerprint == alert.fingerprint


@pytest.mark.parametrize(
    ("name", "label", "value"),
    [
        ("alertmanager_custom_title_pairs.json", "name", "web-1"),
        (
            "alertmanager_custom_title_pairs.json",
            "container_label_com_docker_compose_service",
            "web",
        ),
        ("alertmanager_labels_one_line.json", "db_path", "/var/lib/app/orders.db"),
        ("alertmanager_header_labels.json", "pod", "checkout-7d9f8b6c5d-q8x2m"),
        ("alertmanager_sections_firing.json", "container", "web-1"),
    ],
)
def test_grouped_alerts_of_different_targets_keep_the_first_target(name, label, value):
    alert = sample(name)
    assert alert.labels[label] == value


def test_the_first_firing_alert_leads_even_when_resolved_ones_are_listed_first():
    message = event("alertmanager_sections_firing.json")
    text = message["attachments"][0]["text"]
    firing, resolved = text.split("*Alerts Resolved:*\n")
    message["attachments"][0]["text"] = "*Alerts Resolved:*\n" + resolved + firing
    alert = parse(message)
    assert alert is not None and alert.status == FIRING
    assert alert.labels["container"] == "web-1"
    assert alert.starts_at == datetime(2024, 11, 26, 2, 58, 10, tzinfo=UTC)  # web-1's, too


def test_sections_without_a_subject_say_the_status():
    message = event("alertmanager_sections_firing.json")
    attachment = message["attachments"][0]
    attachment["title"], attachment["fallback"] = "Docker hosts", "Docker hosts"
    attachment["text"] = "*Alerts Resolved:*" + attachment["text"].split("*Alerts Resolved:*")[1]
    alert = parse(message)
    assert alert is not None and (alert.name, alert.status) == ("ContainerUnhealthy", RESOLVED)


def test_title_pairs_and_the_description_labels_map_are_read():
    alert = sample("alertmanager_custom_title_pairs.json")
    assert alert.labels["container_label_com_docker_compose_project"] == "shop"
    assert alert.annotations["description"] == "A container has disappeared"
    message = event("alertmanager_custom_title_pairs.json")
    text = message["attachments"][0]["text"]
    message["attachments"][0]["text"] = text[: text.index("*Details:*")]  # the map alone
    alert = parse(message)
    assert alert is not None and alert.labels["name"] == "web-1"


def test_monzo_firing_and_resolved_share_a_fingerprint_and_drop_the_emoji():
    firing = sample("alertmanager_monzo_firing.json")
    resolved = sample("alertmanager_monzo_resolved.json")
    assert firing.fingerprint == resolved.fingerprint
    assert firing.name == "KubeDeploymentReplicasMismatch"
    assert firing.labels["pod"].startswith("kube-prometheus-stack-kube-state-metrics-")


def test_labels_printed_as_a_go_map_or_as_pairs_read_alike():
    old = sample("alertmanager_labels_go_map.json")
    message = event("alertmanager_labels_go_map.json")
    text = message["attachments"][0]["text"]
    start, end = text.index("map["), text.index("]\n") + 1
    pairs = ", ".join(token.replace(":", "=", 1) for token in text[start + 4 : end - 1].split())
    message["attachments"][0]["text"] = text[:start] + pairs + text[end:]
    new = parse(message)
    assert new is not None and new.labels == old.labels
    assert old.labels["instance"] == "node-2.example.com:9100"  # the value's own colon kept


def test_the_default_text_alert_list_gives_labels_and_annotations():
    alert = sample("alertmanager_text_alert_list.json")
    assert alert.annotations["summary"].startswith("Blackbox probe failed (instance https://")
    assert alert.annotations["description"] == "Probe failed"
    assert "Source:" not in alert.labels


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
    assert "alerts" not in alert.annotations


def test_label_lists_without_alert_lines_split_where_a_label_repeats():
    message = event("alertmanager_custom_firing.json")
    lists = [
        " • *alertname:* `ContainerUnhealthy`\n • *name:* `web-1`\n • *instance:* `cadvisor:8080`",
        " • *alertname:* `ContainerUnhealthy`\n • *name:* `web-2`\n • *instance:* `cadvisor:8080`",
    ]
    message["attachments"][0]["text"] = "\n".join(lists)
    alert = parse(message)
    assert alert is not None and alert.name == "ContainerUnhealthy"
    assert alert.labels["instance"] == "cadvisor:8080" and alert.labels["name"] == "web-1"


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
    message["attachments"][0]["fallback"] = "Kubernetes alert"
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


def test_prose_with_colons_is_not_read_as_labels():
    message = event("alertmanager_labels_go_map.json")
    message["attachments"][0]["text"] = (
        "*Summary:* Disk almost full\nNote: the volume grows by 2 GiB a day\n"
        "Owner: the storage team\n*Instance:* node-2.example.com:9100\n"
    )
    alert = parse(message)
    assert alert is not None
    assert alert.labels["instance"] == "node-2.example.com:9100"
    assert not {"note", "Note", "owner", "Owner"} & set(alert.labels)


def test_a_group_of_thousands_of_alerts_is_read_in_bounded_time():
    message = event("alertmanager_custom_firing.json")
    block = message["attachments"][0]["text"].split("\n\n")[0]
    message["attachments"][0]["text"] = "\n\n".join(
        block.replace("abcde", f"{i:05d}") for i in range(5000)
    )
    started = time.perf_counter()
    alert = parse(message)
    assert time.perf_counter() - started < 2.0
    assert alert is not None and alert.name == "KubePodCrashLooping"
    assert 100 < int(alert.annotations["alerts"]) <= MAX_ALERTS  # as many as the text kept


def test_the_alerts_read_from_one_message_are_capped():
    text = "\n".join(f"*Alert:* Disk {i} full\n • *instance:* `node-{i}`" for i in range(5000))
    alerts, _ = read_alerts(text)
    assert len(alerts) == MAX_ALERTS
    assert alerts[0].labels == {"instance": "node-0"}
