from __future__ import annotations

import pytest

from tests.engine.intake.slack_samples import FIRING, RESOLVED, assert_sample, event, parse, sample

BACKEND_4A = "https://sentry.io/organizations/acme/issues/4509123456/?referrer="


ZERO = "ZeroDivisionError: division by zero"
# name, status, severity, labels (exactly, besides alertname and integration), link prefix
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


def test_culprit_is_kept():
    assert sample("sentry_legacy_issue.json").annotations["culprit"] == (
        "app.views.checkout in compute_discount"
    )
    assert (
        sample("sentry_blocks_issue.json").annotations["culprit"] == "payments.cache in get_client"
    )


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
