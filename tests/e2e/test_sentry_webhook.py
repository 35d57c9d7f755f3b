"""Sentry's webhooks through the real server: signed as Sentry signs them, and refused as
they must be.

Bodies and headers are shaped as getsentry/sentry sends them
(sentry_apps/api/serializers/app_platform_event.py: Content-Type, Request-ID,
Sentry-Hook-Resource, Sentry-Hook-Timestamp and Sentry-Hook-Signature, the hex
HMAC-SHA256 of the body keyed with the integration's Client Secret), from the
samples in tests/engine/intake/samples/sentry/.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from engine.intake.errors import MAX_BODY_BYTES
from engine.intake.sentry import sign
from engine.models import IncidentState

SAMPLES = Path(__file__).parents[1] / "engine" / "intake" / "samples" / "sentry"
SECRET = "0f9e8d7c6b5a49382716f5e4d3c2b1a0ffeeddccbbaa99887766554433221100"


def sample(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / name).read_text())


def locked_alert(db_path: Path) -> bytes:
    """An issue alert for `database is locked`, its db_path tag naming the test's database."""
    body = sample("event_alert_database_locked.json")
    tags = body["data"]["event"]["tags"]
    body["data"]["event"]["tags"] = [t for t in tags if t[0] != "db_path"] + [
        ["db_path", str(db_path)]
    ]
    return json.dumps(body).encode()


def headers(
    body: bytes, resource: str, *, secret: str = SECRET, request_id: str | None = None
) -> dict[str, str]:
    return {
        "Request-ID": request_id or uuid.uuid4().hex,
        "Sentry-Hook-Resource": resource,
        "Sentry-Hook-Timestamp": "1732590131",
        "Sentry-Hook-Signature": sign(body, secret),
    }


async def sentry(h, body: bytes, resource: str, **kw: Any) -> tuple[int, dict]:
    return await h.post("sentry", body, token=None, headers=headers(body, resource, **kw))


async def test_an_issue_alert_opens_and_the_issues_resolution_ends_it(make_harness):
    h = await make_harness(sentry_client_secret=SecretStr(SECRET))
    status, answer = await sentry(h, locked_alert(h.app_db), "event_alert")
    assert status == 200 and (answer["received"], answer["opened"]) == (1, 1), answer
    card = await h.card()
    await h.grace.healer.drain()
    [incident] = await h.incidents()
    assert incident.alert.source == "sentry"
    assert incident.alert.name == "OperationalError: database is locked"
    assert incident.alert.labels["db_path"] == str(h.app_db)
    assert incident.state is IncidentState.AWAITING_APPROVAL and incident.plan is not None

    resolved = json.dumps(sample("issue_resolved.json")).encode()
    status, answer = await sentry(h, resolved, "issue")
    assert status == 200 and answer["incidents"] == [incident.id], answer
    await h.slack.wait_for(lambda: any("resolved by itself" in t for t in h.thread(card)))
    await h.grace.healer.drain()
    [incident] = await h.incidents()
    assert incident.state is IncidentState.AUTO_RESOLVED


async def test_an_issue_created_opens_an_incident_that_says_what_it_lacks(make_harness):
    h = await make_harness(sentry_client_secret=SecretStr(SECRET))
    created = json.dumps(sample("issue_created.json")).encode()
    status, answer = await sentry(h, created, "issue")
    assert status == 200 and answer["opened"] == 1, answer
    await h.grace.healer.drain()
    [incident] = await h.incidents()
    # The issue's webhook carries no tags, so no database is named: a person decides.
    assert incident.state is IncidentState.NEEDS_HUMAN and incident.plan is None


async def test_a_retried_delivery_is_stored_once(make_harness):
    h = await make_harness(sentry_client_secret=SecretStr(SECRET))
    body = locked_alert(h.app_db)
    request_id = uuid.uuid4().hex
    first = await sentry(h, body, "event_alert", request_id=request_id)
    again = await sentry(h, body, "event_alert", request_id=request_id)
    # Sentry's task retry builds the request again, with a new Request-ID: same event, same rule.
    rebuilt = await sentry(h, body, "event_alert")
    assert [status for status, _ in (first, again, rebuilt)] == [200, 200, 200]
    assert first[1]["opened"] == 1
    await h.grace.healer.drain()
    [incident] = await h.incidents()
    assert incident.alert_count == 1


async def test_what_is_not_an_alert_is_answered_and_stores_nothing(make_harness):
    h = await make_harness(sentry_client_secret=SecretStr(SECRET))
    assigned = json.dumps(sample("issue_assigned.json")).encode()
    installed = json.dumps(sample("installation_created.json")).encode()
    for body, resource, said in [
        (assigned, "issue", "assigned"),
        (installed, "installation", "not an alert"),
    ]:
        status, answer = await sentry(h, body, resource)
        assert status == 200 and answer["received"] == 0 and said in answer["note"], answer
    await h.grace.healer.drain()
    assert await h.incidents() == []


async def test_refusals_get_their_status_never_a_5xx_and_store_nothing(make_harness):
    h = await make_harness(sentry_client_secret=SecretStr(SECRET))
    good = locked_alert(h.app_db)
    unsigned = {"Sentry-Hook-Resource": "event_alert", "Request-ID": uuid.uuid4().hex}
    broken = b'{"action": "triggered", "data": {"event": {"title": 5'
    no_issue = b'{"action": "triggered", "data": {"event": {"title": "x"}}}'
    too_big = b'{"a": "' + b"x" * MAX_BODY_BYTES + b'"}'
    cases = [
        (await h.post("sentry", good, token=None, headers=unsigned), 401, "Sentry-Hook-Signature"),
        (await sentry(h, good, "event_alert", secret="another secret"), 401, "does not match"),
        (await sentry(h, broken, "event_alert"), 400, "invalid JSON"),
        (await sentry(h, no_issue, "event_alert"), 400, "data.event.issue_id"),
        (await sentry(h, b"[]", "issue"), 400, "body"),
        (await sentry(h, too_big, "event_alert"), 413, "larger than"),
        (
            await h.post(
                "sentry",
                good,
                token=None,
                content_type="text/plain",
                headers=headers(good, "event_alert"),
            ),
            400,
            "Content-Type",
        ),
    ]
    for (status, answer), expected, reason in cases:
        assert status == expected, answer
        assert answer["ok"] is False and reason in answer["error"]
    odd = [b"null", b"0", b'"text"', b'{"data": null}', b'{"action": 1, "data": {"issue": {}}}']
    for body in odd:
        for resource in ("event_alert", "issue", "metric_alert", ""):
            status, answer = await sentry(h, body, resource)
            assert status in (200, 400), (body, resource, answer)
    await h.grace.healer.drain()
    assert await h.incidents() == []
    assert 'grace_alerts_received_total{source="sentry"}' not in await h.metrics()


async def test_without_the_client_secret_sentry_is_off_and_says_what_to_set(make_harness):
    h = await make_harness()
    body = locked_alert(h.app_db)
    status, answer = await sentry(h, body, "event_alert")
    assert status == 503 and "GRACE_SENTRY_CLIENT_SECRET" in answer["error"]
    await h.grace.healer.drain()
    assert await h.incidents() == []
