"""Every alert webhook under fire, against one real GRACE: real payloads mutated, any
JSON, broken bodies, odd headers, with and without the token or signature each takes.

Every answer is below 500 and within 3 s; afterwards the audit chain verifies, every
stored alert belongs to an audited delivery, the database is sound and no raw mention
or link from an alert reached Slack (conftest.assert_intact).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.intake.sentry import sign
from tests.engine.intake.sns_samples import TOPIC, signed
from tests.fuzz.conftest import (
    FUZZ,
    SENTRY_SECRET,
    SNS_CERT_PATH,
    SNS_CONFIRM_PATH,
    WEBHOOK_TOKEN,
    Fuzz,
    assert_intact,
)
from tests.fuzz.samples import mutated_samples
from tests.fuzz.strategies import (
    broken_bodies,
    content_types,
    encodings,
    header_text,
    json_values,
    mostly,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


def _bodies(documents: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """Mostly a (mutated) real payload as JSON; else any JSON, or a body gone wrong."""
    valid = documents.map(lambda doc: json.dumps(doc).encode())
    other = json_values.map(lambda doc: json.dumps(doc).encode())
    return mostly(valid, st.one_of(other, valid.flatmap(broken_bodies)))


def _headers(usual_type: str, auth: dict[str, str]) -> st.SearchStrategy[dict[str, str]]:
    """As the sender sends them, six times in seven; else odd ones, or none at all."""
    odd = st.fixed_dictionaries(
        {"Content-Type": content_types},
        optional={
            "Authorization": st.sampled_from(
                [f"Bearer {WEBHOOK_TOKEN}", "Bearer wrong", "Basic Zm9vOmJhcg==", ""]
            )
            | header_text,
            "Content-Encoding": encodings.filter(bool),
        },
    )
    usual = st.just({"Content-Type": usual_type, **auth})
    return mostly(usual, odd, one_in=7)


BEARER = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}


async def _post(fuzz: Fuzz, source: str, body: bytes, headers: dict[str, str]) -> None:
    await fuzz.send(f"/alerts/{source}", f"/alerts/{source}", body, headers)


@given(
    body=_bodies(mutated_samples("alertmanager")),
    headers=_headers("application/json", BEARER),
    path=st.sampled_from(["alertmanager", "alertmanager", "alertmanager/api/v2/alerts"]),
)
@FUZZ
async def test_alertmanager(fuzz: Fuzz, body: bytes, headers: dict[str, str], path: str) -> None:
    await fuzz.send("/alerts/alertmanager", f"/alerts/{path}", body, headers)


@given(body=_bodies(mutated_samples("grafana")), headers=_headers("application/json", BEARER))
@FUZZ
async def test_grafana(fuzz: Fuzz, body: bytes, headers: dict[str, str]) -> None:
    await _post(fuzz, "grafana", body, headers)


@given(body=_bodies(mutated_samples("datadog")), headers=_headers("application/json", BEARER))
@FUZZ
async def test_datadog(fuzz: Fuzz, body: bytes, headers: dict[str, str]) -> None:
    await _post(fuzz, "datadog", body, headers)


@given(body=_bodies(mutated_samples("generic")), headers=_headers("application/json", BEARER))
@FUZZ
async def test_generic(fuzz: Fuzz, body: bytes, headers: dict[str, str]) -> None:
    await _post(fuzz, "generic", body, headers)


SENTRY_RESOURCES = ("issue", "event_alert", "metric_alert", "installation", "bogus")


@given(
    body=_bodies(mutated_samples("sentry")),
    resource=st.sampled_from(SENTRY_RESOURCES) | header_text,
    signing=st.sampled_from(["signed", "signed", "signed", "unsigned", "wrong secret", "garbage"]),
    content_type=mostly(st.just("application/json"), content_types),
)
@FUZZ
async def test_sentry_signed_and_unsigned(
    fuzz: Fuzz, body: bytes, resource: str, signing: str, content_type: str
) -> None:
    headers = {"Content-Type": content_type, "Sentry-Hook-Resource": resource}
    if signing == "signed":
        headers["Sentry-Hook-Signature"] = sign(body, SENTRY_SECRET)
    elif signing == "wrong secret":
        headers["Sentry-Hook-Signature"] = sign(body, "not-the-secret")
    elif signing == "garbage":
        headers["Sentry-Hook-Signature"] = "zz" * 32
    await _post(fuzz, "sentry", body, headers)


CERT, CONFIRM, MISSING = "{cert}", "{confirm}", "{sns}/missing.pem"
sns_messages = st.one_of(
    mutated_samples("sns"),
    st.builds(
        lambda message, topic, cert, subscribe: (
            {
                **message,
                "TopicArn": topic,
                "SigningCertURL": cert,
                "SubscribeURL": subscribe,
            }
            if isinstance(message, dict)
            else message
        ),
        mutated_samples("sns"),
        st.sampled_from([TOPIC, TOPIC, "arn:aws:sns:us-east-1:000000000000:other"]),
        # Only the stand-in's host is listed: the fuzz never makes GRACE reach further.
        st.sampled_from([CERT, CERT, MISSING, "https://fuzz.invalid/x.pem"]),
        st.sampled_from([CONFIRM, "https://fuzz.invalid/confirm", "not a url"]),
    ),
)


def _sns_body(fuzz: Fuzz, message: Any, sign_it: bool) -> bytes:
    """The message with the stand-in's URLs in place, signed as SNS signs when asked."""
    if isinstance(message, dict):
        message = {
            k: v.replace(CERT, fuzz.sns_base + SNS_CERT_PATH)
            .replace(CONFIRM, fuzz.sns_base + SNS_CONFIRM_PATH)
            .replace("{sns}", fuzz.sns_base)
            if isinstance(v, str)
            else v
            for k, v in message.items()
        }
        if sign_it:
            # a mutated message may lack what SNS signs: it goes out unsigned
            with contextlib.suppress(KeyError, TypeError):
                message = signed(message, cert_url=message.get("SigningCertURL", ""))
    return json.dumps(message).encode()


@given(
    message=sns_messages,
    sign_it=st.sampled_from([True, True, True, False]),
    content_type=mostly(st.just("text/plain; charset=UTF-8"), content_types),
    encoding=mostly(st.none(), encodings),
    broken=st.sampled_from([False] * 7 + [True]),
    cut=st.integers(0, 200),
)
@FUZZ
async def test_sns(
    fuzz: Fuzz,
    message: Any,
    sign_it: bool,
    content_type: str,
    encoding: str | None,
    broken: bool,
    cut: int,
) -> None:
    body = _sns_body(fuzz, message, sign_it)
    if broken:
        body = body[:cut]
    headers = {"Content-Type": content_type}
    if encoding:
        headers["Content-Encoding"] = encoding
    topic = message.get("TopicArn") if isinstance(message, dict) else None
    if isinstance(topic, str) and topic.isprintable() and topic.isascii():
        headers["x-amz-sns-topic-arn"] = topic  # as SNS sends it, when a header can carry it
    await _post(fuzz, "sns", body, headers)


async def test_afterwards_everything_holds(fuzz: Fuzz) -> None:
    await assert_intact(fuzz)
