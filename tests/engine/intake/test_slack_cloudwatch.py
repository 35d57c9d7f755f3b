from __future__ import annotations

from typing import Any

import pytest

from engine.intake.slack_cloudwatch import INSUFFICIENT_DATA_NAME
from tests.engine.intake.slack_samples import FIRING, RESOLVED, assert_sample, event, parse, sample

WEB_ASG_ALARM = (
    "https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1"
    "#alarmsV2:alarm/HighCPU-web-asg"
)
RDS_ALARM = (
    "https://console.aws.amazon.com/cloudwatch/home?region=eu-west-1"
    "#alarmsV2:alarm/prod-db-FreeStorageSpace-low"
)


WEB_ASG = {
    "alarm_name": "HighCPU-web-asg",
    "region": "us-east-1",
    "account": "123456789012",
    "namespace": "AWS/EC2",
    "metric": "CPUUtilization",
    "AutoScalingGroupName": "web-asg",
}
# name, status, labels (at least), link
EXPECTED = {
    "cloudwatch_alarm.json": ("HighCPU-web-asg", FIRING, WEB_ASG, WEB_ASG_ALARM),
    "cloudwatch_ok.json": ("HighCPU-web-asg", RESOLVED, WEB_ASG, WEB_ASG_ALARM),
    "cloudwatch_insufficient_data.json": (INSUFFICIENT_DATA_NAME, FIRING, WEB_ASG, WEB_ASG_ALARM),
    "cloudwatch_ok_after_insufficient_data.json": (
        INSUFFICIENT_DATA_NAME,
        RESOLVED,
        WEB_ASG,
        WEB_ASG_ALARM,
    ),
    "cloudwatch_rds_blocks.json": (
        "prod-db-FreeStorageSpace-low",
        FIRING,
        {
            "alarm_name": "prod-db-FreeStorageSpace-low",
            "region": "eu-west-1",
            "account": "210987654321",
            "namespace": "AWS/RDS",
            "metric": "FreeStorageSpace",
            "DBInstanceIdentifier": "prod-db",
        },
        RDS_ALARM,
    ),
}


@pytest.mark.parametrize("name", EXPECTED)
def test_samples(name):
    expected_name, status, labels, link = EXPECTED[name]  # CloudWatch alarms carry no severity
    assert_sample(name, (expected_name, status, None, labels, link), "cloudwatch")


def test_ok_resolves_the_alarm():
    alarm, ok = sample("cloudwatch_alarm.json"), sample("cloudwatch_ok.json")
    assert alarm.fingerprint == ok.fingerprint
    assert alarm.annotations["reason"].startswith("Threshold Crossed: 1 out of the last 1")
    assert (ok.annotations["state"], ok.annotations["previous_state"]) == ("OK", "ALARM")


def test_insufficient_data_is_its_own_alert_neither_the_alarm_nor_its_end():
    alarm = sample("cloudwatch_alarm.json")
    missing = sample("cloudwatch_insufficient_data.json")
    back = sample("cloudwatch_ok_after_insufficient_data.json")
    assert missing.status is FIRING and missing.name != alarm.name
    assert missing.fingerprint != alarm.fingerprint
    assert back.fingerprint == missing.fingerprint  # its OK ends the missing-data alert
    assert missing.annotations["state"] == "INSUFFICIENT_DATA"


def stated(reason: str, *, title: str | None = None, color: str | None = None) -> dict[str, Any]:
    message = event("cloudwatch_alarm.json")
    attachment = message["attachments"][0]
    attachment["text"] = reason
    if title is not None:
        attachment["title"] = title
    if color is not None:
        attachment["color"] = color
    return message


HEADLINE = "CloudWatch Alarm | HighCPU-web-asg | us-east-1 | Account: 123456789012"


@pytest.mark.parametrize(
    ("message", "status", "insufficient"),
    [
        (stated("The alarm HighCPU-web-asg changed state to OK"), RESOLVED, False),
        (stated("State: ALARM"), FIRING, False),
        (stated("State changed from ALARM to INSUFFICIENT_DATA"), FIRING, True),
        (stated("no word of state", title=f":white_check_mark: {HEADLINE}"), RESOLVED, False),
        (stated("no word of state", title=f":grey_question: {HEADLINE}"), FIRING, True),
        (stated("no word of state", title=HEADLINE, color="good"), RESOLVED, False),
        (stated("no word of state", title=HEADLINE, color="danger"), FIRING, False),
        (stated("no word of state", title=HEADLINE, color="879596"), FIRING, False),
    ],
)
def test_state_is_read_from_wording_emoji_and_colour(message, status, insufficient):
    alert = parse(message)
    assert alert is not None and alert.status is status
    assert (alert.name == INSUFFICIENT_DATA_NAME) is insufficient


def test_alarm_from_the_console_link_alone():
    message = {
        "type": "message",
        "bot_id": "B07AMAZONQ",
        "bot_profile": {"name": "Amazon Q"},
        "ts": "1732609999.000100",
        "text": "Alarm <https://console.aws.amazon.com/cloudwatch/home?region=ap-southeast-2"
        "#alarmsV2:alarm/queue%20backlog|queue backlog> changed state to ALARM\n"
        "Dimensions: QueueName=orders, Environment=prod",
    }
    alert = parse(message)
    assert alert is not None
    assert (alert.name, alert.labels["region"], alert.status) == (
        "queue backlog",
        "ap-southeast-2",
        FIRING,
    )
    assert alert.labels["QueueName"] == "orders" and alert.labels["Environment"] == "prod"


def test_alarm_from_its_arn():
    message = {
        "type": "message",
        "subtype": "bot_message",
        "bot_id": "B1",
        "ts": "1.1",
        "text": "ALARM: arn:aws:cloudwatch:us-west-2:111122223333:alarm:api-5xx State: ALARM",
    }
    alert = parse(message)
    assert alert is not None
    assert (alert.name, alert.labels["region"], alert.labels["account"]) == (
        "api-5xx",
        "us-west-2",
        "111122223333",
    )


def test_a_person_pasting_an_alarm_is_not_chatbot():
    message = {"type": "message", "user": "U0ONCALL", "text": HEADLINE, "ts": "1.2"}
    assert parse(message) is None
