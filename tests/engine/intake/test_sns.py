"""The SNS webhook source: signatures, certificate hosts, topics, confirmations and alarms."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from engine.intake.cloudwatch import INSUFFICIENT_DATA_NAME, region_code
from engine.intake.errors import IntakeError
from engine.intake.sns import CACHED_CERTS, FetchError, SnsConfig, SnsSource
from engine.intake.sns_signature import BadUrl, check_url, string_to_sign
from engine.intake.sources import Forbidden, Request, Unauthorized, Unavailable
from engine.models import AlertStatus
from tests.engine.intake import slack_samples
from tests.engine.intake.sns_samples import (
    CERT_URL,
    RDS_TOPIC,
    TOPIC,
    FakeFetcher,
    body,
    certificate_pem,
    headers,
    sample,
    signed,
    with_alarm,
)

NOW = datetime(2024, 11, 26, 3, 1, tzinfo=UTC)
FIRING, RESOLVED = AlertStatus.FIRING, AlertStatus.RESOLVED


def source(
    fetcher: FakeFetcher | None = None,
    topics: tuple[str, ...] = (TOPIC, RDS_TOPIC),
    hosts: tuple[str, ...] = ("sns.*.amazonaws.com",),
) -> SnsSource:
    config = SnsConfig(sns_topics=list(topics), sns_cert_hosts=list(hosts))
    return SnsSource(config, fetcher or FakeFetcher())


async def receive(src: SnsSource, message: dict[str, Any], **header_changes: str):
    sent = {**headers(message), **header_changes}
    src.check_headers(sent)
    return await src.receive(Request(body(message), sent, received_at=NOW))


# -- the string to sign, as the SNS developer guide spells it -----------------------


def test_string_to_sign_of_a_notification_is_the_documented_one():
    """The guide's own example, in its own order; Subject only when present."""
    message = {
        "Type": "Notification",
        "MessageId": "4d4dc071-ddbf-465d-bba8-08f81c89da64",
        "TopicArn": "arn:aws:sns:us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P",
        "Subject": "My subject",
        "Message": "My Test Message",
        "Timestamp": "2019-01-31T04:37:04.321Z",
        "UnsubscribeURL": "https://sns.us-east-2.amazonaws.com/?Action=Unsubscribe",
    }
    assert string_to_sign(message) == (
        b"Message\nMy Test Message\nMessageId\n4d4dc071-ddbf-465d-bba8-08f81c89da64\n"
        b"Subject\nMy subject\nTimestamp\n2019-01-31T04:37:04.321Z\n"
        b"TopicArn\narn:aws:sns:us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P\n"
        b"Type\nNotification\n"
    )
    without = string_to_sign({**message, "Subject": None})
    assert b"Subject" not in without and without.startswith(b"Message\nMy Test Message\n")


@pytest.mark.parametrize("kind", ["SubscriptionConfirmation", "UnsubscribeConfirmation"])
def test_string_to_sign_of_a_confirmation_has_the_url_and_token(kind):
    message = {**sample("subscription_confirmation.json"), "Type": kind, "Subject": "ignored"}
    names = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    expected = "".join(f"{name}\n{message[name]}\n" for name in names)
    assert string_to_sign(message).decode() == expected  # no Subject, whatever is sent
    # The JSON's escaped \n is signed as the newline it stands for.
    assert "topic arn:aws:sns:us-east-1:123456789012:grace-cloudwatch-alarms.\nTo" in expected


# -- signatures --------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "2"])
async def test_a_signed_alarm_is_taken_with_its_message_id_as_delivery_key(version):
    message = signed(sample("notification_alarm.json"), version=version)
    received = await receive(source(), message)
    assert received.delivery_key == message["MessageId"]
    [alert] = received.alerts
    assert (alert.source, alert.name, alert.status) == ("sns", "HighCPU-web-asg", FIRING)


def _flip(signature: str) -> str:
    """The signature with its first character changed (whatever it was)."""
    return ("B" if signature[0] == "A" else "A") + signature[1:]


@pytest.mark.parametrize(
    ("tamper", "why"),
    [
        (lambda m: {**m, "Message": m["Message"].replace("93.2", "13.2")}, "does not match"),
        (lambda m: {**m, "Subject": "OK: all is well"}, "does not match"),
        (lambda m: {**m, "Type": "Notification", "Timestamp": "2030-01-01T00:00:00.000Z"}, "match"),
        (lambda m: {**m, "Signature": _flip(m["Signature"])}, "does not match"),
        (lambda m: {**m, "Signature": "not base64!"}, "not base64"),
        (lambda m: {k: v for k, v in m.items() if k != "Signature"}, "no Signature"),
        (lambda m: {**m, "SignatureVersion": "3"}, "SignatureVersion"),
        (lambda m: {k: v for k, v in m.items() if k != "SigningCertURL"}, "SigningCertURL"),
    ],
)
async def test_a_tampered_or_unsigned_message_is_refused(tamper, why):
    message = tamper(signed(sample("notification_alarm.json")))
    with pytest.raises(Unauthorized, match=why):
        await receive(source(), message)


async def test_a_signature_by_another_key_is_refused():
    from cryptography.hazmat.primitives.asymmetric import rsa

    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    message = signed(sample("notification_alarm.json"), key=stranger)
    with pytest.raises(Unauthorized, match="does not match"):
        await receive(source(), message)


async def test_a_certificate_that_is_not_pem_is_refused():
    fetcher = FakeFetcher({CERT_URL: b"<html>not a certificate</html>"})
    with pytest.raises(Unauthorized, match="not a PEM"):
        await receive(source(fetcher), signed(sample("notification_alarm.json")))


async def test_raw_message_delivery_is_refused_for_want_of_a_signature():
    src = source()
    with pytest.raises(Unauthorized, match="raw message delivery"):
        src.check_headers({"x-amz-sns-rawdelivery": "true"})


# -- where certificates and confirmations may come from ----------------------------

SNS_HOSTS = ["sns.*.amazonaws.com"]
LOOPBACK_HOSTS = [*SNS_HOSTS, "127.0.0.1", "localhost", "::1"]


@pytest.mark.parametrize(
    "url",
    [
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-9c6465fa.pem",
        "https://sns.eu-west-1.amazonaws.com:443/SimpleNotificationService-01d088a6.pem",
    ],
)
def test_sns_certificate_urls_are_fetched(url):
    assert check_url(url, SNS_HOSTS, what="SigningCertURL", pem=True) == url


@pytest.mark.parametrize(
    ("url", "hosts", "why"),
    [
        ("http://sns.us-east-1.amazonaws.com/c.pem", SNS_HOSTS, "https"),
        ("https://sns.s3.amazonaws.com/c.pem", SNS_HOSTS, "not on a host"),  # anybody's bucket
        ("https://sns.s3-us-west-2.amazonaws.com/c.pem", SNS_HOSTS, "not on a host"),
        ("https://sns.us-east-1.amazonaws.com.evil.example/c.pem", SNS_HOSTS, "not on a host"),
        ("https://evil.example/sns.us-east-1.amazonaws.com.pem", SNS_HOSTS, "not on a host"),
        ("https://sns.a.b.amazonaws.com/c.pem", SNS_HOSTS, "not on a host"),  # * is one label
        ("https://sns.us-east-1.amazonaws.com/cert.txt", SNS_HOSTS, r"\.pem"),
        ("https://sns.us-east-1.amazonaws.com:8443/c.pem", SNS_HOSTS, "default https port"),
        ("https://me:pw@sns.us-east-1.amazonaws.com/c.pem", SNS_HOSTS, "credentials"),
        ("http://127.0.0.1:8080/c.pem", SNS_HOSTS, "https"),  # loopback, but not listed
        ("http://10.0.0.7/c.pem", [*SNS_HOSTS, "10.0.0.7"], "https"),  # listed, not loopback
        ("file:///etc/passwd.pem", LOOPBACK_HOSTS, "https"),
        ("https://[::1/c.pem", LOOPBACK_HOSTS, "not a URL"),
    ],
)
def test_other_certificate_urls_are_not(url, hosts, why):
    with pytest.raises(BadUrl, match=why):
        check_url(url, hosts, what="SigningCertURL", pem=True)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080/c.pem", "http://localhost:9/c.pem", "http://[::1]:8080/c.pem"],
)
def test_plain_http_only_for_a_listed_loopback_host(url):
    assert check_url(url, LOOPBACK_HOSTS, what="SigningCertURL", pem=True) == url


def test_topics_and_hosts_come_from_the_environment_comma_separated(monkeypatch):
    from bot.settings import load_settings
    from engine.intake.sources import webhook_plugins

    monkeypatch.delenv("GRACE_CONFIG", raising=False)
    monkeypatch.setenv("GRACE_SNS_TOPICS", f"{TOPIC}, {RDS_TOPIC}")
    monkeypatch.setenv("GRACE_SNS_CERT_HOSTS", "sns.*.amazonaws.com,sns.*.amazonaws.com.cn")
    src = webhook_plugins()["sns"].build(load_settings())
    assert isinstance(src, SnsSource) and src.topics == {TOPIC, RDS_TOPIC}
    assert src.cert_hosts == ("sns.*.amazonaws.com", "sns.*.amazonaws.com.cn")
    monkeypatch.delenv("GRACE_SNS_CERT_HOSTS")
    assert webhook_plugins()["sns"].build(load_settings()).cert_hosts == ("sns.*.amazonaws.com",)


# -- topics: checked before anything is fetched -------------------------------------


async def test_an_unlisted_topic_is_refused_before_any_fetch():
    fetcher = FakeFetcher()
    src = source(fetcher, topics=(RDS_TOPIC,))
    message = signed(sample("notification_alarm.json"))
    with pytest.raises(Forbidden, match="not listed in sns_topics"):
        src.check_headers(headers(message))
    # The header may be left out or lie: the body's TopicArn is what counts.
    unsent = {k: v for k, v in headers(message).items() if k != "x-amz-sns-topic-arn"}
    with pytest.raises(Forbidden, match="grace-cloudwatch-alarms"):
        await src.receive(Request(body(message), unsent, received_at=NOW))
    assert fetcher.fetched == []


async def test_without_topics_the_source_is_off_and_says_what_to_set():
    src = source(topics=())
    with pytest.raises(Unavailable, match="GRACE_SNS_TOPICS"):
        src.check_headers({})
    with pytest.raises(Unavailable, match="sns_topics"):
        await src.receive(Request(body(sample("notification_alarm.json")), {}, received_at=NOW))


async def test_headers_that_disagree_with_the_body_are_refused():
    message = signed(sample("notification_alarm.json"))
    with pytest.raises(IntakeError, match="x-amz-sns-message-type"):
        await receive(source(), message, **{"x-amz-sns-message-type": "UnsubscribeConfirmation"})
    with pytest.raises(IntakeError, match="x-amz-sns-topic-arn"):
        await receive(source(), message, **{"x-amz-sns-topic-arn": RDS_TOPIC})


# -- the certificate cache -----------------------------------------------------------


async def test_a_certificate_is_fetched_once_per_url():
    fetcher = FakeFetcher()
    src = source(fetcher)
    for name in ("notification_alarm.json", "notification_ok.json", "notification_alarm.json"):
        await receive(src, signed(sample(name)))
    assert fetcher.fetched == [CERT_URL]


async def test_the_cache_is_bounded():
    urls = [
        f"https://sns.us-east-1.amazonaws.com/SimpleNotificationService-{n}.pem" for n in range(20)
    ]
    fetcher = FakeFetcher(dict.fromkeys(urls, certificate_pem()))
    src = source(fetcher)
    for url in urls:
        await receive(src, signed(sample("notification_alarm.json"), cert_url=url))
    await receive(src, signed(sample("notification_alarm.json"), cert_url=urls[0]))
    assert len(fetcher.fetched) == len(urls) + 1  # the oldest was let go, so fetched again
    await receive(src, signed(sample("notification_alarm.json"), cert_url=urls[-1]))
    assert len(fetcher.fetched) == len(urls) + 1  # a recent one is still there
    assert len(urls) > CACHED_CERTS


async def test_a_failed_fetch_is_not_cached():
    fetcher = FakeFetcher()
    del fetcher.documents[CERT_URL]
    src = source(fetcher)
    message = signed(sample("notification_alarm.json"))
    with pytest.raises(Unauthorized, match="could not be fetched"):
        await receive(src, message)
    fetcher.documents[CERT_URL] = certificate_pem()
    assert (await receive(src, message)).alerts
    assert fetcher.fetched == [CERT_URL, CERT_URL]


# -- confirmations -------------------------------------------------------------------


async def test_a_subscription_is_confirmed_by_fetching_its_subscribe_url():
    message = signed(sample("subscription_confirmation.json"))
    fetcher = FakeFetcher({message["SubscribeURL"]: b"<ConfirmSubscriptionResponse/>"})
    received = await receive(source(fetcher), message)
    assert received.alerts == [] and received.answer == {"confirmed": TOPIC}
    assert fetcher.fetched == [CERT_URL, message["SubscribeURL"]]


async def test_a_confirmation_that_cannot_be_fetched_is_a_400_saying_so():
    message = signed(sample("subscription_confirmation.json"))
    with pytest.raises(IntakeError, match="could not be confirmed: it answered HTTP 404"):
        await receive(source(), message)


async def test_when_sns_is_out_of_reach_the_answer_is_503_so_sns_sends_again():
    """SNS retries only after a 5xx: a timeout must not lose an alarm or a confirmation."""
    timeout = FetchError("TimeoutError while fetching it", transient=True)
    with pytest.raises(Unavailable, match="SNS will send it again"):
        await receive(
            source(FakeFetcher({CERT_URL: timeout})), signed(sample("notification_alarm.json"))
        )
    message = signed(sample("subscription_confirmation.json"))
    busy = FetchError("it answered HTTP 503", transient=True)
    with pytest.raises(Unavailable, match="could not be confirmed"):
        await receive(source(FakeFetcher({message["SubscribeURL"]: busy})), message)


async def test_a_subscribe_url_off_the_listed_hosts_is_not_fetched():
    message = signed(
        {**sample("subscription_confirmation.json"), "SubscribeURL": "https://evil.example/"}
    )
    fetcher = FakeFetcher()
    with pytest.raises(IntakeError, match="SubscribeURL is not on a host"):
        await receive(source(fetcher), message)
    assert fetcher.fetched == [CERT_URL]


async def test_a_forged_confirmation_is_not_followed():
    message = {
        **signed(sample("subscription_confirmation.json")),
        "SubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&x=1",
    }
    fetcher = FakeFetcher()
    with pytest.raises(Unauthorized):
        await receive(source(fetcher), message)
    assert fetcher.fetched == [CERT_URL]


async def test_an_unsubscribe_confirmation_is_acknowledged_and_nothing_more():
    message = signed(sample("unsubscribe_confirmation.json"))
    fetcher = FakeFetcher()
    received = await receive(source(fetcher), message)
    assert received.alerts == [] and received.answer == {"unsubscribed": TOPIC}
    assert fetcher.fetched == [CERT_URL]


# -- malformed bodies ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (b"not json", "invalid JSON"),
        (b"[]", "body"),
        (json.dumps({**sample("notification_alarm.json"), "TopicArn": None}), "TopicArn"),
        (json.dumps({**sample("notification_alarm.json"), "Type": "Alert"}), "Type"),
        (json.dumps({**sample("subscription_confirmation.json"), "Token": ""}), "Token"),
    ],
)
async def test_a_malformed_body_is_a_400_naming_the_field(text, why):
    body_bytes = text.encode() if isinstance(text, str) else text
    with pytest.raises(IntakeError, match=why):
        await source().receive(Request(body_bytes, {}, received_at=NOW))


async def test_a_notification_that_is_not_an_alarm_is_a_400_saying_so():
    with pytest.raises(IntakeError, match="not a CloudWatch alarm"):
        await receive(source(), signed(sample("notification_not_alarm.json")))


async def test_an_alarm_with_a_wrong_field_names_it():
    message = signed(with_alarm(sample("notification_alarm.json"), NewStateValue="FIRE"))
    with pytest.raises(IntakeError, match=r"^Message\.NewStateValue"):
        await receive(source(), message)


# -- reading the alarm JSON ----------------------------------------------------------


def read(name: str, **changes: Any):
    message = sample(name)
    if changes:
        message = with_alarm(message, **changes)
    [alert] = source().read(body(message), received_at=NOW, channel_for=lambda labels: "C0AWS")
    return alert


def test_an_alarm_on_one_metric_reads_its_dimensions_as_labels():
    """The labels the Chatbot layout gives the same alarm, so patterns match both."""
    alert = read("notification_alarm.json")
    assert alert.labels == {
        "alertname": "HighCPU-web-asg",
        "alarm_name": "HighCPU-web-asg",
        "region": "us-east-1",  # the code, from the AlarmArn; Region says "US East (N. Virginia)"
        "account": "123456789012",
        "namespace": "AWS/EC2",
        "metric": "CPUUtilization",
        "AutoScalingGroupName": "web-asg",
    }
    assert alert.channel == "C0AWS"
    assert alert.starts_at == datetime(2024, 11, 26, 3, 0, 12, 871000, tzinfo=UTC)
    assert alert.annotations["reason"].startswith("Threshold Crossed: 1 out of the last 1")
    assert alert.annotations["subject"] == 'ALARM: "HighCPU-web-asg" in US East (N. Virginia)'
    assert alert.text.startswith("CPU of the web Auto Scaling group above 80%\nThreshold")
    assert alert.link == (
        "https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1"
        "#alarmsV2:alarm/HighCPU-web-asg"
    )


def test_sns_and_chatbot_read_one_alarm_alike():
    by_sns = read("notification_alarm.json")
    by_chatbot = slack_samples.sample("cloudwatch_alarm.json")
    shared = {k: v for k, v in by_chatbot.labels.items() if k != "integration"}
    assert by_sns.labels == shared
    assert by_sns.fingerprint == by_chatbot.fingerprint  # one alarm, one incident


def test_a_metric_math_alarm_reads_the_metric_it_evaluates():
    alert = read("notification_metric_math.json")
    assert alert.labels["metric"] == "DatabaseConnections"
    assert alert.labels["namespace"] == "AWS/RDS"
    assert alert.labels["DBInstanceIdentifier"] == "orders-db"
    assert alert.labels["region"] == "eu-west-1"
    assert alert.annotations["expression"] == "100 * m1 / 1700"


def test_with_several_metrics_the_returned_one_names_it_and_all_dimensions_are_labels():
    trigger = {
        "Period": 60,
        "Metrics": [
            {"Id": "e1", "Expression": "m1 + m2", "ReturnData": False},
            {
                "Id": "m1",
                "ReturnData": False,
                "MetricStat": {
                    "Metric": {
                        "MetricName": "RequestCount",
                        "Namespace": "AWS/ApplicationELB",
                        "Dimensions": [{"value": "app/web/1f2e", "name": "LoadBalancer"}],
                    }
                },
            },
            {
                "Id": "m2",
                "ReturnData": True,
                "MetricStat": {
                    "Metric": {
                        "MetricName": "CPUUtilization",
                        "Namespace": "AWS/EC2",
                        "Dimensions": [{"value": "web-prod", "name": "AutoScalingGroupName"}],
                    }
                },
            },
        ],
    }
    alert = read("notification_alarm.json", Trigger=trigger)
    assert (alert.labels["metric"], alert.labels["namespace"]) == ("CPUUtilization", "AWS/EC2")
    assert alert.labels["AutoScalingGroupName"] == "web-prod"
    assert alert.labels["LoadBalancer"] == "app/web/1f2e"


def test_a_composite_alarm_has_no_metric():
    alert = read("notification_composite.json")
    assert (alert.name, alert.status) == ("web-asg-degraded", FIRING)
    assert "metric" not in alert.labels and alert.labels["region"] == "us-east-1"


def test_a_dimension_named_in_the_description_is_a_label():
    """A load balancer's latency alarm names its Auto Scaling group only in words."""
    description = "p90 latency of web-prod above 1.5 s. AutoScalingGroupName=web-prod"
    alert = read("notification_alarm.json", AlarmDescription=description)
    assert alert.labels["AutoScalingGroupName"] == "web-asg"  # the metric's own wins
    alert = read("notification_metric_math.json", AlarmDescription=description)
    assert alert.labels["AutoScalingGroupName"] == "web-prod"


def test_without_an_arn_the_region_comes_from_its_long_name():
    alert = read("notification_alarm.json", AlarmArn=None)
    assert alert.labels["region"] == "us-east-1"
    assert region_code("Europe (Ireland)") == region_code("EU (Ireland)") == "eu-west-1"
    assert region_code("South America (São Paulo)") == "sa-east-1"
    assert region_code("Atlantis (Central)") == "Atlantis (Central)"


def test_a_null_description_and_numbers_for_strings_are_read():
    alert = read("notification_alarm.json", AlarmDescription=None, AWSAccountId=123456789012)
    assert alert.labels["account"] == "123456789012" and "description" not in alert.annotations


# -- states --------------------------------------------------------------------------


def test_alarm_fires_and_ok_resolves_the_same_alert():
    alarm, ok = read("notification_alarm.json"), read("notification_ok.json")
    assert (alarm.status, ok.status) == (FIRING, RESOLVED)
    assert alarm.fingerprint == ok.fingerprint and alarm.name == ok.name
    assert ok.ends_at is not None and ok.starts_at is None
    assert (ok.annotations["state"], ok.annotations["previous_state"]) == ("OK", "ALARM")


def read_all(name: str, **changes: Any):
    message = with_alarm(sample(name), **changes) if changes else sample(name)
    return source().read(body(message), received_at=NOW, channel_for=lambda labels: None)


def test_insufficient_data_is_its_own_alert_not_the_alarm_nor_its_end():
    alarm = read("notification_alarm.json")
    missing = read("notification_insufficient_data.json")
    assert (missing.name, missing.status) == (INSUFFICIENT_DATA_NAME, FIRING)
    assert missing.labels["alarm_name"] == "HighCPU-web-asg"
    assert missing.labels["AutoScalingGroupName"] == "web-asg"
    assert missing.fingerprint != alarm.fingerprint


def test_ok_after_insufficient_data_ends_the_missing_data_and_the_alarm():
    """Data is back and the condition does not hold: both alerts of the alarm end."""
    alarm = read("notification_alarm.json")
    missing = read("notification_insufficient_data.json")
    data_back, alarm_ok = read_all("notification_ok_after_insufficient_data.json")
    assert (data_back.name, data_back.status) == (INSUFFICIENT_DATA_NAME, RESOLVED)
    assert data_back.fingerprint == missing.fingerprint
    assert (alarm_ok.name, alarm_ok.status) == ("HighCPU-web-asg", RESOLVED)
    assert alarm_ok.fingerprint == alarm.fingerprint
    assert data_back.source_key != alarm_ok.source_key


def test_alarm_after_insufficient_data_ends_the_missing_data_and_fires_the_alarm():
    alarm = read("notification_alarm.json")
    data_back, firing = read_all("notification_alarm.json", OldStateValue="INSUFFICIENT_DATA")
    assert (data_back.name, data_back.status) == (INSUFFICIENT_DATA_NAME, RESOLVED)
    assert (firing.name, firing.status, firing.fingerprint) == (
        "HighCPU-web-asg",
        FIRING,
        alarm.fingerprint,
    )


async def test_aclose_closes_the_fetcher():
    fetcher = FakeFetcher()
    await source(fetcher).aclose()
    assert fetcher.closed
