"""Datadog's webhook integration through the real server, with the custom header
`Authorization: Bearer <GRACE_WEBHOOK_TOKEN>` its tile sends.

Payloads are the Webhooks tile's default payload as Datadog fills it in
(tests/engine/intake/samples/datadog/), titled for a monitor GRACE heals.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.intake.errors import MAX_BODY_BYTES
from engine.models import IncidentState

SAMPLES = Path(__file__).parents[1] / "engine" / "intake" / "samples" / "datadog"


def wal_monitor(db_path: Path, transition: str, event_id: str) -> bytes:
    """Datadog's default payload for a multi-alert monitor grouped by the db_path tag."""
    body: dict[str, Any] = json.loads((SAMPLES / "default_triggered.json").read_text())
    body["title"] = f"[{transition} on {{db_path:{db_path}}}] SQLiteWALTooLarge"
    body["id"] = event_id
    body["body"] = (
        "%%%\nThe write-ahead log of the orders database is over 64 MiB. @webhook-grace\n\n"
        f"**sqlite.wal.bytes** over **db_path:{db_path}** was **> 67108864.0** on average "
        "during the **last 5m**.\n\n[[Monitor Status](https://app.datadoghq.com/monitors/"
        "149000321?group=db_path&link_source=monitor_notif)]\n%%%"
    )
    return json.dumps(body).encode()


async def test_triggered_opens_and_recovered_ends_the_monitors_incident(make_harness):
    h = await make_harness()
    status, answer = await h.post("datadog", wal_monitor(h.app_db, "Triggered", "7716001"))
    assert status == 200 and answer["opened"] == 1, answer
    card = await h.card()
    await h.grace.healer.drain()
    [incident] = await h.incidents()
    assert incident.alert.source == "datadog" and incident.alert.name == "SQLiteWALTooLarge"
    assert incident.alert.labels["db_path"] == str(h.app_db)
    assert incident.alert.labels["monitor_id"] == "149000321"
    assert incident.state is IncidentState.AWAITING_APPROVAL

    status, answer = await h.post("datadog", wal_monitor(h.app_db, "Recovered", "7716002"))
    assert status == 200 and answer["incidents"] == [incident.id], answer
    await h.slack.wait_for(lambda: any("resolved by itself" in t for t in h.thread(card)))
    await h.grace.healer.drain()
    [incident] = await h.incidents()
    assert incident.state is IncidentState.AUTO_RESOLVED


async def test_datadogs_retry_of_a_notification_is_stored_once(make_harness):
    h = await make_harness()
    body = wal_monitor(h.app_db, "Triggered", "7716003")
    first, again = await h.post("datadog", body), await h.post("datadog", body)
    assert (first[0], again[0]) == (200, 200) and first[1]["opened"] == 1
    await h.grace.healer.drain()
    [incident] = await h.incidents()
    assert incident.alert_count == 1


async def test_refusals_get_their_status_never_a_5xx_and_store_nothing(make_harness):
    h = await make_harness()
    good = wal_monitor(h.app_db, "Triggered", "7716004")
    cases = [
        (await h.post("datadog", good, token=None), 401, "bearer token"),
        (await h.post("datadog", good, token="wrong"), 401, "bearer token"),
        (await h.post("datadog", "{not json"), 400, "invalid JSON"),
        (await h.post("datadog", '{"body": "hello"}'), 400, "title"),
        (await h.post("datadog", good, content_type="application/x-www-form-urlencoded"), 400, ""),
        (await h.post("datadog", b'{"a": "' + b"x" * MAX_BODY_BYTES + b'"}'), 413, "larger"),
    ]
    for (status, answer), expected, reason in cases:
        assert status == expected, answer
        assert answer["ok"] is False and reason in answer["error"]
    for body in ["null", "[]", '"x"', '{"title": null}', '{"title": {"a": 1}}', "\ufeff{}"]:
        status, answer = await h.post("datadog", body)
        assert status == 400, (body, answer)
    await h.grace.healer.drain()
    assert await h.incidents() == []


async def test_without_the_webhook_token_datadog_is_off(make_harness):
    h = await make_harness(webhook_token=None)
    status, answer = await h.post("datadog", wal_monitor(h.app_db, "Triggered", "7716005"))
    assert status == 503 and "GRACE_WEBHOOK_TOKEN" in answer["error"]
    assert await h.incidents() == []
