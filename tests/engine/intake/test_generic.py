"""parse_generic: the documented JSON, its strictness, and its caps."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from engine.intake.errors import MAX_ALERTS, IntakeError
from engine.intake.generic import GenericAlert, parse_generic
from engine.intake.limits import MAX_KEY, MAX_LABELS, MAX_NAME, MAX_TEXT, MAX_VALUE
from engine.models import Alert, AlertStatus, canonical_json, sha256_hex

SAMPLES = Path(__file__).parent / "samples" / "generic"
DOCS = Path(__file__).parents[3] / "docs" / "alerts.md"
NOW = datetime(2024, 5, 14, 12, 0, tzinfo=UTC)


def sample(name: str) -> Any:
    return json.loads((SAMPLES / f"{name}.json").read_text())


def parse(payload: Any) -> list[Alert]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return parse_generic(body, received_at=NOW)


def refusal(payload: Any) -> str:
    with pytest.raises(IntakeError) as caught:
        parse(payload)
    return str(caught.value)


# -- samples: every field mapped ----------------------------------------------


def test_single_alert_maps_every_field() -> None:
    [alert] = parse(sample("single"))
    assert alert.source == "generic"
    assert alert.source_key == "id:nightly-pg-backup/1841"
    assert alert.name == "BackupJobFailed"
    assert alert.status is AlertStatus.FIRING
    assert alert.severity == "critical"
    assert alert.labels == {
        "job": "nightly-pg-backup",
        "host": "db-backup-01",
        "db_path": "/var/lib/app/app.db",
    }
    assert alert.annotations == {
        "summary": "Nightly backup failed",
        "runbook": "https://wiki.example.com/runbooks/backups",
    }
    assert alert.text.startswith("pg_dump exited with status 1")
    assert alert.starts_at == datetime(2024, 5, 14, 2, 30, 5, tzinfo=timezone(timedelta(hours=2)))
    assert alert.ends_at is None
    assert alert.link == "https://ci.example.com/jobs/nightly-pg-backup/builds/1841"
    name_and_labels = canonical_json({"name": alert.name, "labels": alert.labels})
    assert alert.fingerprint == sha256_hex(name_and_labels)[:16]
    assert alert.group == alert.fingerprint
    assert alert.received_at == NOW


def test_minimal_alert_takes_the_documented_defaults() -> None:
    [alert] = parse(sample("minimal"))
    assert alert.name == "CronHeartbeatMissing"
    assert alert.status is AlertStatus.FIRING
    assert alert.severity is None
    assert alert.labels == {} and alert.annotations == {}
    assert alert.text == ""
    assert alert.starts_at is None and alert.ends_at is None and alert.link is None
    assert alert.source_key  # a fresh key, not empty


def test_batch_maps_groups_ids_fingerprints_and_text_from_annotations() -> None:
    first, second, third = parse(sample("batch"))
    assert first.group == second.group == "web-fleet-disk"
    assert first.fingerprint != second.fingerprint
    assert first.source_key == "id:disk-check/web-1/2024-05-14T08:00"
    assert first.text == "Disk /var/log/app on web-1 is 91% full\nLog rotation last ran 3 days ago."
    assert second.text == "Disk /var/log/app on web-2 is 88% full"
    assert third.status is AlertStatus.RESOLVED
    assert third.fingerprint == "billing-healthz"
    assert third.group == "billing-healthz"
    assert third.severity == "critical"  # from its severity label
    assert third.ends_at == datetime(2024, 5, 14, 7, 49, 30, tzinfo=UTC)


def test_explicit_severity_wins_over_the_label() -> None:
    [alert] = parse({"name": "X", "severity": "info", "labels": {"severity": "critical"}})
    assert alert.severity == "info"
    assert alert.labels == {"severity": "critical"}


def test_explicit_empty_text_is_kept() -> None:
    [alert] = parse({"name": "X", "text": "", "annotations": {"summary": "s"}})
    assert alert.text == ""


def test_same_id_gives_same_source_key_and_no_id_gives_fresh_ones() -> None:
    with_id = {"name": "X", "id": "run-7"}
    assert parse(with_id)[0].source_key == parse(with_id)[0].source_key == "id:run-7"
    keys = [a.source_key for a in parse({"alerts": [{"name": "X"}, {"name": "X"}]})]
    keys += [parse({"name": "X"})[0].source_key]
    assert len(set(keys)) == 3
    assert not any(key.startswith("id:") for key in keys)


def test_long_ids_are_hashed_so_distinct_ids_stay_distinct() -> None:
    first = parse({"name": "X", "id": "i" * 5000})[0].source_key
    second = parse({"name": "X", "id": "i" * 4999 + "j"})[0].source_key
    assert first != second
    assert len(first) <= MAX_KEY + 3
    assert first == parse({"name": "X", "id": "i" * 5000})[0].source_key


def test_every_alert_field_is_documented() -> None:
    docs = DOCS.read_text()
    for field in GenericAlert.model_fields:
        assert f"`{field}`" in docs, field


# -- refusals --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"name": "X"', "invalid JSON: EOF while parsing an object at line 1 column 12"),
        (b'{"name": "\xc3\x28"}', "invalid JSON: invalid unicode code point at line 1 column 11"),
        (b"<alert/>", "invalid JSON: expected value at line 1 column 1"),
    ],
)
def test_bad_json_is_refused_with_its_position(body: bytes, expected: str) -> None:
    assert refusal(body) == expected


@pytest.mark.parametrize("payload", [[{"name": "X"}], "X", 3, None])
def test_body_must_be_an_alert_or_a_batch(payload: Any) -> None:
    assert refusal(payload) == 'body: expected one alert object or {"alerts": [...]}'


def test_unknown_alert_key_is_refused_with_the_allowed_ones() -> None:
    message = refusal({"name": "X", "sevrity": "critical"})
    assert message.startswith("sevrity: unknown field; allowed: name, status, severity, ")
    message = refusal({"alerts": [{"name": "X"}, {"name": "Y", "lables": {}}]})
    assert message.startswith("alerts[1].lables: unknown field; allowed: name, ")


def test_unknown_batch_key_is_refused() -> None:
    assert refusal({"alerts": [{"name": "X"}], "source": "cron"}) == (
        "source: unknown field; allowed: alerts"
    )


@pytest.mark.parametrize(
    ("alert", "expected"),
    [
        ({}, "name: Field required"),
        ({"name": ""}, "name: must not be blank"),
        ({"name": " \t"}, "name: must not be blank"),
        ({"name": 7}, "name: Input should be a valid string"),
        ({"name": "X", "status": "FIRING"}, "status: Input should be 'firing' or 'resolved'"),
        ({"name": "X", "labels": "a=b"}, "labels: Input should be an object"),
        ({"name": "X", "labels": {"a": 1}}, "labels.a: Input should be a valid string"),
        (
            {"name": "X", "annotations": {"a": None}},
            "annotations.a: Input should be a valid string",
        ),
        ({"name": "X", "id": ""}, "id: String should have at least 1 character"),
        (
            {"name": "X", "link": "javascript:alert(1)"},
            "link: must be an http or https URL",
        ),
        ({"name": "X", "link": "ftp://files/x"}, "link: must be an http or https URL"),
        ({"name": "X", "link": "https://"}, "link: must be an http or https URL"),
    ],
)
def test_fields_outside_the_schema_are_refused_by_name(
    alert: dict[str, Any], expected: str
) -> None:
    assert refusal(alert) == expected
    assert refusal({"alerts": [{"name": "ok"}, alert]}) == f"alerts[1].{expected}"


@pytest.mark.parametrize(
    ("stamp", "problem"),
    [
        ("yesterday", "Input should be a valid datetime or date"),
        ("2024-05-14T08:00:00", "Input should have timezone info"),
        ("2024-13-01T00:00:00Z", "Input should be a valid datetime or date"),
    ],
)
def test_bad_timestamps_are_refused(stamp: str, problem: str) -> None:
    assert refusal({"name": "X", "starts_at": stamp}).startswith(f"starts_at: {problem}")
    assert refusal({"name": "X", "ends_at": stamp}).startswith(f"ends_at: {problem}")


def test_empty_alert_list_is_refused() -> None:
    assert refusal({"alerts": []}) == "alerts: empty; send at least one alert"


def test_more_than_the_limit_of_alerts_is_refused() -> None:
    assert len(parse({"alerts": [{"name": "X"}] * MAX_ALERTS})) == MAX_ALERTS
    assert refusal({"alerts": [{"name": "X"}] * (MAX_ALERTS + 1)}) == (
        f"alerts: more than {MAX_ALERTS} alerts in one request; send them in several"
    )


# -- caps: hostile input is cut, never refused ------------------------------------


def test_a_ten_megabyte_label_value_is_cut() -> None:
    [alert] = parse(
        {
            "name": "N" * 10_000,
            "severity": "s" * 10_000,
            "labels": {"host": "h" * 10_000_000},
            "text": "t" * 10_000_000,
        }
    )
    assert alert.labels == {"host": "h" * MAX_VALUE}
    assert alert.name == "N" * MAX_NAME
    assert alert.severity == "s" * MAX_VALUE
    assert alert.text == "t" * MAX_TEXT


def test_a_thousand_labels_are_capped() -> None:
    labels = {f"k{i:04}": "v" for i in range(1000)}
    [alert] = parse({"name": "X", "labels": labels, "annotations": labels})
    assert list(alert.labels) == list(labels)[:MAX_LABELS]
    assert len(alert.annotations) == MAX_LABELS


def test_long_identities_are_hashed_and_long_links_dropped() -> None:
    [alert] = parse(
        {
            "name": "X",
            "fingerprint": "f" * 10_000,
            "group": "g" * 10_000,
            "link": "https://example.com/" + "x" * 10_000,
        }
    )
    assert len(alert.fingerprint) <= MAX_KEY and len(alert.group) <= MAX_KEY
    assert alert.fingerprint != alert.group
    assert alert.link is None
