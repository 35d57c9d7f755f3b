"""CloudWatch alarms, however they arrive: what the SNS webhook and the Chatbot layout share.

An alarm reaches GRACE either as CloudWatch's own JSON in an SNS notification
(engine/intake/sns.py) or as AWS Chatbot's post in Slack
(engine/intake/slack_cloudwatch.py). Both are read into an `AlarmReading`, and
`alarm_parts` turns that into the alert's name, state, labels and identity in
one place, so a pattern written for one matches the other and an OK closes the
incident its ALARM opened whichever way each came.

States:

- ALARM is firing and OK is resolved.
- INSUFFICIENT_DATA means the metric stopped reporting. That is no evidence that
  the alarm's condition holds (so it must not run the alarm's playbook: scaling
  out on missing CPU data helps nobody) nor that it cleared (so it must not close
  the alarm's incident). It becomes its own firing alert, `CloudWatchInsufficientData`
  with the alarm in labels["alarm_name"], much as Grafana turns missing data into
  `DatasourceNoData`: a person looks, unless a playbook is written for it. An OK
  that follows INSUFFICIENT_DATA resolves that alert; where one message may
  carry several alerts (SNS), leaving INSUFFICIENT_DATA also settles the
  alarm's own (`alarm_changes`).

The alarm JSON (the SNS `Message`) is CloudWatch's: AlarmName, AlarmDescription,
AWSAccountId, NewStateValue, NewStateReason, StateChangeTime, Region (a long
name such as "US East (N. Virginia)"), AlarmArn, OldStateValue and a Trigger
that names one metric (MetricName, Namespace, Dimensions as [{"value", "name"}])
or, for metric-math and anomaly-detection alarms, several (Trigger.Metrics:
[{Id, Expression?, MetricStat: {Metric: {Dimensions, MetricName, Namespace},
Period, Stat}, ReturnData}], ReturnData a boolean or "True"/"False"). Composite
alarms have no Trigger at all.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.intake.errors import IntakeError, intake_error
from engine.intake.limits import MAX_VALUE
from engine.intake.slack_format import AlertParts
from engine.models import AlertStatus, canonical_json, sha256_hex

INSUFFICIENT_DATA_NAME = "CloudWatchInsufficientData"
INTEGRATION = "cloudwatch"
"""The name identities are hashed under, by the Slack layout (its name) and by SNS alike."""

_MAX_METRICS = 100
# Dimensions a person writes into an alarm's description ("AutoScalingGroupName=web-prod")
# name what a load balancer's alarm is about when its own dimensions do not.
_NAMED_DIMENSION = re.compile(
    r"\b(AutoScalingGroupName|InstanceId|DBInstanceIdentifier|DBClusterIdentifier|LoadBalancer"
    r"|TargetGroup|FunctionName|QueueName|ClusterName|ServiceName|TableName|CacheClusterId"
    r"|BucketName|VolumeId|TopicName|ApiName|DistributionId|NatGatewayId)\s*[=:]\s*"
    r"([^\s,\[\]()]{1,1024})"
)
_REGION_CODE = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d{1,2}$")
_CONSOLES = {
    "aws": "console.aws.amazon.com",
    "aws-us-gov": "console.amazonaws-us-gov.com",
    "aws-cn": "console.amazonaws.cn",
}
# CloudWatch writes the region's long name in the alarm JSON (and some chat layouts
# show it); labels carry the code, which is what configs and playbooks name.
_LONG_NAMES = {
    "us-east-1": "US East (N. Virginia)",
    "us-east-2": "US East (Ohio)",
    "us-west-1": "US West (N. California)",
    "us-west-2": "US West (Oregon)",
    "af-south-1": "Africa (Cape Town)",
    "ap-east-1": "Asia Pacific (Hong Kong)",
    "ap-south-1": "Asia Pacific (Mumbai)",
    "ap-south-2": "Asia Pacific (Hyderabad)",
    "ap-southeast-1": "Asia Pacific (Singapore)",
    "ap-southeast-2": "Asia Pacific (Sydney)",
    "ap-southeast-3": "Asia Pacific (Jakarta)",
    "ap-southeast-4": "Asia Pacific (Melbourne)",
    "ap-northeast-1": "Asia Pacific (Tokyo)",
    "ap-northeast-2": "Asia Pacific (Seoul)",
    "ap-northeast-3": "Asia Pacific (Osaka)",
    "ca-central-1": "Canada (Central)",
    "ca-west-1": "Canada West (Calgary)",
    "eu-central-1": "EU (Frankfurt)",
    "eu-central-2": "EU (Zurich)",
    "eu-west-1": "EU (Ireland)",
    "eu-west-2": "EU (London)",
    "eu-west-3": "EU (Paris)",
    "eu-south-1": "EU (Milan)",
    "eu-south-2": "EU (Spain)",
    "eu-north-1": "EU (Stockholm)",
    "il-central-1": "Israel (Tel Aviv)",
    "me-south-1": "Middle East (Bahrain)",
    "me-central-1": "Middle East (UAE)",
    "sa-east-1": "South America (Sao Paulo)",
    "us-gov-west-1": "AWS GovCloud (US-West)",
    "us-gov-east-1": "AWS GovCloud (US-East)",
    "cn-north-1": "China (Beijing)",
    "cn-northwest-1": "China (Ningxia)",
}


def _region_key(name: str) -> str:
    # "Europe (Ireland)" and "EU (Ireland)" alike; accents and spacing do not matter.
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]", "", ascii_name.lower().replace("europe", "eu"))


_BY_LONG_NAME = {_region_key(long): code for code, long in _LONG_NAMES.items()}


@dataclass(frozen=True)
class AlarmReading:
    """One alarm state change, as read from whichever shape brought it."""

    alarm: str
    state: str
    """ALARM, OK or INSUFFICIENT_DATA."""
    previous: str | None = None
    region: str = ""
    account: str = ""
    namespace: str = ""
    metric: str = ""
    dimensions: Mapping[str, str] = field(default_factory=dict)
    reason: str = ""
    description: str = ""
    link: str | None = None
    expression: str = ""
    changed_at: str = ""
    """When the state changed, as the sender wrote it."""


def alarm_parts(reading: AlarmReading, *, missing_data: bool | None = None) -> AlertParts:
    """The alert an alarm state change is: name, status, labels and identity.

    The identity is the alarm (account, region, name) and whether this is about
    its condition or its missing data (`missing_data`; by default, from the
    states), so an OK closes the right one.
    """
    insufficient = missing_data
    if insufficient is None:
        insufficient = reading.state == "INSUFFICIENT_DATA" or (
            reading.state == "OK" and reading.previous == "INSUFFICIENT_DATA"
        )
    labels = {
        "alarm_name": reading.alarm,
        "region": reading.region,
        "account": reading.account,
        "namespace": reading.namespace,
        "metric": reading.metric,
    }
    for name, value in reading.dimensions.items():
        labels.setdefault(name, value)  # a dimension called "region" must not move the alarm
    return AlertParts(
        name=INSUFFICIENT_DATA_NAME if insufficient else reading.alarm,
        status=AlertStatus.RESOLVED if reading.state == "OK" else AlertStatus.FIRING,
        labels=labels,
        annotations={
            "state": reading.state,
            "previous_state": reading.previous or "",
            "reason": reading.reason,
            "description": reading.description,
            "expression": reading.expression,
        },
        link=reading.link,
        identity={
            "account": reading.account,
            "region": reading.region,
            "alarm": reading.alarm,
            "kind": "insufficient_data" if insufficient else "alarm",
        },
    )


def alarm_changes(reading: AlarmReading) -> list[AlertParts]:
    """Every alert one state change settles, where one message may carry several.

    Leaving INSUFFICIENT_DATA means the data is back, so the missing-data alert
    resolves; the new state then speaks for the alarm itself too: OK ends it
    (its condition does not hold), ALARM fires it. A chat message is one alert,
    so the Slack layout keeps to `alarm_parts`.
    """
    if reading.previous != "INSUFFICIENT_DATA" or reading.state == "INSUFFICIENT_DATA":
        return [alarm_parts(reading)]
    data_back = alarm_parts(replace(reading, state="OK"), missing_data=True)
    return [data_back, alarm_parts(reading, missing_data=False)]


def identity_fingerprint(identity: Mapping[str, str]) -> str:
    """The fingerprint of an alarm's identity: the Slack layout's formula under its
    name (engine/intake/slack.py `_fingerprint`), so the same alarm reported by SNS
    and by Chatbot is one alert, one incident."""
    capped = {key: value[:MAX_VALUE] for key, value in identity.items()}
    return sha256_hex(canonical_json({"integration": INTEGRATION, **capped}))[:16]


def named_dimensions(text: str) -> dict[str, str]:
    """Known dimensions written as `Name=value` (or `Name: value`) in free text."""
    found: dict[str, str] = {}
    for name, value in _NAMED_DIMENSION.findall(text):
        found.setdefault(name, value)
    return found


def region_code(text: str) -> str:
    """`us-east-1` for "us-east-1" or "US East (N. Virginia)"; anything else as given."""
    text = text.strip()
    if _REGION_CODE.match(text):
        return text
    return _BY_LONG_NAME.get(_region_key(text), text)


def is_region_code(text: str) -> bool:
    return _REGION_CODE.match(text) is not None


def parse_alarm_arn(arn: str) -> tuple[str, str, str] | None:
    """(partition, region, account) of `arn:aws:cloudwatch:us-east-1:123…:alarm:Name`.

    Split, not matched: an alarm name may hold spaces, colons and most else.
    """
    parts = arn.split(":", 6)
    if len(parts) != 7 or parts[0] != "arn" or parts[2] != "cloudwatch" or parts[5] != "alarm":
        return None
    partition, region, account = parts[1], parts[3], parts[4]
    if not partition.startswith("aws") or not _REGION_CODE.match(region):
        return None
    return partition, region, account if re.fullmatch(r"\d{12}", account) else ""


def console_link(alarm: str, region: str, partition: str = "aws") -> str | None:
    """The alarm in the CloudWatch console, as CloudWatch's own e-mails link it."""
    if not alarm or not _REGION_CODE.match(region):
        return None
    domain = _CONSOLES.get(partition, _CONSOLES["aws"])
    host = f"{region}.{domain}" if partition == "aws" else domain
    return f"https://{host}/cloudwatch/home?region={region}#alarmsV2:alarm/{quote(alarm, safe='')}"


# -- CloudWatch's alarm JSON ---------------------------------------------------------


class _Model(BaseModel):
    # Unknown keys are ignored: CloudWatch adds to this JSON now and then.
    model_config = ConfigDict(extra="ignore", frozen=True, coerce_numbers_to_str=True)


# Class names differ from the wire's field names: pydantic would mistake one for the other.
class _Dimension(_Model):
    name: str
    value: str


class _Metric(_Model):
    MetricName: str = ""
    Namespace: str = ""
    Dimensions: list[_Dimension] = Field(default_factory=list)


class _MetricStat(_Model):
    Metric: _Metric


class _Query(_Model):
    Id: str = ""
    Expression: str | None = None
    Label: str | None = None
    ReturnData: bool = False
    MetricStat: _MetricStat | None = None


class _Trigger(_Model):
    MetricName: str | None = None
    Namespace: str | None = None
    Dimensions: list[_Dimension] | None = None
    Metrics: list[_Query] | None = None


class AlarmMessage(_Model):
    """The JSON CloudWatch publishes to SNS for a state change of a metric or composite alarm."""

    AlarmName: str = Field(min_length=1)
    AlarmDescription: str | None = None
    AWSAccountId: str = ""
    NewStateValue: Literal["ALARM", "OK", "INSUFFICIENT_DATA"]
    NewStateReason: str = ""
    StateChangeTime: str = ""
    Region: str = ""
    AlarmArn: str = ""
    OldStateValue: str | None = None
    Trigger: _Trigger | None = None


def parse_alarm_message(text: str) -> AlarmMessage:
    """CloudWatch's alarm JSON from an SNS Message; IntakeError naming the field otherwise."""
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict) or "AlarmName" not in value or "NewStateValue" not in value:
        raise IntakeError(
            "Message: not a CloudWatch alarm (no AlarmName and NewStateValue); "
            "GRACE reads CloudWatch alarm notifications only"
        )
    try:
        return AlarmMessage.model_validate(value)
    except ValidationError as error:
        raise IntakeError(f"Message.{intake_error(error)}") from None


def read_alarm(message: AlarmMessage) -> AlarmReading:
    """What one alarm JSON says. Region and account come from the AlarmArn (the
    code, not the long name), the metric from the Trigger."""
    arn = parse_alarm_arn(message.AlarmArn)
    partition, region, account = arn or ("aws", region_code(message.Region), "")
    account = message.AWSAccountId.strip() or account
    namespace, metric, dimensions, expression = _trigger(message.Trigger)
    for name, value in named_dimensions(message.AlarmDescription or "").items():
        dimensions.setdefault(name, value)
    previous = message.OldStateValue
    return AlarmReading(
        alarm=message.AlarmName.strip(),
        state=message.NewStateValue,
        previous=previous if previous in ("ALARM", "OK", "INSUFFICIENT_DATA") else None,
        region=region,
        account=account,
        namespace=namespace,
        metric=metric,
        dimensions=dimensions,
        reason=message.NewStateReason,
        description=message.AlarmDescription or "",
        link=console_link(message.AlarmName.strip(), region, partition),
        expression=expression,
        changed_at=message.StateChangeTime,
    )


def _trigger(trigger: _Trigger | None) -> tuple[str, str, dict[str, str], str]:
    """(namespace, metric, dimensions, expression) of one metric or of metric math.

    With several metrics, the one whose data the alarm evaluates (ReturnData)
    names the metric when it is a metric; else the first metric. Dimensions of
    every metric are labels, the first value of a name winning.
    """
    if trigger is None:
        return "", "", {}, ""
    if trigger.MetricName or not trigger.Metrics:
        return (
            trigger.Namespace or "",
            trigger.MetricName or "",
            _dimensions(trigger.Dimensions or [], {}),
            "",
        )
    queries = trigger.Metrics[:_MAX_METRICS]
    stats = [q for q in queries if q.MetricStat is not None]
    main = next((q for q in stats if q.ReturnData), stats[0] if stats else None)
    expression = next((q.Expression for q in queries if q.ReturnData and q.Expression), "")
    dimensions: dict[str, str] = {}
    for query in [main, *stats] if main else []:
        assert query.MetricStat is not None
        _dimensions(query.MetricStat.Metric.Dimensions, dimensions)
    if main is None or main.MetricStat is None:
        return "", "", dimensions, expression or ""
    metric = main.MetricStat.Metric
    return metric.Namespace, metric.MetricName, dimensions, expression or ""


def _dimensions(dimensions: list[_Dimension], into: dict[str, str]) -> dict[str, str]:
    for dimension in dimensions:
        if dimension.name:
            into.setdefault(dimension.name, dimension.value)  # the first value of a name wins
    return into
