from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from engine.intake.slack_format import (
    Link,
    color_kind,
    common_pairs,
    line_pairs,
    parse_time,
    split_status_title,
    subject_values,
    unformat,
)
from engine.intake.slack_reader import MAX_ITEMS, PARSE_LIMIT, read_message
from engine.models import AlertStatus


@pytest.mark.parametrize(
    ("raw", "plain", "with_urls"),
    [
        ("<https://x.io/a|the docs>", "the docs", "the docs (https://x.io/a)"),
        ("<https://x.io/a>", "https://x.io/a", "https://x.io/a"),
        ("<https://x.io/a|https://x.io/a>", "https://x.io/a", "https://x.io/a"),
        ("<@U0ONCALL> and <@U0LEAD|lead>", "@U0ONCALL and @lead", "@U0ONCALL and @lead"),
        ("<#C0ALERTS|alerts>", "#alerts", "#alerts"),
        ("<!channel> <!here> <!everyone>", "@channel @here @everyone", "@channel @here @everyone"),
        ("<!subteam^S07|@sre> up", "@sre up", "@sre up"),
        ("<!date^1732590000^{date}|Nov 26>", "Nov 26", "Nov 26"),
        ("a &lt;b&gt; &amp;amp;", "a <b> &amp;", "a <b> &amp;"),
        ("<mailto:a@b.io|a@b.io>", "a@b.io", "a@b.io"),
    ],
)
def test_unformat_undoes_slack_markup(raw, plain, with_urls):
    assert unformat(raw) == plain
    assert unformat(raw, urls=True) == with_urls


def test_top_level_text_is_read_and_its_links_kept():
    message = read_message(
        {"text": "Disk full on <https://g.io/d/1|db-1> &amp; more", "user": "U1"}
    )
    assert message.text == "Disk full on db-1 (https://g.io/d/1) & more"
    assert message.links == (Link("https://g.io/d/1", "db-1"),)
    assert message.title == "Disk full on db-1 & more"
    assert not message.is_bot


def test_a_persons_rich_text_blocks_are_not_read_twice():
    text = "restart web-1 please"
    message = read_message(
        {
            "text": text,
            "user": "U1",
            "blocks": [
                {
                    "type": "rich_text",
                    "elements": [
                        {"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}
                    ],
                }
            ],
        }
    )
    assert message.text == text


def test_rich_text_alone_is_read_with_its_elements():
    message = read_message(
        {
            "blocks": [
                {
                    "type": "rich_text",
                    "elements": [
                        {
                            "type": "rich_text_section",
                            "elements": [
                                {"type": "text", "text": "see "},
                                {"type": "link", "url": "https://r.io/x", "text": "runbook"},
                                {"type": "text", "text": " "},
                                {"type": "user", "user_id": "U0LEAD"},
                                {"type": "emoji", "name": "fire"},
                                {"type": "broadcast", "range": "here"},
                            ],
                        },
                        {
                            "type": "rich_text_list",
                            "elements": [
                                {
                                    "type": "rich_text_section",
                                    "elements": [{"type": "text", "text": "one"}],
                                },
                                {
                                    "type": "rich_text_section",
                                    "elements": [{"type": "text", "text": "two"}],
                                },
                            ],
                        },
                    ],
                }
            ]
        }
    )
    assert message.text == "see runbook (https://r.io/x) @U0LEAD:fire:@here\n• one\n• two"
    assert message.links == (Link("https://r.io/x", "runbook"),)


def test_blocks_give_title_fields_context_and_button_links():
    message = read_message(
        {
            "bot_id": "B1",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": "Disk & more"}},
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": "*Host* is <https://h.io|db-1>"},
                    "fields": [
                        {"type": "mrkdwn", "text": "*Namespace*\nAWS/RDS"},
                        {"type": "mrkdwn", "text": "*Project:* backend"},
                    ],
                    "accessory": {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open"},
                        "url": "https://a.io",
                    },
                },
                {"type": "context", "elements": [{"type": "mrkdwn", "text": "Grafana v11"}]},
                {"type": "divider"},
                {"type": "image", "image_url": "https://i.io/x.png", "alt_text": "graph"},
                {
                    "type": "actions",
                    "elements": [
                        {"type": "button", "text": {"type": "plain_text", "text": "Ack"}},
                        {
                            "type": "button",
                            "text": {"type": "plain_text", "text": "View"},
                            "url": "https://v.io",
                        },
                    ],
                },
            ],
        }
    )
    assert message.is_bot
    assert message.title == "Disk & more"  # plain_text is shown as written
    assert message.fields == (("Namespace", "AWS/RDS"), ("Project", "backend"))
    assert message.value("namespace") == "AWS/RDS"
    assert [link.url for link in message.links] == ["https://h.io", "https://a.io", "https://v.io"]
    assert message.text.split("\n") == [
        "Disk & more",
        "*Host* is db-1 (https://h.io)",
        "*Namespace*",
        "AWS/RDS",
        "*Project:* backend",
        "Open (https://a.io)",
        "Grafana v11",
        "View (https://v.io)",
    ]


def test_section_title_takes_its_only_link_as_title_link():
    message = read_message(
        {
            "bot_id": "B1",
            "blocks": [
                {
                    "type": "section",
                    "text": {
                        "type": "mrkdwn",
                        "text": ":red_circle: <https://s.io/issues/1/|*Boom*>",
                    },
                }
            ],
        }
    )
    assert (message.title, message.title_mark, message.title_link) == (
        "Boom",
        ":red_circle:",
        "https://s.io/issues/1/",
    )


def test_legacy_attachment_is_read_whole():
    message = read_message(
        {
            "subtype": "bot_message",
            "username": "Grafana",
            "text": "",
            "attachments": [
                {
                    "color": "D63232",
                    "pretext": "<!subteam^S1|@oncall>",
                    "title": "[FIRING:1] HighCPU",
                    "title_link": "https://g.io/alerting/list",
                    "text": "Value: A=93",
                    "fields": [
                        {"title": "Region", "value": "<https://r.io|eu-west-1>", "short": True}
                    ],
                    "footer": "Grafana v10.4.1",
                    "fallback": "[FIRING:1] HighCPU",
                    "actions": [{"type": "button", "text": "Silence", "url": "https://g.io/s"}],
                }
            ],
        }
    )
    assert message.sender == "Grafana" and message.is_bot
    assert message.title == "[FIRING:1] HighCPU"
    assert message.title_link == "https://g.io/alerting/list"
    assert message.colors == ("D63232",)
    assert message.footers == ("Grafana v10.4.1",)
    assert message.fallbacks == ("[FIRING:1] HighCPU",)
    assert message.fields == (("Region", "eu-west-1"),)
    assert message.text.split("\n") == [
        "@oncall",
        "[FIRING:1] HighCPU",
        "Value: A=93",
        "Region: eu-west-1 (https://r.io)",
        "Silence (https://g.io/s)",
        "Grafana v10.4.1",
    ]


def test_fallback_is_read_only_when_the_attachment_has_nothing_else():
    message = read_message({"bot_id": "B1", "attachments": [{"fallback": "only this"}]})
    assert message.text == "only this"


def test_link_previews_and_shared_messages_are_not_the_message():
    message = read_message(
        {
            "text": "look <https://acme.sentry.io/issues/1/>",
            "user": "U1",
            "attachments": [
                {"from_url": "https://acme.sentry.io/issues/1/", "title": "ZeroDivisionError"},
                {"is_share": True, "title": "[FIRING:1] HighCPU"},
            ],
        }
    )
    assert message.text == "look https://acme.sentry.io/issues/1/"
    assert "ZeroDivisionError" not in message.text and "HighCPU" not in message.text


def test_thread_reply_and_sender():
    reply = read_message({"ts": "2.0", "thread_ts": "1.0", "bot_profile": {"name": "Sentry"}})
    parent = read_message({"ts": "1.0", "thread_ts": "1.0", "username": "hook"})
    assert reply.is_thread_reply and reply.is_bot and reply.sender == "Sentry"
    assert not parent.is_thread_reply and parent.sender == "hook" and not parent.is_bot


def test_values_of_wrong_types_are_skipped():
    message = read_message(
        {
            "text": 42,
            "blocks": {"type": "section"},
            "attachments": [None, "x", {"title": ["no"], "fields": [{"title": 1, "value": 2.5}]}],
            "bot_profile": "Datadog",
            "thread_ts": {"a": 1},
        }
    )
    assert message.raw_text == "42"
    assert message.fields == (("1", "2.5"),)
    assert message.sender == "" and not message.is_thread_reply


def test_reading_is_bounded_however_big_the_message():
    huge = "x" * (10 * PARSE_LIMIT)
    message = read_message(
        {
            "bot_id": "B1",
            "text": huge,
            "attachments": [
                {"title": huge, "fields": [{"title": f"k{i}", "value": huge} for i in range(1000)]}
                for _ in range(1000)
            ],
        }
    )
    assert len(message.text) <= 3 * (PARSE_LIMIT + 1)  # text, blocks, attachments
    assert len(message.fields) <= MAX_ITEMS * MAX_ITEMS
    assert len(message.raw_text) == PARSE_LIMIT


def test_line_pairs_read_keys_and_spaced_values():
    text = (
        "Project: <backend>    Short ID: BACKEND-4A\n"
        "*Namespace:* `AWS/EC2`\n"
        "environment: `production`  level: `error`\n"
        "https://not.a/pair\n"
        "Release: 1.2 (https://r.io/1.2)"
    )
    assert list(line_pairs(text)) == [
        ("Project", "<backend>"),
        ("Short ID", "BACKEND-4A"),
        ("Namespace", "AWS/EC2"),
        ("environment", "production"),
        ("level", "error"),
        ("Release", "1.2"),
    ]


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("[FIRING:2] HighLatency (api prod)", (AlertStatus.FIRING, "HighLatency (api prod)")),
        ("[RESOLVED] HighLatency ", (AlertStatus.RESOLVED, "HighLatency")),
        ("[FIRING:2, RESOLVED:1] Disk", (AlertStatus.FIRING, "Disk")),
        ("[firing] Disk", (AlertStatus.FIRING, "Disk")),
        ("Triggered: [P2] CPU", None),
        ("", None),
    ],
)
def test_status_titles(title, expected):
    assert split_status_title(title) == expected


def test_subject_values():
    assert subject_values("HighLatency api (prod critical)") == (
        ["HighLatency", "api"],
        ["prod", "critical"],
    )
    assert subject_values("HighLatency") == (["HighLatency"], [])
    assert subject_values("odd (value) (here)") == (["odd", "(value)", "(here)"], [])


@pytest.mark.parametrize(
    ("color", "kind"),
    [
        ("danger", "red"),
        ("good", "green"),
        ("warning", "yellow"),
        ("#D63232", "red"),
        ("a30200", "red"),
        ("36a64f", "green"),
        ("2eb886", "green"),
        ("daa038", "yellow"),
        ("2788CE", None),
        ("879596", None),
        ("not-a-colour", None),
    ],
)
def test_color_kind(color, kind):
    assert color_kind(color) == kind


def test_common_pairs():
    assert common_pairs([{"a": "1", "b": "2"}, {"a": "1", "b": "3"}]) == {"a": "1"}
    assert common_pairs([]) == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-11-26 03:12:45.123 +0000 UTC", datetime(2024, 11, 26, 3, 12, 45, tzinfo=UTC)),
        ("at 2024-11-26T03:12:45Z", datetime(2024, 11, 26, 3, 12, 45, tzinfo=UTC)),
        (
            "2024-11-26T03:12:45+05:30",
            datetime(2024, 11, 26, 3, 12, 45, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        ),
        ("2024-11-26 03:12", datetime(2024, 11, 26, 3, 12, tzinfo=UTC)),
        ("2024-02-30 03:12:45", None),
        ("2024-11-26 03:12:45 +9900", None),
        ("10 minutes ago", None),
        (None, None),
    ],
)
def test_parse_time(text, expected):
    assert parse_time(text) == expected
