"""CloudWatch alarms through SNS, end to end: the real server, messages signed as SNS signs them.

SNS's side is played on loopback: a tiny aiohttp server serves our own
certificate (at a .pem path, as SNS serves its own) and the SubscribeURL, and
counts every request, so the tests see exactly what GRACE fetched. The test
lists 127.0.0.1 in sns_cert_hosts, the one way plain http is allowed.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from engine.intake.errors import MAX_BODY_BYTES
from engine.intake.sns import MAX_CERT_BYTES, Fetcher, FetchError
from engine.models import IncidentState
from tests.engine.intake.sns_samples import (
    RDS_TOPIC,
    TOPIC,
    certificate_pem,
    headers,
    sample,
    signed,
)

CERT_PATH = "/SimpleNotificationService-e2e.pem"
CONFIRM_PATH = "/confirm"
MOVED_PATH = "/moved.pem"
HUGE_PATH = "/huge.pem"
BUSY_PATH = "/busy.pem"
SILENT_PATH = "/silent.pem"


@dataclass
class FakeSns:
    """The certificate and confirmation endpoints of SNS, on 127.0.0.1."""

    base: str = ""
    hits: Counter[str] = field(default_factory=Counter)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def cert_url(self) -> str:
        return self.base + CERT_PATH

    def subscribe_url(self, token: str) -> str:
        return (
            f"{self.base}{CONFIRM_PATH}?Action=ConfirmSubscription&TopicArn={TOPIC}&Token={token}"
        )


@pytest.fixture
async def fake_sns() -> AsyncIterator[FakeSns]:
    sns = FakeSns()

    async def cert(request: web.Request) -> web.Response:
        sns.hits[CERT_PATH] += 1
        return web.Response(body=certificate_pem(), content_type="application/x-x509-ca-cert")

    async def confirm(request: web.Request) -> web.Response:
        sns.hits[CONFIRM_PATH] += 1
        return web.Response(text="<ConfirmSubscriptionResponse/>", content_type="text/xml")

    async def moved(request: web.Request) -> web.Response:
        sns.hits[MOVED_PATH] += 1
        raise web.HTTPFound(CERT_PATH)

    async def huge(request: web.Request) -> web.Response:
        sns.hits[HUGE_PATH] += 1
        return web.Response(body=certificate_pem() + b"\n" * MAX_CERT_BYTES)

    async def busy(request: web.Request) -> web.Response:
        sns.hits[BUSY_PATH] += 1
        return web.Response(status=503, text="Service Unavailable")

    async def silent(request: web.Request) -> web.Response:
        sns.hits[SILENT_PATH] += 1
        await sns.released.wait()  # no answer until the fixture ends; the client gives up first
        return web.Response(status=204)

    app = web.Application()
    app.router.add_get(CERT_PATH, cert)
    app.router.add_get(CONFIRM_PATH, confirm)
    app.router.add_get(MOVED_PATH, moved)
    app.router.add_get(HUGE_PATH, huge)
    app.router.add_get(BUSY_PATH, busy)
    app.router.add_get(SILENT_PATH, silent)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    sns.base = f"http://127.0.0.1:{port}"
    yield sns
    sns.released.set()
    await runner.cleanup()


@pytest.fixture
async def grace(make_harness, fake_sns):
    return await make_harness(sns_topics=[TOPIC], sns_cert_hosts=["127.0.0.1"])


async def post(h, message: dict[str, Any], **extra: str) -> tuple[int, dict]:
    """POST as SNS does: its headers (from the message where it has them), text/plain."""
    sent = {**_headers(message), **extra}
    content_type = sent.pop("content-type")
    return await h.post(
        "sns", json.dumps(message), token=None, content_type=content_type, headers=sent
    )


def _headers(message: dict[str, Any]) -> dict[str, str]:
    try:
        return headers(message)
    except KeyError:  # a malformed body has no MessageId to send as a header
        return {"content-type": "text/plain; charset=UTF-8"}


def notification(fake_sns: FakeSns, name: str, **changes: Any) -> dict[str, Any]:
    return signed({**sample(name), **changes}, cert_url=fake_sns.cert_url)


async def test_a_subscription_is_confirmed_once_and_answered(grace, fake_sns):
    message = sample("subscription_confirmation.json")
    message = signed(
        {**message, "SubscribeURL": fake_sns.subscribe_url(message["Token"])},
        cert_url=fake_sns.cert_url,
    )
    status, answer = await post(grace, message)
    assert (status, answer["confirmed"], answer["received"]) == (200, TOPIC, 0)
    assert fake_sns.hits == {CERT_PATH: 1, CONFIRM_PATH: 1}
    assert await grace.incidents() == []


async def test_alarm_opens_an_incident_and_ok_ends_it(grace, fake_sns):
    status, answer = await post(grace, notification(fake_sns, "notification_alarm.json"))
    assert status == 200 and answer["opened"] == 1, answer
    await grace.grace.healer.drain()
    [incident] = await grace.incidents()
    assert incident.alert.source == "sns" and incident.alert.name == "HighCPU-web-asg"
    assert incident.alert.labels["AutoScalingGroupName"] == "web-asg"
    # aws-asg-cpu-high recognises it; no aws target is allowlisted here, so a person looks.
    assert incident.state is IncidentState.NEEDS_HUMAN

    status, answer = await post(grace, notification(fake_sns, "notification_ok.json"))
    assert status == 200 and answer["incidents"] == [incident.id], answer
    await grace.grace.healer.drain()
    [ended] = await grace.incidents()
    assert ended.state is IncidentState.AUTO_RESOLVED
    assert fake_sns.hits == {CERT_PATH: 1}  # one certificate, fetched once


async def test_missing_data_is_its_own_incident_and_the_ok_after_it_ends_both(grace, fake_sns):
    for name in ("notification_alarm.json", "notification_insufficient_data.json"):
        status, answer = await post(grace, notification(fake_sns, name))
        assert status == 200 and answer["opened"] == 1, answer
    await grace.grace.healer.drain()
    names = sorted(i.alert.name for i in await grace.incidents())
    assert names == ["CloudWatchInsufficientData", "HighCPU-web-asg"]

    status, answer = await post(
        grace, notification(fake_sns, "notification_ok_after_insufficient_data.json")
    )
    assert status == 200 and answer["received"] == 2 and len(answer["incidents"]) == 2
    await grace.grace.healer.drain()
    states = {i.alert.name: i.state for i in await grace.incidents()}
    assert set(states.values()) == {IncidentState.AUTO_RESOLVED}


async def test_a_retried_message_is_stored_once(grace, fake_sns):
    message = notification(fake_sns, "notification_alarm.json")
    first = await post(grace, message)
    again = await post(grace, message)
    assert first[0] == again[0] == 200
    assert (first[1]["received"], first[1]["opened"]) == (1, 1)
    assert again[1]["opened"] == 0
    await grace.grace.healer.drain()
    [incident] = await grace.incidents()
    assert incident.alert_count == 1


async def test_a_tampered_message_is_refused_and_stores_nothing(grace, fake_sns):
    message = notification(fake_sns, "notification_alarm.json")
    message["Message"] = message["Message"].replace("web-asg", "web-prod")
    status, answer = await post(grace, message)
    assert status == 401 and "does not match" in answer["error"]
    assert await grace.incidents() == []


async def test_an_unlisted_topic_is_refused_before_anything_is_fetched(grace, fake_sns):
    message = notification(fake_sns, "notification_metric_math.json")
    assert message["TopicArn"] == RDS_TOPIC
    status, answer = await post(grace, message)
    assert status == 403 and "not listed in sns_topics" in answer["error"]
    unsent = {"x-amz-sns-topic-arn": TOPIC}  # a header may lie; the body's topic counts
    status, _ = await post(grace, message, **unsent)
    assert status == 403
    assert fake_sns.hits == {}
    assert await grace.incidents() == []


async def test_what_is_not_an_alarm_gets_a_reason_never_a_5xx(grace, fake_sns):
    off_host = "https://certs.example/c.pem"
    cases = [
        (notification(fake_sns, "notification_not_alarm.json"), 400, "not a CloudWatch alarm"),
        ({"Type": "Notification", "TopicArn": TOPIC}, 400, "MessageId"),
        (signed(sample("notification_alarm.json"), cert_url=off_host), 401, "not on a host"),
    ]
    for message, expected, reason in cases:
        status, answer = await post(grace, message)
        assert status == expected and reason in answer["error"], answer
    too_big = b"x" * (MAX_BODY_BYTES + 1)
    status, _ = await grace.post("sns", too_big, token=None, content_type="text/plain")
    assert status == 413
    assert await grace.incidents() == []


@pytest.mark.parametrize(("path", "why"), [(MOVED_PATH, "HTTP 302"), (HUGE_PATH, "larger")])
async def test_a_certificate_is_fetched_without_redirects_and_within_its_size(
    grace, fake_sns, path, why
):
    message = signed(sample("notification_alarm.json"), cert_url=fake_sns.base + path)
    status, answer = await post(grace, message)
    assert status == 401 and why in answer["error"], answer
    assert fake_sns.hits == {path: 1}  # the redirect was not followed
    assert await grace.incidents() == []


async def test_sns_out_of_reach_is_a_503_so_the_alarm_comes_again(grace, fake_sns):
    message = signed(sample("notification_alarm.json"), cert_url=fake_sns.base + BUSY_PATH)
    status, answer = await post(grace, message)
    assert status == 503 and "SNS will send it again" in answer["error"], answer
    assert await grace.incidents() == []
    again = signed(sample("notification_alarm.json"), cert_url=fake_sns.cert_url)
    assert (await post(grace, again))[0] == 200  # the retry, once SNS answers, is taken


async def test_the_fetcher_gives_up_on_a_silent_server_and_closes(fake_sns):
    fetcher = Fetcher(timeout_s=0.2)
    with pytest.raises(FetchError) as failed:
        await fetcher.get(fake_sns.base + SILENT_PATH, limit=MAX_CERT_BYTES)
    assert failed.value.transient and fake_sns.hits == {SILENT_PATH: 1}
    assert await fetcher.get(fake_sns.cert_url, limit=MAX_CERT_BYTES) == certificate_pem()
    await fetcher.aclose()
    assert fetcher._session is None


async def test_without_topics_sns_is_off(make_harness):
    h = await make_harness()
    status, answer = await h.post("sns", "{}", token=None, content_type="text/plain")
    assert status == 503 and "GRACE_SNS_TOPICS" in answer["error"]
