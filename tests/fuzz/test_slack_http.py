"""`POST /slack/events` under fire: unsigned garbage, and garbage Slack signed (events,
commands, interactions, and bodies no Slack sends), against one real GRACE.

Every answer is below 500 and within 3 s; unsigned requests are all 401 and log no
traceback; afterwards the audit chain verifies, the database is sound, nothing is
half-written and nothing raw reached Slack (conftest.assert_intact).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import quote_plus, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import FUZZ, Fuzz, assert_intact
from tests.fuzz.samples import mutated, samples
from tests.fuzz.strategies import (
    USERS,
    broken_bodies,
    command_forms,
    content_types,
    encodings,
    events_documents,
    header_text,
    interaction_documents,
    mostly,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

PATH = "/slack/events"
SECRET = "fuzz-signing-secret"
PLAYBOOKS = ("sqlite-wal-checkpoint", "docker-restart-unhealthy")

# Slack's response_urls and trigger_ids are made by the stand-in when a request is sent:
# a draw says which kind to use, and `_resolve` turns the placeholder into a real one.
RESPONSE_URL, TRIGGER = "{response_url}", "{trigger_id}"
response_urls = st.sampled_from([RESPONSE_URL] * 4 + [""])
triggers = mostly(st.just(TRIGGER), st.sampled_from(["1.2.3abc", "", "not-a-trigger"]), 5)


def _resolve(fuzz: Fuzz, text: str) -> str:
    """Placeholders made real, as they are and as a form encodes them."""
    for placeholder, make in (
        (RESPONSE_URL, lambda: fuzz.response_url("C0ALERTS", USERS[0])),
        (TRIGGER, fuzz.slack.issue_trigger_id),
    ):
        if placeholder in text:
            text = text.replace(placeholder, make())
        if quote_plus(placeholder) in text:
            text = text.replace(quote_plus(placeholder), quote_plus(make()))
    return text


def _event_json(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


def _form(fields: dict[str, Any]) -> bytes:
    # errors="surrogatepass": a lone surrogate goes out as the bytes Slack could never send
    return urlencode(fields, errors="surrogatepass").encode()


def _payload_form(document: dict[str, Any]) -> bytes:
    return _form({"payload": json.dumps(document)})


slack_message_events = st.sampled_from(samples("slack")).flatmap(mutated)


def _alert_channel_event(event: Any, n: int) -> bytes:
    """A mutated real message, delivered as an event in the alert channel."""
    event = {**event, "channel": "C0ALERTS"} if isinstance(event, dict) else event
    return _event_json({"type": "event_callback", "event_id": f"Ev{n:08X}", "event": event})


events_bodies = st.one_of(
    events_documents().map(_event_json),
    st.builds(_alert_channel_event, slack_message_events, st.integers(0, 2**32)),
)
command_bodies = command_forms(response_urls, triggers, PLAYBOOKS).map(_form)
interaction_bodies = interaction_documents(response_urls, triggers).map(_payload_form)
_ODD_FORMS = st.sampled_from(
    [b"payload=not-json", b"payload=%5B1%2C2%5D", b"payload=", b"a=1&b=2", b"payload=%7B", b"="]
)


def _signed_requests(bodies: st.SearchStrategy[bytes], form: bool) -> st.SearchStrategy[tuple]:
    """(body, content type, encoding): mostly as Slack sends it, sometimes broken."""
    usual = "application/x-www-form-urlencoded" if form else "application/json"
    body = mostly(bodies, st.one_of(bodies.flatmap(broken_bodies), _ODD_FORMS))
    content_type = mostly(st.just(usual), content_types)
    encoding = mostly(st.none(), encodings)
    return st.tuples(body, content_type, encoding)


def _headers(
    fuzz: Fuzz, body: bytes, content_type: str, encoding: str | None, *, secret: str = SECRET
) -> dict[str, str]:
    timestamp = str(int(time.time()))
    base = b"v0:" + timestamp.encode() + b":" + body
    signature = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature,
    }
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    return headers


async def _send_signed(fuzz: Fuzz, endpoint: str, request: tuple) -> None:
    body, content_type, encoding = request
    body = _resolve(fuzz, body.decode("utf-8", "surrogateescape")).encode(
        "utf-8", "surrogateescape"
    )
    await fuzz.send(endpoint, PATH, body, _headers(fuzz, body, content_type, encoding))


@given(request=_signed_requests(events_bodies, form=False))
@FUZZ
async def test_signed_events(fuzz: Fuzz, request: tuple) -> None:
    await _send_signed(fuzz, "slack events (signed)", request)


@given(request=_signed_requests(command_bodies, form=True))
@FUZZ
async def test_signed_commands(fuzz: Fuzz, request: tuple) -> None:
    await _send_signed(fuzz, "slack commands (signed)", request)


@given(request=_signed_requests(interaction_bodies, form=True))
@FUZZ
async def test_signed_interactions(fuzz: Fuzz, request: tuple) -> None:
    await _send_signed(fuzz, "slack interactivity (signed)", request)


_STALE = object()
timestamps = st.one_of(
    st.sampled_from(["", "1e9", "-1", "12345678901234567890", " ", "1.5", "now+", "1712345678 "]),
    st.sampled_from([_STALE, None]),
    header_text,
)
signatures = st.one_of(
    st.sampled_from([None, "", "v0=", "v1=" + "0" * 64, "v0=" + "g" * 64, "wrong-secret"]),
    st.text("0123456789abcdef", min_size=64, max_size=64).map(lambda h: "v0=" + h),
    header_text,
)
any_body = st.one_of(
    events_bodies,
    command_bodies,
    interaction_bodies,
    st.binary(max_size=500),
    st.just(b"{}"),
)


@given(
    body=any_body,
    content_type=content_types,
    encoding=encodings,
    timestamp=timestamps,
    signature=signatures,
)
@FUZZ
async def test_unsigned_garbage_is_refused_without_a_traceback(
    fuzz: Fuzz, body: bytes, content_type: str, encoding: str | None, timestamp, signature
) -> None:
    headers = {"Content-Type": content_type}
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    now = str(int(time.time()))
    if timestamp is _STALE:
        headers["X-Slack-Request-Timestamp"] = str(int(time.time()) - 301)
    elif timestamp is not None:
        headers["X-Slack-Request-Timestamp"] = timestamp
    else:
        headers["X-Slack-Request-Timestamp"] = now  # a fresh time, but never Slack's signature
    if signature == "wrong-secret":
        ts = headers["X-Slack-Request-Timestamp"].encode()
        mac = hmac.new(b"not-the-secret", b"v0:" + ts + b":" + body, hashlib.sha256)
        headers["X-Slack-Signature"] = "v0=" + mac.hexdigest()
    elif signature is not None:
        headers["X-Slack-Signature"] = signature
    status = await fuzz.send("slack (unsigned)", PATH, body, headers)
    assert status == 401
    assert fuzz.tracebacks.records == [], fuzz.tracebacks.shown()[:5]


async def test_afterwards_everything_holds(fuzz: Fuzz) -> None:
    await assert_intact(fuzz)
