"""read_grafana against real-shaped Grafana webhook bodies, hostile ones and broken ones.

The unified samples follow grafana/alerting's receivers/webhook (webhookMessage
embedding templates.ExtendedData: per alert values, valueString and the
silence, dashboard and panel URLs built in templates/template_data.go) and
Grafana's documented example; unified_v8.json is the older payload without
values or valueString. The legacy samples follow Grafana 7's
pkg/services/alerting/notifiers/webhook.go (ruleId, ruleName, state,
evalMatches with null.Float values, tags, orgId, dashboardId, panelId).
"""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from engine.intake.errors import MAX_ALERTS, IntakeError
from engine.intake.grafana import GrafanaSource, grafana_group, parse_grafana, read_grafana
from engine.intake.grafana_legacy import legacy_rule_key
from engine.intake.limits import MAX_KEY, MAX_LABELS, MAX_VALUE
from engine.intake.sources import BearerConfig, Request, Unauthorized, Unavailable, webhook_plugins
from engine.models import Alert, AlertStatus, canonical_json

SAMPLES = Path(__file__).parent / "samples" / "grafana"
NOW = datetime(2024, 11, 26, 3, 15, tzinfo=UTC)
FIRING, RESOLVED = AlertStatus.FIRING, AlertStatus.RESOLVED


def sample(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / f"{name}.json").read_text())


def parse(payload: dict[str, Any] | list[Any] | bytes) -> list[Alert]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return parse_grafana(body, received_at=NOW, channel_for=lambda labels: "C0ALERTS")


def refusal(payload: dict[str, Any] | list[Any] | bytes) -> str:
    with pytest.raises(IntakeError) as caught:
        parse(payload)
    return str(caught.value)


# -- unified alerting ----------------------------------------------------------------


@pytest.mark.parametrize("name", [p.stem for p in SAMPLES.glob("unified_*.json")])
def test_every_unified_alert_is_read_into_its_notifications_group(name):
    payload = sample(name)
    alerts = parse(payload)
    assert [a.fingerprint for a in alerts] == [a["fingerprint"] for a in payload["alerts"]]
    group = grafana_group(payload["orgId"], payload["receiver"], payload["groupKey"])
    assert {a.group for a in alerts} == {group}
    assert all(a.source == "grafana" and a.channel == "C0ALERTS" for a in alerts)


def test_firing_group_maps_every_field():
    payload = sample("unified_firing_group")
    first, second = parse(payload)
    sent = payload["alerts"][0]
    assert (first.name, first.status, first.severity) == (
        "NodeFilesystemAlmostOutOfSpace",
        FIRING,
        "warning",
    )
    assert first.labels == sent["labels"]
    assert first.labels["log_dir"] == "/var/log/app" and second.labels["log_dir"] == "/srv/app"
    assert first.annotations == {
        **sent["annotations"],
        "values": "B=96.4, C=1",
        "value_string": sent["valueString"],
        "silence_url": sent["silenceURL"],
        "dashboard_url": sent["dashboardURL"],
        "panel_url": sent["panelURL"],
    }
    assert (
        first.text
        == "Filesystem has less than 5% space left.\n" + sent["annotations"]["description"]
    )
    assert first.starts_at == datetime(2024, 11, 26, 2, 56, 10, tzinfo=UTC)
    assert first.ends_at is None  # Go's zero time
    assert first.link == sent["generatorURL"]
    assert first.received_at == NOW and first.source_key != second.source_key


def test_mixed_notification_keeps_each_alerts_status_in_one_group():
    firing, resolved = parse(sample("unified_mixed"))
    assert (firing.status, resolved.status) == (FIRING, RESOLVED)
    assert (firing.labels["name"], resolved.labels["name"]) == ("web-2", "web-1")
    assert resolved.ends_at == datetime(2024, 11, 26, 3, 0, tzinfo=UTC)
    assert firing.group == resolved.group != firing.fingerprint


def test_the_resolution_of_a_group_is_the_same_alert_in_the_same_group():
    [firing, _] = parse(sample("unified_mixed"))
    [resolved] = parse(sample("unified_resolved"))
    assert (resolved.status, resolved.fingerprint, resolved.group) == (
        RESOLVED,
        firing.fingerprint,
        firing.group,
    )


def test_no_data_alert_keeps_grafanas_name_and_the_rule_title():
    [alert] = parse(sample("unified_nodata"))
    assert alert.name == "DatasourceNoData"
    assert alert.labels["rulename"] == "SQLiteWALTooLarge"
    assert "values" not in alert.annotations and "value_string" not in alert.annotations


def test_grafana_8_payload_without_values_is_read():
    [alert] = parse(sample("unified_v8"))
    assert (alert.name, alert.labels["pod"]) == ("KubePodCrashLooping", "checkout-7d9c6b5f4-x2k8p")
    assert alert.starts_at is not None and alert.starts_at.utcoffset().total_seconds() == 7200
    assert set(alert.annotations) == {"description", "summary", "silence_url"}


@pytest.mark.parametrize(
    ("values", "shown"),
    [
        ({"B": 44.23943737541908, "A": 1.0}, "A=1, B=44.23943737541908"),
        ({"A": None, "B": -0.5}, "A=[no value], B=-0.5"),
        ({"C": 3}, "C=3"),
    ],
)
def test_values_are_shown_as_grafanas_templates_show_them(values, shown):
    payload = sample("unified_nodata")
    payload["alerts"][0]["values"] = values
    [alert] = parse(payload)
    assert alert.annotations["values"] == shown


def test_rulename_names_an_alert_without_alertname():
    payload = sample("unified_nodata")
    labels = payload["alerts"][0]["labels"]
    del labels["alertname"]
    assert parse(payload)[0].name == "SQLiteWALTooLarge"
    labels["alertname"] = "  "
    assert parse(payload)[0].name == "SQLiteWALTooLarge"


@pytest.mark.parametrize("alertname", [None, ""])
def test_an_alert_nothing_names_is_refused(alertname):
    payload = sample("unified_mixed")
    labels = payload["alerts"][1]["labels"]
    del labels["alertname"]
    if alertname is not None:
        labels["alertname"] = alertname
    message = refusal(payload)
    assert message.startswith("alerts[1].labels.alertname: ")
    assert "rule title" in message and "rulename" in message


def test_unknown_keys_and_newer_fields_are_ignored():
    payload = sample("unified_firing_group")
    payload["appVersion"] = "12.0.1"
    payload["enrichments"] = {"x": 1}
    payload["alerts"][0].update(ruleUID="bdz8k2m4q7x1ce", orgId=1, enrichments=[{"k": "v"}])
    assert len(parse(payload)) == 2


def test_grafana_links_that_are_not_web_links_are_dropped():
    payload = sample("unified_firing_group")
    sent = payload["alerts"][0]
    sent.update(silenceURL="javascript:alert(1)", panelURL="/d/x?viewPanel=1")
    sent["dashboardURL"] += "&x=" + "a" * MAX_VALUE
    sent["generatorURL"] = "ftp://grafana.example.com/x"
    first = parse(payload)[0]
    assert not {"silence_url", "panel_url", "dashboard_url"} & set(first.annotations)
    assert first.link == payload["externalURL"]


def test_without_status_an_alert_has_resolved_when_its_end_has_passed():
    payload = sample("unified_mixed")
    for alert in payload["alerts"]:
        del alert["status"]
    firing, resolved = parse(payload)
    assert (firing.status, resolved.status) == (FIRING, RESOLVED)


def test_groups_are_told_apart_by_org_receiver_and_group_key():
    payload = sample("unified_mixed")
    group = parse(payload)[0].group
    for key, value in (("orgId", 2), ("receiver", "other"), ("groupKey", "{}:{}")):
        assert parse({**payload, key: value})[0].group != group


def test_without_group_key_the_group_labels_make_the_group():
    payload = sample("unified_mixed")
    payload["groupKey"] = ""
    expected = grafana_group(1, "docker-oncall", canonical_json(payload["groupLabels"]))
    assert {a.group for a in parse(payload)} == {expected}
    payload["groupLabels"] = {}
    firing, resolved = parse(payload)
    assert (firing.group, resolved.group) == (firing.fingerprint, resolved.fingerprint)


def test_hostile_labels_and_values_stay_capped():
    payload = sample("unified_nodata")
    alert = payload["alerts"][0]
    alert["labels"].update({f"k{i}": "v" * 5000 for i in range(500)})
    alert["labels"]["x" * 5000] = "y"
    alert["values"] = {f"R{i}": float(i) for i in range(5000)}
    alert["valueString"] = "z" * 100_000
    [read] = parse(payload)
    for pairs in (read.labels, read.annotations):
        assert len(pairs) <= MAX_LABELS
        assert all(len(k) <= MAX_KEY and len(v) <= MAX_VALUE for k, v in pairs.items())


# -- legacy alerting -----------------------------------------------------------------


def test_legacy_alerting_maps_the_rule():
    payload = sample("legacy_alerting")
    [alert] = parse(payload)
    assert (alert.name, alert.status, alert.severity) == ("High CPU alert", FIRING, "critical")
    # The rule's tags, and the tags of the series it matched.
    assert alert.labels == {
        "service": "web",
        "severity": "critical",
        "instance": "docker-host-1:8080",
        "name": "web-1",
    }
    assert alert.annotations == {
        "grafana_state": "alerting",
        "description": "CPU of container web-1 is above 95% for 5 minutes.",
        "values": "web-1=97.43",
        "image_url": payload["imageUrl"],
    }
    assert alert.text == payload["message"]
    assert alert.link == payload["ruleUrl"]
    assert alert.fingerprint == alert.group == legacy_rule_key(1, 7)


def test_legacy_ok_resolves_the_same_rule():
    [firing] = parse(sample("legacy_alerting"))
    [ok] = parse(sample("legacy_ok"))
    assert (ok.name, ok.status) == ("High CPU alert", RESOLVED)
    assert (ok.fingerprint, ok.group) == (firing.fingerprint, firing.group)
    assert ok.text == "[OK] High CPU alert"


def test_legacy_no_data_is_a_datasource_alert_of_the_same_rule():
    [alert] = parse(sample("legacy_no_data"))
    assert (alert.name, alert.status) == ("DatasourceNoData", FIRING)
    assert alert.labels == {"db_path": "/var/lib/app/orders.db", "rulename": "SQLiteWALTooLarge"}
    assert alert.fingerprint == legacy_rule_key(1, 11)
    assert alert.text.startswith("Grafana rule SQLiteWALTooLarge got no data\n")


@pytest.mark.parametrize("state", ["paused", "pending", "unknown"])
def test_legacy_states_that_are_not_alerts_are_accepted_and_say_so(state):
    payload = {**sample("legacy_paused"), "state": state}
    received = read_grafana(json.dumps(payload).encode(), received_at=NOW)
    assert received.alerts == []
    assert received.answer == {
        "ignored": f"Grafana legacy state {state!r} is not an alert; nothing was stored"
    }


def test_rule_tags_win_over_series_tags_and_differing_series_tags_are_dropped():
    payload = sample("legacy_alerting")
    payload["evalMatches"] = [
        {"value": 97.4, "metric": "web-1", "tags": {"name": "web-1", "service": "x", "job": "d"}},
        {"value": None, "metric": "web-2", "tags": {"name": "web-2", "service": "x", "job": "d"}},
    ]
    [alert] = parse(payload)
    assert alert.labels == {"job": "d", "service": "web", "severity": "critical"}
    assert alert.annotations["values"] == "web-1=97.4, web-2=[no value]"


def test_legacy_rule_is_named_by_its_title_without_a_rule_name():
    payload = {**sample("legacy_alerting"), "ruleName": " "}
    assert parse(payload)[0].name == "High CPU alert"
    payload["title"] = "no brackets"
    assert refusal(payload).startswith("ruleName: must not be blank")


def test_legacy_rule_without_id_is_identified_by_its_name():
    payload = sample("legacy_alerting")
    del payload["ruleId"]
    assert parse(payload)[0].fingerprint == legacy_rule_key(1, "High CPU alert")


def test_grafana_4_spelling_of_the_links_is_read():
    payload = sample("legacy_alerting")
    payload["rule_url"] = payload.pop("ruleUrl")
    payload["image_url"] = payload.pop("imageUrl")
    [alert] = parse(payload)
    assert alert.link == payload["rule_url"]
    assert alert.annotations["image_url"] == payload["image_url"]


def test_legacy_minimal_body_is_read():
    [alert] = parse({"ruleName": "Queue stuck", "state": "alerting", "evalMatches": None})
    assert (alert.name, alert.labels, alert.link) == ("Queue stuck", {}, None)


# -- refusals ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "start"),
    [
        (b"{not json", "invalid JSON: "),
        (b"[1, 2]", "body: not a Grafana notification; GRACE expected unified alerting's"),
        (b"{}", "body: not a Grafana notification"),
        (b'{"title": "x", "state": "alerting"}', "body: not a Grafana notification"),
        (b'"alerts"', "body: not a Grafana notification"),
    ],
)
def test_what_is_not_a_grafana_notification_is_refused_saying_what_was_expected(body, start):
    message = refusal(body)
    assert message.startswith(start), message
    if "not a Grafana" in message:
        assert '{"version": "1", "alerts": [...]}' in message and "ruleName" in message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"alerts": []}, "alerts: empty; send at least one alert"),
        ({"alerts": "x"}, "alerts: Input should be a valid array"),
        ({"version": "4"}, "(Alertmanager's webhook goes to /alerts/alertmanager)"),
        ({"version": "2"}, "version: '2' is not Grafana's webhook version '1'"),
        ({"version": ["x"] * 100}, "version: that is not Grafana's webhook version '1'"),
        ({"orgId": "one"}, "orgId: Input should be a valid integer"),
    ],
)
def test_unified_refusals_name_the_field(change, expected):
    payload = {**sample("unified_mixed"), **change}
    assert expected in refusal(payload)


def test_a_broken_alert_is_refused_by_its_place():
    payload = sample("unified_mixed")
    payload["alerts"][1]["labels"] = ["alertname"]
    assert refusal(payload) == "alerts[1].labels: Input should be an object"
    payload = sample("unified_mixed")
    payload["alerts"][0]["values"] = {"A": "high"}
    assert refusal(payload).startswith("alerts[0].values.A: ")


def test_too_many_alerts_are_refused_not_cut():
    payload = sample("unified_nodata")
    payload["alerts"] = payload["alerts"] * (MAX_ALERTS + 1)
    assert refusal(payload).startswith(f"alerts: more than {MAX_ALERTS} alerts")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"state": "exploded"}, "state: Input should be 'alerting', 'ok', 'no_data'"),
        ({"state": None}, "state: Input should be"),
        ({"tags": ["a"]}, "tags: Input should be an object"),
        ({"evalMatches": [{"value": "high"}]}, "evalMatches[0].value: "),
    ],
)
def test_legacy_refusals_name_the_field(change, expected):
    assert refusal({**sample("legacy_alerting"), **change}).startswith(expected)


def test_a_legacy_body_without_state_is_refused():
    payload = sample("legacy_alerting")
    del payload["state"]
    assert refusal(payload) == "state: Field required"


def test_a_huge_key_is_not_echoed_back():
    payload = sample("unified_mixed")
    payload["alerts"][0]["labels"] = {"k" * 100_000: 1}
    assert len(refusal(payload)) < 600


# -- the source ----------------------------------------------------------------------


def test_grafana_is_a_registered_source_reading_the_webhook_token():
    plugin = webhook_plugins()["grafana"]
    assert plugin.config is BearerConfig
    source = plugin.build(BearerConfig(webhook_token=SecretStr("t0k")))
    assert source.name == "grafana" and source.content_types == {"application/json"}
    source.check_headers({"authorization": "Bearer t0k"})
    with pytest.raises(Unauthorized):
        source.check_headers({"authorization": "Bearer nope"})
    with pytest.raises(Unauthorized):
        source.check_headers({})
    with pytest.raises(Unavailable):
        plugin.build(BearerConfig()).check_headers({"authorization": "Bearer t0k"})


def basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_the_token_is_taken_as_a_basic_password_for_grafana_before_9_1():
    """Legacy alerting and unified alerting before 9.1 can send only Basic auth."""
    source = GrafanaSource(SecretStr("t0k"))
    source.check_headers(basic("grafana", "t0k"))
    source.check_headers(basic("", "t0k"))
    for headers in (
        basic("grafana", "nope"),
        basic("t0k", ""),
        {"authorization": "Basic t0k"},
        {"authorization": "Basic !!!"},
        {"authorization": "Basic " + base64.b64encode(b"\xff:t0k").decode()},
    ):
        with pytest.raises(Unauthorized):
            source.check_headers(headers)
    with pytest.raises(Unavailable):
        GrafanaSource(None).check_headers(basic("grafana", "t0k"))


def test_the_source_answers_what_a_quiet_legacy_state_brought():
    source = GrafanaSource(SecretStr("t0k"))
    body = (SAMPLES / "legacy_paused.json").read_bytes()
    received = asyncio.run(source.receive(Request(body, {}, received_at=NOW)))
    assert received.alerts == [] and "paused" in received.answer["ignored"]
    assert source.read(body, received_at=NOW, channel_for=lambda labels: None) == []
