"""parse_slack_message as the Slack listener calls it: every sample, chatter, hostile input."""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from engine.intake import sources
from engine.intake.limits import MAX_KEY, MAX_LABELS, MAX_NAME, MAX_TEXT, MAX_VALUE
from engine.intake.slack import parse_slack_message
from engine.models import Alert
from tests.engine.intake import (
    test_slack_alertmanager,
    test_slack_cloudwatch,
    test_slack_datadog,
    test_slack_grafana,
    test_slack_sentry,
)
from tests.engine.intake.slack_samples import NOW, SAMPLES

ALERT_SAMPLES = {
    name: source
    for source, module in [
        ("alertmanager", test_slack_alertmanager),
        ("grafana", test_slack_grafana),
        ("datadog", test_slack_datadog),
        ("cloudwatch", test_slack_cloudwatch),
        ("sentry", test_slack_sentry),
    ]
    for name in module.EXPECTED
} | {"text_person_firing.json": "text", "text_person_resolved.json": "text"}
CHATTER_SAMPLES = [
    "chatter_deploy_done.json",
    "chatter_thread_reply.json",
    "chatter_image_only.json",
    "chatter_unknown_bot.json",
]


def event(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / name).read_text())


def parse(message: Any) -> Alert | None:
    return parse_slack_message(message, channel="C0ALERTS", received_at=NOW)


def test_every_sample_has_expectations():
    on_disk = {path.name for path in SAMPLES.glob("*.json")}
    assert on_disk == set(ALERT_SAMPLES) | set(CHATTER_SAMPLES)


@pytest.mark.parametrize("name", sorted(ALERT_SAMPLES))
def test_every_alert_is_a_slack_alert_of_its_integration(name):
    message = event(name)
    alert = parse(message)
    assert alert is not None
    assert alert.source == "slack"
    assert alert.source_key == f"C0ALERTS/{message['ts']}"
    assert alert.channel == "C0ALERTS"
    # A person answers for what they post; an integration's bot user does not.
    person = ALERT_SAMPLES[name] == "text" and "bot_id" not in message
    assert alert.reporter == (message["user"] if person else None)
    assert alert.received_at == NOW
    assert alert.labels["integration"] == ALERT_SAMPLES[name]
    assert alert.labels["alertname"] == alert.name
    assert 0 < len(alert.text) <= MAX_TEXT
    assert "<http" not in alert.text and "&amp;" not in alert.text  # markup undone


@pytest.mark.parametrize("name", CHATTER_SAMPLES)
def test_chatter_is_not_an_alert(name):
    assert parse(event(name)) is None


@pytest.mark.parametrize(
    "message",
    [
        {"type": "message", "user": "U1", "text": "deploy done", "ts": "1.0"},
        {"type": "message", "user": "U1", "text": "", "ts": "1.0"},
        {"type": "message", "user": "U1", "ts": "1.0"},
        {"type": "message", "bot_id": "B1", "text": "Backup finished in 42 s", "ts": "1.0"},
        {"type": "message", "bot_id": "B1", "attachments": [{"title": "Build #12 passed"}]},
        {"type": "message", "bot_id": "B1", "blocks": [{"type": "header", "text": {"text": "Hi"}}]},
        {},
    ],
)
def test_ordinary_messages_are_not_alerts(message):
    assert parse(message) is None


@pytest.mark.parametrize(
    "subtype", ["message_changed", "message_deleted", "channel_join", "channel_topic", ["x"], 3]
)
def test_edits_joins_and_odd_subtypes_are_not_alerts(subtype):
    message = event("grafana_firing.json")
    message["subtype"] = subtype
    assert parse(message) is None


@pytest.mark.parametrize("message", [None, "text", 42, ["a"]])
def test_an_event_that_is_not_a_mapping_is_not_an_alert(message):
    assert parse(message) is None


def test_an_integration_reply_in_a_thread_is_read_by_integration_parsers_only():
    sentry = event("sentry_resolved.json")
    sentry["thread_ts"] = "1732609000.005100"
    alert = parse(sentry)
    assert alert is not None and alert.labels["integration"] == "sentry"
    text = {"type": "message", "bot_id": "B1", "text": "[FIRING:1] Disk path=/var", "ts": "2.0"}
    assert parse({**text, "thread_ts": "1.0"}) is None


def test_a_broken_parser_is_logged_and_the_others_still_read(monkeypatch, caplog):
    def broken(message):
        raise RuntimeError("bug")

    # Registered first in order, as a new layout module would register itself.
    monkeypatch.setitem(
        sources.LAYOUTS.entries, "broken", sources.SlackLayout("broken", broken, order=0)
    )
    alert = parse(event("grafana_firing.json"))
    assert alert is not None and alert.labels["integration"] == "grafana"
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    assert "broken" in caplog.records[0].getMessage()


def test_an_alert_cannot_ping_the_channel_through_its_text():
    message = event("grafana_firing.json")
    message["attachments"][0]["pretext"] = "<!channel> <!here|here> <!subteam^S1|@sre>"
    alert = parse(message)
    assert alert is not None
    assert "<!" not in alert.text and "@channel @here @sre" in alert.text


def test_links_that_are_not_web_links_are_dropped():
    message = event("grafana_firing.json")
    attachment = message["attachments"][0]
    attachment["title_link"] = "javascript:alert(1)"
    attachment["text"] = attachment["text"].replace("Source: https://", "Source: file://")
    alert = parse(message)
    assert alert is not None and alert.link is None


def test_a_link_too_long_is_dropped_not_cut():
    message = event("sentry_legacy_issue.json")
    message["attachments"][0]["title_link"] += "&x=" + "a" * MAX_VALUE
    alert = parse(message)
    assert alert is not None and alert.link is None


# -- hostile input ------------------------------------------------------------


def assert_capped(alert: Alert) -> None:
    assert len(alert.name) <= MAX_NAME
    assert len(alert.text) <= MAX_TEXT
    assert alert.severity is None or len(alert.severity) <= MAX_KEY
    assert alert.link is None or len(alert.link) <= MAX_VALUE
    for pairs in (alert.labels, alert.annotations):
        assert len(pairs) <= MAX_LABELS
        assert all(len(k) <= MAX_KEY and len(v) <= MAX_VALUE for k, v in pairs.items())


@pytest.mark.parametrize("name", sorted(ALERT_SAMPLES))
def test_huge_values_stay_capped(name):
    message = event(name)
    big = "W" * 300_000

    def bloat(value: Any) -> Any:
        if isinstance(value, str) and value and not value.startswith("http"):
            return value.replace(" ", f" {big} ", 1) if " " in value else value + big
        if isinstance(value, dict):
            return {key: bloat(item) for key, item in value.items()}
        if isinstance(value, list):
            return [bloat(item) for item in value]
        return value

    bloated = {
        key: bloat(value) if key not in ("ts", "thread_ts") else value
        for key, value in message.items()
    }
    alert = parse(bloated)
    if alert is not None:
        assert_capped(alert)


def test_a_thousand_fields_and_attachments_stay_capped():
    message = event("sentry_legacy_issue.json")
    attachment = message["attachments"][0]
    attachment["fields"] = [{"title": f"tag{i}", "value": f"v{i}" * 600} for i in range(1000)]
    message["attachments"] = [attachment] * 1000
    message["blocks"] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "x " * 5000}}
    ] * 1000
    alert = parse(message)
    assert alert is not None and alert.name == "ZeroDivisionError: division by zero"
    assert_capped(alert)


def test_a_thousand_labels_in_a_grafana_message_stay_capped():
    message = event("grafana_firing.json")
    lines = f" - huge = {'h' * 5000}\n" + "".join(
        f" - label{i} = {'v' * 40}\n" for i in range(1000)
    )
    text = message["attachments"][0]["text"]
    message["attachments"][0]["text"] = text.replace("Labels:\n", "Labels:\n" + lines, 1)
    alert = parse(message)
    assert alert is not None and alert.name == "HighCPU"
    assert len(alert.labels) == MAX_LABELS and alert.labels["integration"] == "grafana"
    assert alert.labels["huge"] == "h" * MAX_VALUE
    assert_capped(alert)


def leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaves(item, (*path, index))


def replaced(message: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    copied = copy.deepcopy(message)
    if not path:
        return copied
    target = copied
    for step in path[:-1]:
        target = target[step]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return copied


ODD_VALUES = [KeyError, None, 7, 2.5, True, [], {}, ["x", 1], {"text": 1}, "", "<>|<!>&amp;<@"]


@pytest.mark.parametrize("name", sorted(ALERT_SAMPLES) + CHATTER_SAMPLES)
def test_missing_pieces_and_values_of_any_type_never_raise(name, caplog):
    message = event(name)
    for path in list(leaves(message))[1:]:
        for value in ODD_VALUES:
            alert = parse(replaced(message, path, value))
            if alert is not None:
                assert_capped(alert)
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


BLANKS, RUN = " " * 60_000, "a" * 60_000
PATHOLOGICAL = [
    f"CloudWatch Alarm | a{BLANKS}b",
    f"CloudWatch Alarm | a | b{BLANKS}c",
    f"[FIRING:1] a{BLANKS}b (c)",
    f"Triggered: [P2]{BLANKS}x",
    f"*Alert:* x{BLANKS}y - `z",
    f" • *a:* `{RUN}",
    f"from ALARM{BLANKS}to",
    f"Labels:\n - {RUN}",
    "<" + "a|" * 30_000,
    'a="' * 20_000,
    ":" * 60_000,
]


@pytest.mark.parametrize("text", PATHOLOGICAL, ids=range(len(PATHOLOGICAL)))
def test_pathological_text_is_read_in_linear_time(text):
    # Backtracking regexes once took minutes on these; linear reading takes milliseconds.
    message = {
        "type": "message",
        "bot_id": "B1",
        "bot_profile": {"name": "Alertmanager Grafana Datadog AWS Chatbot Sentry"},
        "ts": "1.0",
        "text": text,
        "attachments": [
            {"title": text, "text": text, "fields": [{"title": "Tags", "value": text}]}
        ],
    }
    started = time.perf_counter()
    parse(message)
    assert time.perf_counter() - started < 2.0
