"""Sentry's Slack posts: the integration's Block Kit and attachments (getsentry/sentry,
integrations/slack/message_builder/issues.py and messaging/message_builder.py: for an
error the title is the exception's type, its value below, the fallback the whole
title) and the legacy plugin's incoming webhook (getsentry/sentry-plugins, slack)."""

from __future__ import annotations

import pytest

from tests.engine.intake.slack_samples import FIRING, RESOLVED, assert_sample, event, parse, sample

BACKEND_4A = "https://sentry.io/organizations/acme/issues/4509123456/?referrer="
ORDERS_3K = "https://acme.sentry.io/issues/6081734552/events/b7d1e94c2a3f4d0e8c61f5a92e0d7b13/"
LOCKED = "OperationalError: database is locked"


ZERO = "ZeroDivisionError: division by zero"
# name, status, severity, labels (at least), link prefix
EXPECTED = {
    "sentry_legacy_issue.json": (
        ZERO,
        FIRING,
        "error",
        {
            "issue_id": "4509123456",
            "short_id": "BACKEND-4A",
            "project": "backend",
            "environment": "production",
            "level": "error",
            "release": "backend@1.8.2",
        },
        BACKEND_4A + "slack&alert_rule_id=42",
    ),
    "sentry_blocks_issue.json": (
        "ConnectionError: could not connect to redis://cache-1:6379",
        FIRING,
        "fatal",
        {
            "issue_id": "4509987654",
            "short_id": "PAYMENTS-1Z",
            "project": "payments",
            "environment": "production",
            "level": "fatal",
            "release": "2024.11.3",
        },
        "https://acme.sentry.io/issues/4509987654/?referrer=slack",
    ),
    "sentry_resolved.json": (
        ZERO,
        RESOLVED,
        None,
        {"issue_id": "4509123456", "short_id": "BACKEND-4A", "project": "backend"},
        BACKEND_4A + "activity_notification",
    ),
    "sentry_blocks_database_locked.json": (
        LOCKED,
        FIRING,
        "error",
        {
            "issue_id": "6081734552",
            "short_id": "ORDERS-3K",
            "project": "orders",
            "environment": "production",
            "level": "error",
            "server_name": "app-2",
            "db_path": "/var/lib/app/orders.db",
        },
        ORDERS_3K + "?referrer=slack",
    ),
    "sentry_blocks_warning_service.json": (
        "DebugLoggingEnabled: root logger level is DEBUG in production",
        FIRING,
        "warning",
        {"issue_id": "6082001188", "project": "api", "level": "warning", "service": "api"},
        "https://acme.sentry.io/issues/6082001188/?referrer=slack",
    ),
    "sentry_plugin_database_locked.json": (
        LOCKED,
        FIRING,
        "error",
        {
            "issue_id": "3318",
            "project": "Orders",
            "level": "error",
            "environment": "production",
            "server_name": "app-2",  # the plugin's label "Server"
            "db_path": "/var/lib/app/orders.db",  # and "Db Path"
        },
        "https://sentry.acme.internal/acme/orders/issues/3318/?referrer=slack",
    ),
    "sentry_plugin_warning.json": (
        "Slow checkout: payment provider answered in 9.8s",
        FIRING,
        "warning",  # by the plugin's colour for the level: no tag says it
        {"issue_id": "3402", "project": "Storefront", "release": "storefront@5.2.0"},
        "https://sentry.acme.internal/acme/storefront/issues/3402/?referrer=slack",
    ),
}


@pytest.mark.parametrize("name", EXPECTED)
def test_samples(name):
    assert_sample(name, EXPECTED[name], "sentry", link_prefix=True)


def test_resolution_closes_the_issue_it_names_though_it_carries_fewer_labels():
    firing, resolved = sample("sentry_legacy_issue.json"), sample("sentry_resolved.json")
    assert firing.labels != resolved.labels
    assert firing.fingerprint == resolved.fingerprint


def test_another_issue_is_another_alert():
    message = event("sentry_legacy_issue.json")
    message["attachments"][0]["title_link"] = "https://sentry.io/organizations/acme/issues/1/"
    other = parse(message)
    assert other is not None and other.fingerprint != sample("sentry_legacy_issue.json").fingerprint


def test_culprit_is_kept_where_it_is_shown():
    assert (
        sample("sentry_blocks_issue.json").annotations["culprit"] == "payments.cache in get_client"
    )
    assert sample("sentry_plugin_database_locked.json").annotations["culprit"] == (
        "orders.views in create_order"
    )
    # The integration's attachments show the exception's value under the title, not a culprit.
    assert "culprit" not in sample("sentry_legacy_issue.json").annotations


def test_the_whole_title_comes_from_the_fallback_where_only_the_type_is_shown():
    message = event("sentry_blocks_database_locked.json")
    assert message["text"] == "[orders] OperationalError: database is locked"
    message["text"] = ""
    alert = parse(message)
    assert alert is not None and alert.name == "OperationalError"  # all it shows
    assert alert.labels["project"] == "orders"  # from the footer context


def test_a_fallback_of_another_title_is_not_taken_for_this_one():
    message = event("sentry_blocks_database_locked.json")
    message["text"] = "[orders] Something else entirely"
    alert = parse(message)
    assert alert is not None and alert.name == "OperationalError"


@pytest.mark.parametrize(
    ("title", "key"),
    [("Db Path", "db_path"), ("Server", "server_name"), ("Environment", "environment")],
)
def test_the_legacy_plugins_tag_labels_are_their_keys(title, key):
    message = event("sentry_plugin_database_locked.json")
    message["attachments"][0]["fields"] = [{"title": title, "value": "v1", "short": True}]
    alert = parse(message)
    assert alert is not None and alert.labels[key] == "v1"


@pytest.mark.parametrize("title", ["Culprit", "Triggered By", "User"])
def test_fields_that_are_not_tags_are_not_labels(title):
    message = event("sentry_plugin_database_locked.json")
    message["attachments"][0]["fields"] = [{"title": title, "value": "v1", "short": True}]
    alert = parse(message)
    key = title.casefold().replace(" ", "_")
    assert alert is not None and alert.labels.get(key) != "v1"


def test_the_block_kit_context_is_not_taken_for_tags():
    alert = sample("sentry_blocks_database_locked.json")
    assert not {"State", "state", "First Seen", "Alert", "Short ID"} & set(alert.labels)


def test_old_sentry_issue_urls_name_the_issue():
    assert sample("sentry_plugin_warning.json").labels["issue_id"] == "3402"


def test_an_issue_link_in_an_incoming_webhook_not_named_sentry_is_not_sentry():
    message = event("sentry_plugin_database_locked.json")
    message["username"] = "Tracker"
    message["attachments"][0]["title_link"] = "https://tracker.example.com/acme/web/issues/77"
    assert parse(message) is None


@pytest.mark.parametrize(
    "text",
    [
        "*Issue resolved by <@U0LEAD>*",
        "PAYMENTS-1Z was resolved",
        "Jane marked <https://acme.sentry.io/issues/4509987654/|PAYMENTS-1Z> as resolved in 1.2",
    ],
)
def test_resolution_wordings(text):
    message = event("sentry_blocks_issue.json")
    message["blocks"].insert(2, {"type": "section", "text": {"type": "mrkdwn", "text": text}})
    alert = parse(message)
    assert alert is not None and alert.status is RESOLVED


@pytest.mark.parametrize(
    "text", ["Jane marked PAYMENTS-1Z as unresolved", "Issue re-opened by Jane"]
)
def test_reopening_is_firing(text):
    message = event("sentry_blocks_issue.json")
    message["blocks"].insert(2, {"type": "section", "text": {"type": "mrkdwn", "text": text}})
    alert = parse(message)
    assert alert is not None and alert.status is FIRING


def test_level_from_the_title_emoji_when_no_tag_says():
    message = event("sentry_blocks_issue.json")
    del message["blocks"][3]  # the tags
    message["blocks"][0]["text"]["text"] = message["blocks"][0]["text"]["text"].replace(
        ":red_circle:", ":large_yellow_circle:"
    )
    alert = parse(message)
    assert alert is not None and alert.severity == "warning" and "level" not in alert.labels


def test_self_hosted_sentry_is_recognised_by_its_host():
    message = event("sentry_legacy_issue.json")
    message["bot_profile"]["name"] = "Errors"
    message["attachments"][0]["title_link"] = (
        "https://sentry.acme.internal/organizations/acme/issues/77/"
    )
    alert = parse(message)
    assert alert is not None and alert.labels["issue_id"] == "77"


def test_an_issues_link_from_another_tracker_is_not_sentry():
    message = event("sentry_legacy_issue.json")
    message["bot_profile"]["name"] = "Tracker"
    message["attachments"][0]["title_link"] = "https://tracker.example.com/issues/77"
    assert parse(message) is None
