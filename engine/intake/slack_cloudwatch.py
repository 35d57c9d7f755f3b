"""CloudWatch alarms, as AWS Chatbot (now Amazon Q Developer in chat applications) posts them.

Chatbot headlines an alarm notification
`CloudWatch Alarm | HighCPU-web-asg | us-east-1 | Account: 123456789012`, links it
to the alarm in the console (`…/cloudwatch/home?region=us-east-1#alarmsV2:alarm/…`)
and shows the alarm's description, its state reason ("Threshold Crossed: 1 out
of the last 1 datapoints [93.2 (24/11/26 03:00:00)] was greater than the
threshold (80.0) (minimum 1 datapoint for OK -> ALARM transition).") and the
metric, namespace and dimensions, as attachment fields or Block Kit sections
depending on its version. Both shapes are read the same. Dimensions
(AutoScalingGroupName, InstanceId, DBInstanceIdentifier, …), region and account
become labels: they name what a playbook would act on. Labels, states (with
INSUFFICIENT_DATA as its own `CloudWatchInsufficientData` alert) and identity
are made by engine/intake/cloudwatch.py, as for alarms that come through SNS.

The state is read from, in turn: the transition in the reason, "changed state
to"/"State:" wording, the headline's emoji, the colour bar; a message that says
nothing of it is an alarm (Chatbot is subscribed to alarm actions).
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from engine.intake.cloudwatch import (
    INSUFFICIENT_DATA_NAME,
    INTEGRATION,
    AlarmReading,
    alarm_parts,
    is_region_code,
    named_dimensions,
    region_code,
)
from engine.intake.slack_format import AlertParts, SlackMessage, color_kind, is_web_url
from engine.intake.sources import SlackLayout, register_slack_layout

__all__ = ["INSUFFICIENT_DATA_NAME", "parse"]

_STATES = r"(ALARM|OK|INSUFFICIENT_DATA)"
_HEADLINE = re.compile(r"CloudWatch Alarm[ \t]*\|([^\n]*)")
_ACCOUNT = re.compile(r"^Account:?\s*(\d{12})$")
_CONSOLE = re.compile(
    r"^https://(?:[a-z0-9-]+\.)?console\.(?:aws\.amazon\.com|amazonaws-us-gov\.com|amazonaws\.cn)"
    r"/cloudwatch/",
    re.IGNORECASE,
)
_CONSOLE_ALARM = re.compile(r"(?:alarmsV2:alarm/|[;&]name=|[&?#]alarm=)([^?&;#\s]+)")
_CONSOLE_REGION = re.compile(r"[?&]region=([a-z0-9-]+)")
_ARN = re.compile(r"arn:aws[\w-]*:cloudwatch:([a-z0-9-]+):(\d{12}):alarm:([^\s,|>]+)")
_TRANSITION = re.compile(_STATES + r"\s*->\s*" + _STATES)
_FROM_TO = re.compile(r"(?i:\bfrom)\s+" + _STATES + r"\s+(?i:to)\s+" + _STATES + r"\b")
_SAID = re.compile(
    r"(?i:changed state to|state(?: changed)?(?: to)?:?|new state:?|current state:?)"
    r"[\s*_`]*" + _STATES + r"\b"
)
_MARKS = {
    "ALARM": ("rotating_light", "\U0001f6a8", "red_circle", "\U0001f534", "fire"),
    "OK": ("white_check_mark", "\u2705", "green_circle", "\U0001f7e2", "heavy_check_mark"),
    "INSUFFICIENT_DATA": ("grey_question", "\u2754", "question", "\u2753"),
}
_DIMENSION = re.compile(r"([A-Za-z][\w.-]{0,127})\s*[=:]\s*([^\s,\[\]()]{1,1024})")


def parse(message: SlackMessage) -> AlertParts | None:
    if not message.is_bot:
        return None
    headline = _headline(f"{message.title}\n{message.text}")
    console = message.first_link(_CONSOLE)
    arn = _ARN.search(message.text)
    if headline is None and console is None and arn is None:
        return None
    alarm = _alarm_name(headline, console, arn)
    if not alarm:
        return None
    previous, state = _state(message)
    return alarm_parts(
        AlarmReading(
            alarm=alarm,
            state=state,
            previous=previous,
            region=_region(headline, console, arn, message),
            account=_account(headline, arn, message),
            namespace=message.value("Namespace") or "",
            metric=message.value("Metric", "MetricName", "Metric name") or "",
            dimensions=_dimensions(message),
            reason=_reason(message),
            description=message.value("Description", "Alarm description") or "",
            link=_link(message, console),
        )
    )


def _headline(text: str) -> tuple[str, str, str] | None:
    """(alarm, region, account) of `CloudWatch Alarm | name | region | Account: 1234…`.

    Split in code rather than by one regex: a hostile headline of long blank
    runs would make a backtracking pattern quadratic.
    """
    for match in _HEADLINE.finditer(text):
        parts = [part.strip().strip("*_`").strip() for part in match.group(1).split("|")]
        if len(parts) >= 2 and parts[0] and parts[1]:
            accounts = (m.group(1) for part in parts[2:] if (m := _ACCOUNT.match(part)))
            return parts[0], parts[1], next(accounts, "")
    return None


def _alarm_name(
    headline: tuple[str, str, str] | None,
    console: re.Match[str] | None,
    arn: re.Match[str] | None,
) -> str:
    if headline:
        return headline[0]
    if console and (name := _CONSOLE_ALARM.search(console.string)):
        return unquote(name.group(1)).strip()
    return arn.group(3) if arn else ""


def _state(message: SlackMessage) -> tuple[str | None, str]:
    """(previous state if told, new state)."""
    text = message.text
    if match := _TRANSITION.search(text) or _FROM_TO.search(text):
        return match.group(1), match.group(2)
    said = message.value("State", "New State", "Current State", "Alarm State") or ""
    if match := _SAID.search(text) or re.fullmatch(_STATES, said.strip()):
        return None, match.group(1)
    mark = message.title_mark.casefold()
    for state, marks in _MARKS.items():
        if any(m in mark for m in marks):
            return None, state
    kind = next((color_kind(color) for color in message.colors), None)
    return None, "OK" if kind == "green" else "ALARM"


def _region(
    headline: tuple[str, str, str] | None,
    console: re.Match[str] | None,
    arn: re.Match[str] | None,
    message: SlackMessage,
) -> str:
    """The region's code: the headline's when it is one, else the console link's or
    the ARN's, else the headline's (or a Region field's) long name translated."""
    if headline and is_region_code(headline[1]):
        return headline[1]
    if console and (region := _CONSOLE_REGION.search(console.string)):
        return region.group(1)
    if arn:
        return arn.group(1)
    return region_code(headline[1] if headline else message.value("Region") or "")


def _account(
    headline: tuple[str, str, str] | None, arn: re.Match[str] | None, message: SlackMessage
) -> str:
    if headline and headline[2]:
        return headline[2]
    if arn:
        return arn.group(2)
    value = message.value("Account", "Account ID", "AWS Account") or ""
    return match.group(0) if (match := re.search(r"\b\d{12}\b", value)) else ""


def _dimensions(message: SlackMessage) -> dict[str, str]:
    found = named_dimensions(message.text)
    for key, value in _DIMENSION.findall(message.value("Dimensions", "Dimension") or ""):
        found.setdefault(key, value)
    return found


def _reason(message: SlackMessage) -> str:
    for key in ("Threshold Crossed", "Insufficient Data"):
        if value := message.value(key):
            return f"{key}: {value}"
    return message.value("Reason", "State Reason", "New State Reason") or ""


def _link(message: SlackMessage, console: re.Match[str] | None) -> str | None:
    if console:
        return console.string
    return message.title_link if message.title_link and is_web_url(message.title_link) else None


register_slack_layout(SlackLayout(INTEGRATION, parse, order=40))
