"""AWS Chatbot (now Amazon Q Developer in chat applications) posting CloudWatch alarms.

Chatbot publishes no schema of its Slack messages. The samples follow what its
notifications are documented and shown to carry: the headline `CloudWatch Alarm
| <name> | <region> | Account: <id>` linked to the alarm in the console
(`#alarmsV2:alarm/<url-encoded name>`), the alarm's description, CloudWatch's
state reason (the NewStateReason of its alarm JSON, word for word: "Threshold
Crossed: … (minimum 1 datapoint for OK -> ALARM transition)", a composite's
"<child ARN> transitioned to ALARM at …", or whatever `set-alarm-state` was
given), the metric, namespace and dimensions, and a colour bar (AWS's red,
green and grey); as legacy attachments (AWS Chatbot) or Block Kit (Amazon Q).
"""

from __future__ import annotations

from typing import Any

import pytest

from engine.intake import slack_cloudwatch
from engine.intake.slack_cloudwatch import INSUFFICIENT_DATA_NAME
from engine.intake.slack_reader import read_message
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
    "cloudwatch_blocks_ec2_status_check.json": (
        "web-1-status-check",
        FIRING,
        {
            "region": "us-east-1",
            "account": "123456789012",
            "namespace": "AWS/EC2",
            "metric": "StatusCheckFailed",
            "InstanceId": "i-0a1b2c3d4e5f60718",
        },
        "https://console.aws.amazon.com/cloudwatch/home?region=us-east-1"
        "#alarmsV2:alarm/web-1-status-check",
    ),
    "cloudwatch_blocks_rds_ok.json": (
        "orders-db-connections",
        RESOLVED,
        {
            "region": "eu-west-1",
            "metric": "DatabaseConnections",
            "DBInstanceIdentifier": "orders-db",
        },
        "https://console.aws.amazon.com/cloudwatch/home?region=eu-west-1"
        "#alarmsV2:alarm/orders-db-connections",
    ),
    "cloudwatch_alarm_name_with_spaces.json": (
        "web prod 5xx rate",
        FIRING,
        {
            "alarm_name": "web prod 5xx rate",
            "region": "ap-southeast-2",
            "account": "345678901234",
            "LoadBalancer": "app/web-prod-alb/50dc6c495c0c9188",
        },
        "https://ap-southeast-2.console.aws.amazon.com/cloudwatch/home?region=ap-southeast-2"
        "#alarmsV2:alarm/web%20prod%205xx%20rate",
    ),
    # set-alarm-state says nothing of the state in words: the colour bar tells.
    "cloudwatch_set_alarm_state.json": ("HighCPU-web-asg", FIRING, WEB_ASG, WEB_ASG_ALARM),
    "cloudwatch_composite.json": (
        "web-asg-degraded",
        FIRING,
        {"alarm_name": "web-asg-degraded", "region": "us-east-1", "account": "123456789012"},
        "https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1"
        "#alarmsV2:alarm/web-asg-degraded",
    ),
    # Data came back straight into ALARM: that is the alarm, not missing data.
    "cloudwatch_alarm_after_insufficient_data.json": (
        "HighCPU-web-asg",
        FIRING,
        WEB_ASG,
        WEB_ASG_ALARM,
    ),
    "cloudwatch_latency_named_group.json": (
        "web-prod-p90-latency",
        FIRING,
        {
            "metric": "TargetResponseTime",
            "AutoScalingGroupName": "web-prod",
            "TargetGroup": "targetgroup/web-prod-tg/6d0ecf831eec9f09",
        },
        "https://console.aws.amazon.com/cloudwatch/home?region=us-east-1"
        "#alarmsV2:alarm/web-prod-p90-latency",
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
    assert slack_cloudwatch.parse(read_message(message)) is None


def test_a_composite_alarm_has_no_metric_and_keeps_its_own_name():
    """Its reason names a child alarm by ARN; the headline's alarm is the one that changed."""
    alert = sample("cloudwatch_composite.json")
    assert "metric" not in alert.labels and alert.labels["alarm_name"] == "web-asg-degraded"


def test_a_long_region_name_in_the_headline_becomes_its_code():
    message = event("cloudwatch_alarm.json")
    attachment = message["attachments"][0]
    attachment["title"] = HEADLINE.replace("us-east-1", "US East (N. Virginia)")
    del attachment["title_link"]
    alert = parse(message)
    assert alert is not None and alert.labels["region"] == "us-east-1"
    assert alert.fingerprint == sample("cloudwatch_alarm.json").fingerprint


def test_a_dimension_called_region_does_not_move_the_alarm():
    message = event("cloudwatch_alarm.json")
    message["attachments"][0]["fields"][2]["value"] = "region = eu-west-1, Service = web"
    alert = parse(message)
    assert alert is not None and alert.labels["region"] == "us-east-1"
    assert alert.labels["Service"] == "web"
