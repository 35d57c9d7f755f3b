"""Webhook intake, storms collapsing into cards, and Slack writes that survive outages."""

from __future__ import annotations

import asyncio
import json
import re

from bot.app import build
from bot.demo import CHANNEL
from engine.models import IncidentState
from tests.e2e.conftest import OTHER_CHANNEL, WEBHOOK_TOKEN

S = IncidentState


def generic(*alerts: dict) -> str:
    return json.dumps({"alerts": list(alerts)})


def firing(n: int, status: str = "firing", **labels: str) -> dict:
    return {"name": "DiskFilling", "status": status, "labels": {"host": f"web-{n}", **labels}}


def alertmanager(
    status: str, *alerts: dict, group_key: str = '{}:{alertname="HighLatency"}'
) -> str:
    return json.dumps(
        {
            "version": "4",
            "groupKey": group_key,
            "truncatedAlerts": 0,
            "status": status,
            "receiver": "grace",
            "groupLabels": {"alertname": "HighLatency"},
            "commonLabels": {"alertname": "HighLatency"},
            "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093",
            "alerts": list(alerts),
        }
    )


def am_alert(instance: str, status: str = "firing") -> dict:
    return {
        "status": status,
        "labels": {"alertname": "HighLatency", "instance": instance, "severity": "warning"},
        "annotations": {"summary": f"p99 latency high on {instance}"},
        "startsAt": "2026-11-24T03:00:00Z",
        "endsAt": "2026-11-24T03:10:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": f"fp-{instance}",
    }


def metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    match = re.search(rf"^{name}\{{{wanted}\}} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_a_storm_collapses_to_one_card_per_fingerprint_with_its_count(make_harness):
    h = await make_harness()
    fingerprints, repeats = 40, 10
    bodies = [generic(firing(n)) for _ in range(repeats) for n in range(fingerprints)]
    answers = await asyncio.gather(*(h.post("generic", b) for b in bodies))
    assert {status for status, _ in answers} == {200}
    await h.grace.healer.drain()
    await h.grace.outbox.idle()
    incidents = await h.incidents()
    assert len(incidents) == fingerprints
    assert sorted(i.alert_count for i in incidents) == [repeats] * fingerprints
    assert len(h.cards()) == fingerprints, "cards are updated in place, never re-posted"
    for card in h.cards():
        assert f"{repeats} received" in h.slack.render_message(h.slack.message(CHANNEL, card.ts))
    text = await h.metrics()
    assert metric(text, "grace_alerts_received_total", source="generic") == len(bodies)
    updates = sum(c.method == "chat.update" for c in h.slack.calls)
    assert updates < len(bodies) / 2, "repeats coalesce into a few card updates"


async def test_an_alertmanager_group_is_one_incident_and_its_all_clear_ends_it(make_harness):
    h = await make_harness()
    status, answer = await h.post(
        "alertmanager", alertmanager("firing", *(am_alert(f"api-{n}") for n in range(3)))
    )
    assert status == 200 and answer["received"] == 3 and answer["opened"] == 1
    card = await h.card()
    [incident] = await h.incidents()
    assert incident.alert_count == 3 and incident.firing_count == 3
    assert incident.state is S.NEEDS_HUMAN  # no playbook treats HighLatency

    await h.post(
        "alertmanager",
        alertmanager("firing", am_alert("api-0", "resolved"), am_alert("api-1"), am_alert("api-2")),
    )
    await h.grace.healer.drain()
    [incident] = await h.incidents()
    assert (incident.alert_count, incident.firing_count) == (6, 2)
    assert len(h.cards()) == 1 and card.ts == h.cards()[0].ts


async def test_a_resolved_alert_ends_an_incident_awaiting_approval(make_harness):
    h = await make_harness()
    text = f"SQLiteWALTooLarge db_path={h.app_db}"
    await h.alert(f"[FIRING:1] {text}")
    card = await h.card()
    await h.slack.wait_for(lambda: h.thread(card))
    await h.alert(f"[RESOLVED] {text}")
    await h.slack.wait_for(lambda: any("resolved by itself" in t for t in h.thread(card)))
    await h.grace.outbox.idle()
    final = h.slack.message(CHANNEL, card.ts)
    assert "Cleared by itself" in h.slack.render_message(final)
    assert not [b for b in final.blocks if b["type"] == "actions"], "no buttons once cleared"
    [incident] = await h.incidents()
    assert incident.state is S.AUTO_RESOLVED


async def test_alerts_are_routed_by_label_to_their_channel(make_harness):
    from engine.routing import Route

    h = await make_harness(routes=[Route(match={"team": "payments"}, channel=OTHER_CHANNEL)])
    await h.post("generic", generic(firing(1, team="payments"), firing(2, team="search")))
    await h.grace.healer.drain()
    await h.grace.outbox.idle()
    assert len(h.slack.messages(OTHER_CHANNEL)) == 1
    assert len(h.cards()) == 1


async def test_alert_text_reaches_slack_escaped(make_harness):
    h = await make_harness()
    hostile = {
        "name": "Pwn",
        "labels": {"host": "<!channel> <@U0CEO> <https://evil.example|ok>"},
        "text": "<!here> & friends",
    }
    await h.post("generic", generic(hostile))
    card = await h.card()
    await h.grace.outbox.idle()
    sent = json.dumps([c.args for c in h.slack.calls if c.method.startswith("chat.")])
    for raw in ("<!channel>", "<!here>", "<@U0CEO>", "<https://evil"):
        assert raw not in sent
    assert (
        "&lt;!channel&gt;" in json.dumps(h.slack.message(CHANNEL, card.ts).blocks)
        or "&lt;!channel&gt;" in sent
    )


async def test_bad_requests_get_their_status_and_store_nothing(make_harness):
    h = await make_harness()
    good = generic(firing(1))
    cases = [
        (await h.post("generic", good, token=None), 401),
        (await h.post("generic", good, token="wrong"), 401),
        (await h.post("alertmanager", good, token="wrong"), 401),
        (await h.post("generic", "{not json"), 400),
        (await h.post("generic", good, content_type="text/plain"), 400),
        (await h.post("generic", json.dumps({"alerts": [{"labels": {}}]})), 400),
        (await h.post("alertmanager", json.dumps({"version": "4", "alerts": "nope"})), 400),
        (await h.post("generic", b"{" + b" " * (5 * 1024 * 1024) + b"}"), 413),
    ]
    for (status, answer), expected in cases:
        assert status == expected, answer
        assert answer["ok"] is False and answer["error"]
    await h.grace.healer.drain()
    assert await h.incidents() == []
    assert metric(await h.metrics(), "grace_alerts_received_total", source="generic") == 0


async def test_webhooks_are_off_without_a_token(make_harness):
    h = await make_harness(webhook_token=None)
    status, answer = await h.post("generic", generic(firing(1)), token=WEBHOOK_TOKEN)
    assert status == 503 and "GRACE_WEBHOOK_TOKEN" in answer["error"]


async def test_a_slack_outage_delays_messages_and_loses_none(make_harness):
    h = await make_harness()
    h.slack.outage = True
    await h.post("generic", generic(*(firing(n) for n in range(3))))
    await h.grace.healer.drain()
    # A 5xx leaves the outcome unknown: before posting again, GRACE looks in the channel.
    await h.slack.wait_for(
        lambda: (
            sum(
                c.method == "conversations.history" and "outage" in c.response
                for c in h.slack.calls
            )
            >= 2
        ),
        timeout=15,
    )
    assert h.cards() == [] and await h.grace.store.outbox_pending() >= 3
    h.slack.outage = False
    h.slack.fail_next("chat.postMessage", times=2, retry_after=1)  # then rate limited twice
    await h.slack.wait_for(lambda: len(h.cards()) == 3, timeout=30)
    await h.grace.outbox.idle()
    for card in h.cards():
        assert h.thread(card) and "Needs a human" in h.thread(card)[0]
    text = await h.metrics()
    assert (
        metric(text, "grace_slack_requests_total", method="chat.postMessage", outcome="error") >= 1
    )
    looked = metric(
        text, "grace_slack_requests_total", method="conversations.history", outcome="error"
    )
    assert looked >= 2
    assert (
        metric(text, "grace_slack_requests_total", method="chat.postMessage", outcome="ratelimited")
        == 2
    )
    assert metric(text, "grace_outbox_pending") == 0


async def test_order_within_a_thread_survives_rate_limits(make_harness):
    h = await make_harness()
    h.slack.fail_next("chat.postMessage", times=3, retry_after=1)
    await h.alert()
    card = await h.slack.wait_for(lambda: next(iter(h.cards()), None), timeout=30)
    await h.click(card)
    await h.finished(card)
    stages = ["Plan", "Approved", "Snapshot", "Step", "Verification", "Learned"]
    thread = h.thread(card)
    assert [next(s for s in stages if s in t) for t in thread] == stages


async def test_a_restart_in_the_middle_of_delivery_loses_nothing(make_harness):
    h = await make_harness()
    h.slack.outage = True
    await h.post("generic", generic(*(firing(n) for n in range(4))))
    await h.grace.healer.drain()
    pending = await h.grace.store.outbox_pending()
    assert pending >= 8  # four cards and their thread replies
    await h.grace.stop()

    h.slack.outage = False
    h.grace = await build(h.grace.settings)
    await h.grace.start()
    await h.slack.wait_for(lambda: len(h.cards()) == 4, timeout=30)
    await h.grace.outbox.idle()
    assert all(h.thread(card) for card in h.cards())


async def test_slack_writes_never_exceed_the_channel_limit(make_harness):
    h = await make_harness(slack_rate=5.0, slack_burst=2)
    h.slack.post_rate, h.slack.post_burst = 5.0, 2  # the stand-in enforces the same limit
    await h.post("generic", generic(*(firing(n) for n in range(6))))
    await h.grace.healer.drain()
    await h.slack.wait_for(lambda: len(h.cards()) == 6, timeout=30)
    await h.grace.outbox.idle()
    posts = [c for c in h.slack.calls if c.method.startswith("chat.")]
    assert not [c for c in posts if c.response.get("error") == "ratelimited"]
    times = [c.at for c in posts]
    for i, start in enumerate(times):  # at most burst + rate·1 s in any one-second window
        assert sum(1 for t in times[i:] if t - start < 1.0) <= 2 + 5


async def test_metrics_count_incidents_by_the_states_they_entered(make_harness):
    h = await make_harness()
    await h.alert()
    card = await h.card()
    await h.click(card)
    await h.finished(card)
    await h.post("generic", generic(*(firing(n) for n in range(3))))
    await h.grace.healer.drain()
    text = await h.metrics()
    assert metric(text, "grace_incidents_total", state="open") == 4
    assert metric(text, "grace_incidents_total", state="needs_human") == 3
    for state in (
        "diagnosed",
        "awaiting_approval",
        "approved",
        "executing",
        "verifying",
        "resolved",
    ):
        assert metric(text, "grace_incidents_total", state=state) == 1, state
    assert metric(text, "grace_alerts_received_total", source="slack") == 1
    assert metric(text, "grace_slack_requests_total", method="chat.update", outcome="ok") >= 1
