"""The HTTP edge, request by request, on a real GRACE and DevSlack: what issue 16 found
answered with a 5xx is refused with a 4xx and a reason, and what was lost is kept.

- /slack/events authenticates on the raw bytes before it parses anything, and tells
  the signature watcher of every refusal; a signed body Bolt could not read is a 400
  or 415 naming what is wrong.
- A listener refuses a request that lacks what it needs, before its ack; one that
  fails anyway is answered privately ("GRACE could not do that") and logged once,
  without the request's body.
- A webhook's compressed body is refused unread (415), an instant outside Python's
  datetime range is a 400 naming the field, and a lone surrogate is stored and shown
  as U+FFFD instead of losing the alert.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import pytest
from pydantic import SecretStr

from bot.app import Grace, build
from bot.demo import APPROVER, CHANNEL, demo_settings
from bot.devslack import DevSlack
from bot.listeners.errors import COULD_NOT
from bot.server import MAX_DEPTH, shape_problem
from bot.signing import watch_signature_refusals

TOKEN = "webhook-token"
SECRET = "test-signing-secret"


@pytest.fixture
async def grace(tmp_path: Path) -> AsyncIterator[tuple[Grace, DevSlack]]:
    slack = DevSlack(
        token="xoxb-server-test", signing_secret=SECRET, channels={CHANNEL: "alerts"}, users={}
    )
    await slack.start()
    settings = demo_settings(tmp_path, slack, slack.token, SECRET, tmp_path).model_copy(
        update={"slack_rate": 500.0, "webhook_token": SecretStr(TOKEN)}
    )
    grace = await build(settings)
    await grace.start()
    slack.connect(f"{grace.url}/slack/events")
    yield grace, slack
    await grace.stop()
    await slack.stop()


async def _post(grace: Grace, path: str, body: bytes, headers: dict[str, str]):
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{grace.url}{path}", data=body, headers=headers) as response,
    ):
        return response.status, await response.text()


def _signed(body: bytes, content_type: str, **extra: str) -> dict[str, str]:
    ts = str(int(time.time()))
    mac = hmac.new(SECRET.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256)
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": "v0=" + mac.hexdigest(),
        **extra,
    }


JSON, FORM = "application/json", "application/x-www-form-urlencoded"
# What issue 16's fuzzing answered with a 500, and what a signed one of each now gets.
MALFORMED = [
    (b'{"type": "event_callback", ', JSON, {}, 400, "the body is not JSON"),
    (b"\xff\xfe{}", JSON, {}, 400, "the body is not UTF-8"),
    (b"{}", JSON + "; charset=bogus", {}, 415, "Slack's requests are UTF-8"),
    (b"[" * 5000 + b"]" * 5000, JSON, {}, 400, "nested"),
    # Parsed (far inside JSON's own limit), then refused: listeners must never meet it.
    (b'{"event": {"blocks": ' + b"[" * 200 + b"]" * 200 + b"}}", JSON, {}, 400, "deeper than 64"),
    (gzip.compress(b"{}")[:9], JSON, {"Content-Encoding": "gzip"}, 415, "Content-Encoding"),
    (b"payload=%5B1%5D", FORM, {}, 400, "the payload field is JSON but not an object"),
    (b"payload=%7Bnope", FORM, {}, 400, "the payload field is not JSON"),
    (b"a=1", FORM, {}, 400, "a payload field or a command field"),
    (b'{"type": "event_callback", "event": [1]}', JSON, {}, 400, "event is not an object"),
]


@pytest.mark.parametrize(("body", "content_type", "extra", "status", "reason"), MALFORMED)
async def test_a_signed_body_bolt_cannot_read_is_refused_with_its_reason(
    grace, body, content_type, extra, status, reason
):
    answer = await _post(grace[0], "/slack/events", body, _signed(body, content_type, **extra))
    assert answer[0] == status and reason in json.loads(answer[1])["error"], answer


def test_nesting_is_refused_just_past_the_limit():
    def nested(levels: int) -> dict:
        value: object = []
        for _ in range(levels - 3):  # the document and its event are two levels
            value = [value]
        return {"event": {"blocks": value}}

    assert shape_problem(nested(MAX_DEPTH)) is None
    assert shape_problem(nested(MAX_DEPTH + 1)) == "the document is nested deeper than 64 levels"


async def test_unsigned_requests_are_refused_unread_and_the_watcher_is_told(grace, caplog):
    caplog.set_level(logging.INFO)
    now = [1000.0]
    watch_signature_refusals(clock=lambda: now[0])
    good = _signed(b"{}", JSON)
    cases = [
        {"Content-Type": JSON},  # no timestamp, no signature
        {**good, "X-Slack-Request-Timestamp": "1e9"},
        {**good, "X-Slack-Request-Timestamp": str(int(time.time()) - 301)},
        {**good, "X-Slack-Signature": "v0=" + "0" * 64},
        {**good, "X-Slack-Signature": "garbage"},
    ]
    reasons = []
    for body, headers in zip(
        [b"{", b"\xff", b"[" * 5000, gzip.compress(b"x")[:5], b"{}"], cases, strict=True
    ):
        status, text = await _post(grace[0], "/slack/events", body, headers)
        assert status == 401, text
        reasons.append(json.loads(text)["error"])
    assert reasons[0].startswith("X-Slack-Request-Timestamp is missing")
    assert "more than 5 minutes" in reasons[2] and "does not match" in reasons[3]
    warned = [r.getMessage() for r in caplog.records if r.name == "bot.signing"]
    assert warned == [warned[0]] and warned[0].startswith("refused 1 request(s)")
    assert not any(r.exc_info for r in caplog.records)


async def test_a_body_over_the_limit_is_413(grace):
    body = b"x" * (4 * 1024 * 1024 + 1)
    status, text = await _post(grace[0], "/slack/events", body, _signed(body, JSON))
    assert status == 413 and "larger than" in text


async def test_a_command_whose_words_say_payload_reaches_its_listener(grace):
    # Bolt alone reads any form with "payload" in it as an interaction: this one was lost.
    _, slack = grace
    delivery = await slack.slash_command("playbooks payload", user=APPROVER, channel=CHANNEL)
    assert delivery.status == 200 and "takes no arguments" in delivery.body


def _form(**fields: str) -> bytes:
    return urlencode(fields).encode()


def _payload(document: dict) -> bytes:
    return _form(payload=json.dumps(document))


MISSING = [
    (_form(command="/grace", text="pause", channel_id=CHANNEL, trigger_id="1.2.ab"), "user_id"),
    (
        _form(command="/grace", text="help", user_id="U1><!channel", channel_id=CHANNEL),
        "user_id",
    ),
    (
        _payload(
            {
                "type": "block_actions",
                "user": {"id": APPROVER},
                "trigger_id": "1.2.ab",
                "actions": [{"action_id": "grace.approve", "value": "{}"}],
            }
        ),
        "channel",
    ),
    (
        _payload(
            {
                "type": "view_submission",
                "user": {"id": APPROVER},
                "view": {
                    "id": "V1",
                    "type": "modal",
                    "callback_id": "grace.reject_form",
                    "state": {"values": None},
                },
            }
        ),
        "state.values",
    ),
]


@pytest.mark.parametrize(("body", "what"), MISSING)
async def test_a_request_without_what_its_listener_needs_is_refused_at_once(grace, body, what):
    started = time.monotonic()
    status, text = await _post(grace[0], "/slack/events", body, _signed(body, FORM))
    assert status == 400 and what in text, text
    assert time.monotonic() - started < 1.0  # not Slack's 3 s time-out


async def test_a_failing_listener_answers_the_person_and_logs_once_without_the_body(grace, caplog):
    grace_, slack = grace

    @grace_.bolt.command("/boom")
    async def boom(ack, command) -> None:
        raise RuntimeError("a bug")

    @grace_.bolt.action("boom.button")
    async def boom_button(ack, body) -> None:
        raise RuntimeError("a bug")

    command = await slack.slash_command(
        "SECRET-WORDS", user=APPROVER, channel=CHANNEL, command="/boom"
    )
    assert command.status == 200 and json.loads(command.body)["text"] == COULD_NOT
    url = slack._new_response_url(CHANNEL, APPROVER, None)
    click = {
        "type": "block_actions",
        "user": {"id": APPROVER},
        "channel": {"id": CHANNEL},
        "trigger_id": slack.issue_trigger_id(),
        "response_url": url,
        "actions": [{"action_id": "boom.button", "block_id": "b", "value": "SECRET-WORDS"}],
    }
    body = _payload(click)
    status, _ = await _post(grace_, "/slack/events", body, _signed(body, FORM))
    assert status == 200
    told = await slack.wait_for(
        lambda: [m for m in slack.ephemerals(APPROVER) if COULD_NOT in m.text]
    )
    assert len(told) == 1
    failures = [r for r in caplog.records if r.name == "bot.listeners.errors"]
    assert [r.getMessage() for r in failures] == [
        "GRACE failed on a Slack command: RuntimeError",
        "GRACE failed on a Slack block_actions: RuntimeError",
    ]
    assert not any("SECRET-WORDS" in r.getMessage() for r in caplog.records)


async def _webhook(grace: Grace, body: bytes, **headers: str):
    sent = {"Content-Type": JSON, "Authorization": f"Bearer {TOKEN}", **headers}
    return await _post(grace, "/alerts/generic", body, sent)


async def test_a_compressed_webhook_body_is_refused_unread(grace):
    for body in (gzip.compress(b'{"name": "x"}'), b"\x1f\x8b not gzip at all"):
        status, text = await _webhook(grace[0], body, **{"Content-Encoding": "gzip"})
        assert status == 415 and "Content-Encoding 'gzip' is not accepted" in text


async def test_an_instant_outside_the_date_range_is_refused_naming_its_field(grace):
    for field, value in (
        ("starts_at", "9999-12-31T23:59:59-00:01"),
        ("ends_at", "0001-01-01T00:00:00+01:00"),
    ):
        body = json.dumps({"name": "DiskFull", field: value}).encode()
        status, text = await _webhook(grace[0], body)
        assert status == 400 and json.loads(text)["error"].startswith(f"{field}: an instant"), text
    alertmanager = {
        "alerts": [{"labels": {"alertname": "X"}, "startsAt": "9999-12-31T23:59:59-00:01"}]
    }
    sent = {"Content-Type": JSON, "Authorization": f"Bearer {TOKEN}"}
    status, text = await _post(
        grace[0], "/alerts/alertmanager", json.dumps(alertmanager).encode(), sent
    )
    assert status == 400 and "alerts[0].startsAt" in text, text


async def test_an_alert_with_a_lone_surrogate_is_stored_and_shown(grace):
    # Slack's JSON may carry one (Bolt reads it with json.loads): it becomes U+FFFD.
    grace_, slack = grace
    text = "[FIRING:1] alertname=Disk\ud83dFull host=db-1 note=broken\udc80emoji"
    delivery = await slack.post_message_as(CHANNEL, text, bot_id="B0AM", username="Alertmanager")
    assert delivery.status == 200, delivery.body
    card = await slack.wait_for(
        lambda: next((m for m in slack.messages(CHANNEL) if m.blocks), None)
    )
    assert card.blocks[0]["text"]["text"] == "Disk\ufffdFull"
    stored = (await grace_.store.list_incidents(limit=5))[0].alert
    assert (stored.name, stored.labels["note"]) == ("Disk\ufffdFull", "broken\ufffdemoji")
    # A webhook's JSON reader refuses it outright: a 400 saying so, never a lost alert.
    body = json.dumps({"name": "Disk \ud83d full"}).encode()
    status, answer = await _webhook(grace_, body)
    assert status == 400 and "invalid JSON" in answer
