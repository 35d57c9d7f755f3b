"""Sentry's integration-platform webhooks, read from real-shaped bodies.

The samples in samples/sentry/ are shaped as getsentry/sentry builds them
(sentry_apps/tasks/sentry_apps.py: the event's `as_dict()` plus url, web_url,
issue_url and issue_id for `event_alert`; the serialised group plus url,
web_url and project_url for `issue`; the incident serializer for
`metric_alert`) and as the "Integration Platform > Webhooks" docs show them;
the values are our own.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from engine.intake.errors import IntakeError
from engine.intake.sentry import SentrySource, parse_sentry, sign
from engine.intake.sources import Request, Unauthorized, Unavailable, webhook_plugins
from engine.models import AlertStatus

SAMPLES = Path(__file__).parent / "samples" / "sentry"
NOW = datetime(2024, 11, 26, 3, 15, tzinfo=UTC)
FIRING, RESOLVED = AlertStatus.FIRING, AlertStatus.RESOLVED
SECRET = "6b1f0c2e9a7d4e3b8c5a0f1e2d3c4b5a6978f0e1d2c3b4a5968778695a4b3c2d"


def raw(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def body(name: str) -> dict[str, Any]:
    return json.loads(raw(name))


def read(data: bytes | dict[str, Any], resource: str | None = None, **kw: Any):
    payload = data if isinstance(data, bytes) else json.dumps(data).encode()
    return parse_sentry(payload, received_at=NOW, resource=resource, **kw)


def only(data: bytes | dict[str, Any], resource: str | None = None):
    reading = read(data, resource)
    assert len(reading.alerts) == 1, reading.note
    return reading.alerts[0]


# -- event_alert -----------------------------------------------------------------------


def test_an_issue_alert_is_named_by_its_issue_and_labelled_by_its_tags():
    alert = only(raw("event_alert_database_locked.json"), "event_alert")
    assert (alert.source, alert.name, alert.status, alert.severity) == (
        "sentry",
        "OperationalError: database is locked",
        FIRING,
        "error",
    )
    assert (
        alert.labels.items()
        >= {
            "issue_id": "6081734552",
            "project": "orders",  # from the event's API URL: the body holds only its number
            "level": "error",
            "environment": "production",
            "release": "orders@2.14.0",
            "server_name": "app-2",
            "db_path": "/var/lib/app/orders.db",
            "service": "orders-worker",
            "app_dir": "/srv/app",
        }.items()
    )
    assert "user" not in alert.labels  # a person's id heals nothing
    assert alert.link == (
        "https://sentry.io/organizations/acme/issues/6081734552/events/"
        "b7d1e94c2a3f4d0e8c61f5a92e0d7b13/"
    )
    assert alert.starts_at == datetime(2024, 11, 26, 3, 2, 11, 482913, tzinfo=UTC)
    assert alert.annotations["rule"] == "Orders errors in production"
    assert alert.annotations["culprit"] == "orders.views in create_order"


def test_the_text_holds_the_culprit_the_qualified_exception_and_where_it_was_raised():
    text = only(raw("event_alert_database_locked.json"), "event_alert").text.split("\n")
    assert text[:3] == [
        "OperationalError: database is locked",
        "orders.views in create_order",
        "sqlite3.OperationalError: database is locked",
    ]
    assert '  File "/srv/app/orders/models.py", line 142, in save' in text


def test_app_dir_is_where_python_imported_the_application_from():
    alert = only(raw("event_alert_bad_magic_number.json"), "event_alert")
    assert alert.name.startswith("ImportError: bad magic number in 'orders.views'")
    assert alert.labels["app_dir"] == "/srv/app"
    assert "bad magic number" in alert.text


def test_a_browser_event_has_no_app_dir_and_keeps_its_numeric_project_when_no_url_names_it():
    data = body("event_alert_javascript.json")
    alert = only(data, "event_alert")
    assert "app_dir" not in alert.labels
    assert alert.labels["project"] == "storefront"
    del data["data"]["event"]["url"]
    assert only(data, "event_alert").labels["project"] == "4508200"


def test_an_issue_alert_and_the_issues_own_webhooks_share_one_identity():
    triggered = only(raw("event_alert_database_locked.json"), "event_alert")
    created = only(raw("issue_created.json"), "issue")
    resolved = only(raw("issue_resolved.json"), "issue")
    assert triggered.fingerprint == created.fingerprint == resolved.fingerprint
    assert resolved.status is RESOLVED
    other = only(raw("event_alert_bad_magic_number.json"), "event_alert")
    assert other.fingerprint != triggered.fingerprint


def test_sentrys_own_retry_of_an_issue_alert_is_the_same_alert():
    first = only(raw("event_alert_database_locked.json"), "event_alert")
    again = only(raw("event_alert_database_locked.json"), "event_alert")
    assert first.source_key == again.source_key
    data = body("event_alert_database_locked.json")
    data["data"]["triggered_rule"] = "Another rule"
    assert only(data, "event_alert").source_key != first.source_key


def test_an_event_without_a_title_is_named_by_its_exception_or_message():
    data = body("event_alert_database_locked.json")
    del data["data"]["event"]["title"]
    assert only(data, "event_alert").name == "OperationalError: database is locked"
    event = data["data"]["event"]
    del event["metadata"], event["exception"]
    event["logentry"] = {"formatted": "DEBUG logging is on in production\nsecond line"}
    alert = only(data, "event_alert")
    assert alert.name == "DEBUG logging is on in production"


# -- issue -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "status"), [("created", FIRING), ("unresolved", FIRING), ("resolved", RESOLVED)]
)
def test_issue_actions_that_say_whether_it_fires(action, status):
    data = body("issue_created.json")
    data["action"] = action
    alert = only(data, "issue")
    assert (alert.name, alert.status, alert.severity) == (
        "OperationalError: database is locked",
        status,
        "error",
    )
    assert (
        alert.labels.items()
        >= {
            "issue_id": "6081734552",
            "short_id": "ORDERS-3K",
            "project": "orders",
            "level": "error",
            "platform": "python",
        }.items()
    )
    assert alert.link == "https://sentry.io/organizations/acme/issues/6081734552/"


def test_a_regressed_issue_fires_again_as_the_same_alert():
    reopened = only(raw("issue_unresolved.json"), "issue")
    assert reopened.status is FIRING and reopened.annotations["substatus"] == "regressed"
    assert reopened.fingerprint == only(raw("issue_resolved.json"), "issue").fingerprint


def test_a_resolution_without_web_url_links_the_permalink():
    alert = only(raw("issue_resolved.json"), "issue")
    assert alert.link == "https://sentry.io/organizations/acme/issues/6081734552/"


@pytest.mark.parametrize("action", ["assigned", "ignored", "archived"])
def test_assigning_or_archiving_an_issue_stores_nothing_and_says_so(action):
    data = body("issue_assigned.json")
    data["action"] = action
    reading = read(data, "issue")
    assert reading.alerts == [] and action in reading.note and "nothing" in reading.note


# -- metric_alert ----------------------------------------------------------------------


def test_a_metric_alert_is_named_by_its_rule_and_resolves_its_incident():
    critical = only(raw("metric_alert_critical.json"), "metric_alert")
    resolved = only(raw("metric_alert_resolved.json"), "metric_alert")
    assert (critical.name, critical.status, critical.severity) == (
        "Orders: database is locked",
        FIRING,
        "critical",
    )
    assert (resolved.status, resolved.severity) == (RESOLVED, None)
    assert critical.fingerprint == resolved.fingerprint
    assert (
        critical.labels.items()
        >= {
            "alert_rule_id": "51877",
            "project": "orders",
            "environment": "production",
        }.items()
    )
    assert critical.link is not None and "/alerts/rules/details/51877/" in critical.link
    assert "312 events in the last 10 minutes" in critical.text


def test_a_warning_is_firing_with_its_severity():
    data = body("metric_alert_critical.json")
    data["action"] = "warning"
    alert = only(data, "metric_alert")
    assert (alert.status, alert.severity) == (FIRING, "warning")


# -- other resources, and bodies without the header --------------------------------------


@pytest.mark.parametrize("resource", ["installation", "error", "comment", "seer", "whatever"])
def test_other_resources_are_not_alerts_and_the_answer_says_so(resource):
    reading = read(raw("installation_created.json"), resource)
    assert reading.alerts == [] and "not an alert" in reading.note


@pytest.mark.parametrize(
    ("name", "fingerprint"),
    [
        ("event_alert_database_locked.json", "sentry-issue:6081734552"),
        ("issue_created.json", "sentry-issue:6081734552"),
        ("metric_alert_critical.json", "sentry-metric:2204917"),
    ],
)
def test_without_the_header_the_body_says_which_resource_it_is(name, fingerprint):
    assert only(raw(name)).fingerprint == fingerprint
    assert read(raw("installation_created.json")).alerts == []


# -- refusals --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "resource", "message"),
    [
        (b"{not json", "event_alert", "invalid JSON"),
        (b"{not json", "installation", "invalid JSON"),
        (b"[1, 2]", "issue", "body"),
        (b'{"action": "triggered", "data": {}}', "event_alert", "data.event: Field required"),
        (
            b'{"action": "triggered", "data": {"event": {"title": "x"}}}',
            "event_alert",
            "data.event.issue_id: Field required",
        ),
        (b'{"action": "created", "data": {"issue": []}}', "issue", "data.issue: Input should be"),
        (
            b'{"action": "critical", "data": {"metric_alert": {"id": 4}}}',
            "metric_alert",
            "data.metric_alert.alert_rule: Field required",
        ),
    ],
)
def test_a_body_that_breaks_the_shape_is_refused_naming_the_field(data, resource, message):
    with pytest.raises(IntakeError, match=message.replace("[", r"\[")):
        read(data, resource)


def test_a_huge_field_is_not_echoed_in_the_refusal():
    data = body("event_alert_database_locked.json")
    data["data"]["event"]["tags"] = "x" * 100_000
    with pytest.raises(IntakeError) as refused:
        read(data, "event_alert")
    assert len(str(refused.value)) < 600


def test_huge_values_are_capped():
    data = body("event_alert_database_locked.json")
    event = data["data"]["event"]
    event["title"] = "T" * 50_000
    event["tags"] = [[f"k{i}", "v" * 5000] for i in range(500)]
    alert = only(data, "event_alert")
    assert len(alert.name) <= 200 and len(alert.labels) <= 64
    assert all(len(value) <= 1024 for value in alert.labels.values())


# -- the source: signature, secret, delivery key -----------------------------------------


def request(data: bytes, headers: dict[str, str]) -> Request:
    return Request(data, headers, received_at=NOW, channel_for=lambda labels: "C0ALERTS")


def signed(data: bytes, resource: str = "event_alert", **extra: str) -> dict[str, str]:
    return {
        "sentry-hook-resource": resource,
        "sentry-hook-signature": sign(data, SECRET),
        "sentry-hook-timestamp": "1732590131",
        "request-id": "4c0b1f0e-8a7d-4e2b-9c3d-5f6a7b8c9d0e",
        **extra,
    }


def test_a_signed_delivery_is_read_and_keyed_by_its_request_id():
    source = SentrySource(SecretStr(SECRET))
    data = raw("event_alert_database_locked.json")
    received = asyncio.run(source.receive(request(data, signed(data))))
    assert [a.name for a in received.alerts] == ["OperationalError: database is locked"]
    assert received.delivery_key == "4c0b1f0e-8a7d-4e2b-9c3d-5f6a7b8c9d0e"
    assert received.alerts[0].channel == "C0ALERTS"


def test_an_issue_delivery_is_keyed_by_its_request_id_too():
    source = SentrySource(SecretStr(SECRET))
    data = raw("issue_resolved.json")
    received = asyncio.run(source.receive(request(data, signed(data, "issue"))))
    assert received.alerts[0].source_key == "request:4c0b1f0e-8a7d-4e2b-9c3d-5f6a7b8c9d0e"


def test_a_delivery_that_is_no_alert_answers_why():
    source = SentrySource(SecretStr(SECRET))
    data = raw("issue_assigned.json")
    received = asyncio.run(source.receive(request(data, signed(data, "issue"))))
    assert received.alerts == [] and "assigned" in received.answer["note"]


@pytest.mark.parametrize(
    "signature",
    ["", "0" * 64, sign(b"another body", SECRET), sign(b"x", "another secret"), "é" * 64],
)
def test_a_wrong_or_missing_signature_is_refused_before_the_body_is_read(signature):
    source = SentrySource(SecretStr(SECRET))
    data = b"{not even json"
    headers = signed(data) | {"sentry-hook-signature": signature}
    with pytest.raises(Unauthorized):
        source.check_headers(headers)
        asyncio.run(source.receive(request(data, headers)))


def test_without_a_secret_sentry_is_unavailable_and_says_what_to_set():
    source = SentrySource(None)
    with pytest.raises(Unavailable, match="GRACE_SENTRY_CLIENT_SECRET"):
        source.check_headers({"sentry-hook-signature": "abc"})


def test_the_source_registers_itself_with_its_setting():
    plugin = webhook_plugins()["sentry"]
    source = plugin.build(type("S", (), {"sentry_client_secret": SecretStr(SECRET)})())
    assert isinstance(source, SentrySource) and source.secret is not None
    assert "sentry_client_secret" in plugin.config.model_fields
