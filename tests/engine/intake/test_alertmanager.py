"""parse_alertmanager against real-shaped webhook bodies, hostile ones and broken ones."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.intake.alertmanager import (
    AlertmanagerAlert,
    AlertmanagerPayload,
    alertmanager_group,
    parse_alertmanager,
)
from engine.intake.errors import MAX_ALERTS, IntakeError
from engine.intake.limits import MAX_KEY, MAX_LABELS, MAX_NAME, MAX_TEXT, MAX_VALUE
from engine.models import Alert, AlertStatus, canonical_json, sha256_hex

SAMPLES = Path(__file__).parent / "samples" / "alertmanager"
NOW = datetime(2024, 5, 14, 12, 0, tzinfo=UTC)


def sample(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / f"{name}.json").read_text())


def parse(payload: dict[str, Any] | bytes) -> list[Alert]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return parse_alertmanager(body, received_at=NOW)


def refusal(payload: dict[str, Any] | bytes) -> str:
    with pytest.raises(IntakeError) as caught:
        parse(payload)
    return str(caught.value)


# -- samples: every field mapped ----------------------------------------------


def test_every_sample_parses_to_one_alert_per_sent_alert() -> None:
    for path in sorted(SAMPLES.glob("*.json")):
        payload = json.loads(path.read_text())
        alerts = parse(payload)
        sent = payload if isinstance(payload, list) else payload["alerts"]
        assert len(alerts) == len(sent), path.name
        if isinstance(payload, dict):
            group = alertmanager_group(payload["receiver"], str(payload["groupKey"]))
            assert {a.group for a in alerts} == {group}, path.name


def test_firing_group_maps_every_field() -> None:
    payload = sample("firing_group")
    alerts = parse(payload)
    first, sent = alerts[0], payload["alerts"][0]
    assert first.source == "alertmanager"
    assert first.name == "KubePodCrashLooping"
    assert first.status is AlertStatus.FIRING
    assert first.severity == "warning"
    assert first.labels == sent["labels"]
    assert first.annotations == sent["annotations"]
    assert first.text == "Pod is crash looping.\n" + sent["annotations"]["description"]
    assert first.text.endswith('(api) is in waiting state (reason: "CrashLoopBackOff").')
    assert first.starts_at == datetime(2024, 5, 14, 9, 12, 31, 512000, tzinfo=UTC)
    assert first.ends_at is None
    assert first.link == sent["generatorURL"]
    assert first.fingerprint == "1f3a9c0d7e2b4c61"
    assert (
        first.group
        == sha256_hex(canonical_json(["alertmanager", "grace", payload["groupKey"]]))[:16]
    )
    assert first.received_at == NOW
    assert first.channel is None and first.reporter is None
    assert [a.name for a in alerts] == [
        "KubePodCrashLooping",
        "KubeDeploymentReplicasMismatch",
        "NodeFilesystemSpaceFillingUp",
    ]
    assert [a.severity for a in alerts] == ["warning", "warning", "critical"]
    assert [a.fingerprint for a in alerts] == [a["fingerprint"] for a in payload["alerts"]]


def test_annotations_are_kept_as_sent_with_nothing_added() -> None:
    payload = sample("resolved_group")
    for alert, sent in zip(parse(payload), payload["alerts"], strict=True):
        assert alert.annotations == sent["annotations"]


def test_resolved_group_keeps_its_end_times() -> None:
    alerts = parse(sample("resolved_group"))
    assert [a.status for a in alerts] == [AlertStatus.RESOLVED, AlertStatus.RESOLVED]
    assert alerts[0].ends_at == datetime(2024, 5, 14, 3, 41, 16, 118000, tzinfo=UTC)
    assert alerts[1].ends_at == datetime(2024, 5, 14, 3, 39, 46, 118000, tzinfo=UTC)


def test_mixed_group_takes_each_alerts_own_status_and_one_group() -> None:
    payload = sample("mixed_group")
    assert payload["status"] == "firing"
    alerts = parse(payload)
    assert [a.status for a in alerts] == [
        AlertStatus.FIRING,
        AlertStatus.RESOLVED,
        AlertStatus.FIRING,
    ]
    assert [a.ends_at is None for a in alerts] == [True, False, True]
    assert len({a.group for a in alerts}) == 1
    assert len({a.fingerprint for a in alerts}) == 3


def test_nanosecond_timestamps_from_go_are_read() -> None:
    [first, *_] = parse(sample("mixed_group"))
    assert first.starts_at == datetime(2024, 5, 14, 11, 2, 14, 987654, tzinfo=UTC)


def test_empty_generator_url_falls_back_to_the_alertmanager_url() -> None:
    alerts = parse(sample("mixed_group"))
    assert alerts[0].link is not None and alerts[0].link.startswith("http://prometheus-k8s-0")
    assert alerts[2].link == "https://alertmanager.example.com"


def test_a_non_web_generator_url_is_not_used_as_link() -> None:
    payload = sample("mixed_group")
    payload["alerts"][0]["generatorURL"] = "javascript:alert(1)"
    payload["externalURL"] = ""
    assert parse(payload)[0].link is None


def test_truncated_group_yields_the_alerts_that_were_sent() -> None:
    payload = sample("truncated")
    assert payload["truncatedAlerts"] == 9
    alerts = parse(payload)
    assert [a.labels["instance"] for a in alerts] == [
        "ip-10-0-3-41.eu-west-1.compute.internal",
        "ip-10-0-4-19.eu-west-1.compute.internal",
    ]


def test_text_uses_summary_then_description_and_whichever_exists() -> None:
    payload = sample("mixed_group")
    payload["alerts"][0]["annotations"] = {"description": "only a description"}
    payload["alerts"][1]["annotations"] = {"runbook_url": "https://example.com"}
    alerts = parse(payload)
    assert alerts[0].text == "only a description"
    assert alerts[1].text == ""
    assert alerts[2].text == "Pod has been in a non-ready state for more than 15 minutes."


def test_missing_severity_label_gives_no_severity() -> None:
    payload = sample("mixed_group")
    del payload["alerts"][0]["labels"]["severity"]
    assert parse(payload)[0].severity is None


# -- identity -------------------------------------------------------------------


def test_group_is_equal_for_same_receiver_and_group_key_only() -> None:
    payload = sample("firing_group")
    again = parse(payload)
    assert {a.group for a in again} == {a.group for a in parse(payload)}

    other_key = sample("firing_group")
    other_key["groupKey"] = '{}/{severity=~"warning|critical"}:{namespace="checkout"}'
    other_receiver = sample("firing_group")
    other_receiver["receiver"] = "grace-platform"
    groups = {parse(p)[0].group for p in (payload, other_key, other_receiver)}
    assert len(groups) == 3


def test_group_hash_cannot_be_forged_by_moving_text_between_fields() -> None:
    assert alertmanager_group("a:b", "c") != alertmanager_group("a", "b:c")


def test_every_received_alert_gets_its_own_source_key() -> None:
    payload = sample("firing_group")
    first, second = parse(payload), parse(payload)
    keys = [a.source_key for a in first + second]
    assert len(set(keys)) == len(keys) == 6


def test_fingerprint_is_derived_from_name_and_labels_when_not_sent() -> None:
    payload = sample("mixed_group")
    del payload["alerts"][0]["fingerprint"]
    payload["alerts"][1]["fingerprint"] = ""
    alerts = parse(payload)
    for alert in alerts[:2]:
        expected = sha256_hex(canonical_json({"name": alert.name, "labels": alert.labels}))[:16]
        assert alert.fingerprint == expected
    assert alerts[0].fingerprint != alerts[1].fingerprint
    assert len({a.group for a in alerts}) == 1


def test_zero_end_time_in_any_offset_means_not_ended() -> None:
    payload = sample("firing_group")
    payload["alerts"][0]["endsAt"] = "0001-01-01T00:00:00Z"
    payload["alerts"][1]["endsAt"] = "0001-01-01T00:00:00.000000000Z"
    payload["alerts"][2]["endsAt"] = "0001-01-01T01:00:00+01:00"
    assert [a.ends_at for a in parse(payload)] == [None, None, None]


# -- unknown keys, builder -------------------------------------------------------


def test_unknown_keys_are_ignored_at_every_level() -> None:
    payload = sample("firing_group")
    payload["somethingNew"] = {"in": "a later release"}
    payload["alerts"][0]["silencedBy"] = ["abc"]
    alerts = parse(payload)
    assert len(alerts) == 3
    assert "silencedBy" not in alerts[0].annotations


def test_built_payload_round_trips_through_the_parser() -> None:
    built = AlertmanagerPayload(
        receiver="grace",
        groupKey='{}:{alertname="SQLiteWALTooLarge"}',
        externalURL="http://alertmanager:9093",
        alerts=[
            AlertmanagerAlert(
                status=AlertStatus.FIRING,
                labels={"alertname": "SQLiteWALTooLarge", "db_path": "/var/lib/app/app.db"},
                annotations={"summary": "WAL is 2 GB"},
                startsAt=NOW - timedelta(minutes=5),
                fingerprint="00112233aabbccdd",
            )
        ],
    )
    [alert] = parse_alertmanager(built.model_dump_json().encode(), received_at=NOW)
    assert alert.name == "SQLiteWALTooLarge"
    assert alert.starts_at == NOW - timedelta(minutes=5)
    assert alert.ends_at is None
    assert alert.link == "http://alertmanager:9093"
    assert alert.text == "WAL is 2 GB"
    assert alert.fingerprint == "00112233aabbccdd"


# -- refusals --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"version": "4", ', "invalid JSON: EOF while parsing a value at line 1 column 17"),
        (
            b'{\n  "version": "4"\n  "receiver": "grace"}',
            "invalid JSON: expected `,` or `}` at line 3 column 3",
        ),
        (b"", "invalid JSON: EOF while parsing a value at line 1 column 0"),
        (
            b'{"receiver": "gr\xffce"}',
            "invalid JSON: invalid unicode code point at line 1 column 17",
        ),
    ],
)
def test_bad_json_is_refused_with_its_position(body: bytes, expected: str) -> None:
    assert refusal(body) == expected


def test_top_level_must_be_an_object_or_an_array_of_alerts() -> None:
    assert refusal(b'"alerts"').startswith("body: ")
    assert refusal(b"[]") == "alerts: empty; send at least one alert"
    assert refusal(b'[{"labels": []}]') == "alerts[0].labels: Input should be an object"


@pytest.mark.parametrize("version", ["5", "2", 4, None])
def test_other_versions_are_refused_by_version(version: object) -> None:
    payload = sample("firing_group")
    payload["version"] = version
    payload["alerts"] = "also broken"  # the version is the news, not this
    message = refusal(payload)
    assert message.startswith(f"version: webhook version {version!r} is not supported")
    assert "versions '3' and '4'" in message


def test_a_huge_version_is_not_echoed_back() -> None:
    payload = sample("firing_group")
    payload["version"] = "9" * 1_000_000
    assert len(refusal(payload)) < 200


def test_only_the_alerts_are_required() -> None:
    payload = sample("firing_group")
    for field in ("version", "status", "receiver", "truncatedAlerts", "externalURL"):
        del payload[field]
    assert [a.name for a in parse(payload)] == [a["labels"]["alertname"] for a in payload["alerts"]]
    del payload["alerts"]
    assert refusal(payload) == "alerts: Field required"


# -- every release's payload ----------------------------------------------------


def test_version_3_with_a_numeric_group_key_and_alerts_without_status() -> None:
    payload = sample("v3_no_status")
    first, second = parse(payload)
    # No status: an alert that has not ended fires; one whose end passed resolved.
    assert (first.status, second.status) == (AlertStatus.FIRING, AlertStatus.RESOLVED)
    assert first.group == second.group == alertmanager_group("ops-webhook", "8410522711823452011")
    assert first.ends_at is None
    assert second.ends_at == datetime(2024, 5, 14, 11, 38, 42, 38000, tzinfo=UTC)


def test_a_future_end_time_without_status_is_still_firing() -> None:
    payload = sample("v3_no_status")
    payload["alerts"][1]["endsAt"] = (NOW + timedelta(minutes=4)).isoformat()
    assert [a.status for a in parse(payload)] == [AlertStatus.FIRING, AlertStatus.FIRING]


def test_without_a_group_key_the_group_labels_name_the_group() -> None:
    payload = sample("firing_group")
    del payload["groupKey"]
    same = parse(payload)
    assert len({a.group for a in same}) == 1
    other = json.loads(json.dumps(payload))
    other["groupLabels"] = {"namespace": "checkout"}
    assert parse(other)[0].group != same[0].group


def test_without_group_key_or_labels_each_alert_is_its_own_group() -> None:
    payload = sample("firing_group")
    del payload["groupKey"]
    payload["groupLabels"] = {}
    alerts = parse(payload)
    assert [a.group for a in alerts] == [a.fingerprint for a in alerts]


def test_the_alerts_api_array_vmalert_posts() -> None:
    firing, resolved = parse(json.dumps(sample("vmalert_api_v2")).encode())
    assert (firing.name, firing.status, firing.labels["container"]) == (
        "ContainerUnhealthy",
        AlertStatus.FIRING,
        "web-1",
    )
    assert resolved.status is AlertStatus.RESOLVED
    assert (
        firing.text
        == "Container web-1 is unhealthy\nContainer web-1 on docker-host-1:8080 reports unhealthy"
    )
    assert firing.link is not None and firing.link.startswith("http://vmalert.monitoring:8880/")
    # Nothing groups them: each is its own incident, identified by its labels.
    assert firing.group == firing.fingerprint != resolved.group == resolved.fingerprint


def test_missing_alertname_is_refused_naming_the_alert() -> None:
    payload = sample("firing_group")
    del payload["alerts"][2]["labels"]["alertname"]
    assert refusal(payload) == "alerts[2].labels.alertname: Field required"


def test_blank_alertname_is_refused() -> None:
    payload = sample("firing_group")
    payload["alerts"][1]["labels"]["alertname"] = "  "
    assert refusal(payload) == "alerts[1].labels.alertname: must not be blank"


def test_labels_must_be_an_object() -> None:
    payload = sample("firing_group")
    payload["alerts"][1]["labels"] = ["alertname=KubePodCrashLooping"]
    assert refusal(payload) == "alerts[1].labels: Input should be an object"


def test_label_values_must_be_strings() -> None:
    payload = sample("firing_group")
    payload["alerts"][0]["labels"]["replicas"] = 3
    assert refusal(payload) == "alerts[0].labels.replicas: Input should be a valid string"


def test_an_odd_label_key_is_quoted_and_cut_in_the_message() -> None:
    payload = sample("firing_group")
    payload["alerts"][0]["labels"]["app.kubernetes.io/name"] = None
    assert refusal(payload) == (
        'alerts[0].labels["app.kubernetes.io/name"]: Input should be a valid string'
    )
    payload = sample("firing_group")
    payload["alerts"][0]["labels"]["k" * 100_000] = 1
    message = refusal(payload)
    assert message.startswith('alerts[0].labels["' + "k" * 64 + '…"]')
    assert len(message) < 200


def test_unknown_status_is_refused() -> None:
    payload = sample("firing_group")
    payload["alerts"][0]["status"] = "pending"
    assert refusal(payload) == "alerts[0].status: Input should be 'firing' or 'resolved'"


@pytest.mark.parametrize("stamp", ["yesterday", "2024-05-14T09:12:31", "2024-05-14"])
def test_bad_or_zoneless_timestamps_are_refused(stamp: str) -> None:
    payload = sample("firing_group")
    payload["alerts"][1]["startsAt"] = stamp
    assert refusal(payload).startswith("alerts[1].startsAt: ")


def test_empty_alert_list_is_refused() -> None:
    payload = sample("firing_group")
    payload["alerts"] = []
    assert refusal(payload) == "alerts: empty; send at least one alert"


def test_more_than_the_limit_of_alerts_is_refused() -> None:
    payload = sample("firing_group")
    one = payload["alerts"][0]
    payload["alerts"] = [one] * MAX_ALERTS
    assert len(parse(payload)) == MAX_ALERTS
    payload["alerts"] = [one] * (MAX_ALERTS + 1)
    assert refusal(payload) == (
        f"alerts: more than {MAX_ALERTS} alerts in one request; send them in several"
    )


# -- caps: hostile input is cut, never refused ------------------------------------


def test_a_ten_megabyte_label_value_is_cut() -> None:
    payload = sample("firing_group")
    payload["alerts"][0]["labels"]["pod"] = "p" * 10_000_000
    payload["alerts"][0]["annotations"]["description"] = "d" * 10_000_000
    [alert, *_] = parse(payload)
    assert alert.labels["pod"] == "p" * MAX_VALUE
    assert alert.annotations["description"] == "d" * MAX_VALUE
    assert len(alert.text) == MAX_TEXT
    assert alert.text.startswith("Pod is crash looping.\nddd")


def test_a_thousand_labels_are_capped() -> None:
    payload = sample("firing_group")
    labels = {"alertname": "Storm", **{f"label_{i:04}": str(i) for i in range(1000)}}
    payload["alerts"][0]["labels"] = labels
    payload["alerts"][0]["annotations"] = {f"a{i}": "x" for i in range(1000)}
    [alert, *_] = parse(payload)
    assert len(alert.labels) == MAX_LABELS
    assert list(alert.labels) == list(labels)[:MAX_LABELS]
    assert len(alert.annotations) == MAX_LABELS
    assert alert.name == "Storm"


def test_long_keys_names_and_fingerprints_are_cut_or_hashed() -> None:
    payload = sample("firing_group")
    first = payload["alerts"][0]
    first["labels"]["alertname"] = "N" * 10_000
    first["labels"]["k" * 10_000] = "v"
    first["fingerprint"] = "f" * 10_000
    payload["alerts"][1]["fingerprint"] = "f" * 9_999 + "g"
    alerts = parse(payload)
    assert alerts[0].name == "N" * MAX_NAME
    assert "k" * MAX_KEY in alerts[0].labels
    assert all(len(key) <= MAX_KEY for key in alerts[0].labels)
    assert len(alerts[0].fingerprint) <= MAX_KEY
    assert alerts[0].fingerprint != alerts[1].fingerprint  # hashed, not cut to a collision


def test_overlong_links_are_dropped_not_cut() -> None:
    payload = sample("firing_group")
    payload["alerts"][0]["generatorURL"] = "http://prometheus/graph?g0.expr=" + "x" * 5000
    payload["externalURL"] = "http://alertmanager/" + "y" * 5000
    assert parse(payload)[0].link is None
