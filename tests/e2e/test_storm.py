"""A storm people can read: 500 new incidents in one channel through the real webhook,
Slack's per-channel limit enforced by the stand-in, every incident visible within 10 s."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time

import aiohttp

from bot.demo import CHANNEL, MONITOR
from bot.devslack import Message
from tests.e2e.conftest import WEBHOOK_TOKEN, Harness

STORM = 500
BOUND_S = 10.0  # the bound: a timing that is the behaviour asked for
RATE, BURST = 1.0, 3  # Slack's per-channel limit, as GRACE and the stand-in keep it


def webhook(k: int) -> bytes:
    """One Alertmanager v4 notification, one alert in a group of its own."""
    labels = {"alertname": f"StormAlert{k % 5}", "instance": f"host-{k}", "severity": "warning"}
    return json.dumps(
        {
            "version": "4",
            "groupKey": f'{{}}:{{instance="host-{k}"}}',
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "grace",
            "groupLabels": {"instance": f"host-{k}"},
            "commonLabels": labels,
            "commonAnnotations": {"summary": f"host-{k} is unwell"},
            "externalURL": "http://alertmanager:9093",
            "alerts": [
                {
                    "status": "firing",
                    "labels": labels,
                    "annotations": {"summary": f"host-{k} is unwell"},
                    "startsAt": "2026-12-07T03:00:00Z",
                    "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://prometheus:9090/graph",
                    "fingerprint": f"{k:016x}",
                }
            ],
        }
    ).encode()


async def send_storm(h: Harness) -> None:
    url = f"{h.grace.url}/alerts/alertmanager"
    headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}", "Content-Type": "application/json"}
    bodies = iter(webhook(k) for k in range(STORM))

    async def sender(session: aiohttp.ClientSession) -> None:
        for body in bodies:
            async with session.post(url, data=body, headers=headers) as resp:
                assert resp.status == 200, await resp.text()

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(sender(session) for _ in range(16)))


def visible(h: Harness) -> set[int]:
    """Incidents Slack shows now, read from Slack: a card of their own or a rollup line."""
    shown: set[int] = set()
    for message in h.slack.messages(CHANNEL):
        text = h.slack.render_message(message)
        if message.text.startswith("Alert storm"):
            shown |= {int(n) for n in re.findall(r"^• #(\d+) ", text, re.MULTILINE)}
        elif message.blocks:
            shown |= {int(n) for n in re.findall(r"^Incident #(\d+) ·", text, re.MULTILINE)}
    return shown


def rollups(h: Harness) -> list[Message]:
    return [m for m in h.slack.messages(CHANNEL) if m.text.startswith("Alert storm")]


async def test_five_hundred_new_incidents_are_all_visible_within_ten_seconds(make_harness):
    h = await make_harness(slack_rate=RATE, slack_burst=BURST)
    h.slack.post_rate, h.slack.post_burst = RATE, BURST
    started = time.monotonic()
    await send_storm(h)
    incidents = await h.incidents()
    assert len(incidents) == STORM
    ids = {i.id for i in incidents}
    left = BOUND_S - (time.monotonic() - started)
    await h.slack.wait_for(lambda: visible(h) == ids, timeout=left)
    took = time.monotonic() - started

    [rollup] = rollups(h)
    cards = [m for m in h.cards() if m is not rollup]
    assert len(cards) <= 10, "a handful of cards went out before the storm was seen"
    writes = [c for c in h.slack.calls if c.method in ("chat.postMessage", "chat.update")]
    assert not [c for c in h.slack.calls if c.response.get("error") == "ratelimited"]
    times = sorted(c.at for c in writes)
    for i, start in enumerate(times):  # never more than Slack's burst plus its rate
        assert sum(1 for t in times[i:] if t - start < 1.0) <= BURST + RATE
    print(f"all {STORM} incidents visible after {took:.1f} s, {len(cards)} cards")


async def test_show_gives_an_incident_its_card_and_its_story(make_harness):
    h = await make_harness(slack_rate=RATE, slack_burst=BURST)
    h.slack.post_rate, h.slack.post_burst = RATE, BURST
    await send_storm(h)
    rollup = await h.slack.wait_for(lambda: next(iter(rollups(h)), None), timeout=10)
    incident = max(await h.incidents(), key=lambda i: i.id)  # the last: in the rollup
    await h.slack.wait_for(
        lambda: f"• #{incident.id} " in h.slack.render_message(h.slack.message(CHANNEL, rollup.ts))
    )
    # Two people pick it from the same rollup: one card, and the second is told so.
    picked, again = await asyncio.gather(
        h.slack.pick(CHANNEL, rollup.ts, str(incident.id), user="U0ONCALL"),
        h.slack.pick(CHANNEL, rollup.ts, str(incident.id), user=MONITOR),
    )
    assert picked.status == again.status == 200 and max(picked.elapsed, again.elapsed) < 3
    card = await h.slack.wait_for(
        lambda: next((m for m in h.cards() if f"Incident #{incident.id}" in str(m.blocks)), None),
        timeout=30,
    )
    story = await h.slack.wait_for(lambda: h.thread(card), timeout=30)
    assert "*The story so far*" in story[0] and f"Incident #{incident.id}" in story[0]
    await h.slack.wait_for(
        lambda: (
            f"#{incident.id} :raising_hand: Needs a human"
            in h.slack.render_message(h.slack.message(CHANNEL, rollup.ts))
            and "its own card below" in h.slack.render_message(h.slack.message(CHANNEL, rollup.ts))
        ),
        timeout=30,
    )
    told = await h.slack.wait_for(lambda: h.slack.ephemerals(MONITOR), timeout=30)
    assert f"Incident #{incident.id} has its own card already" in told[0].text
    assert sum(f"Incident #{incident.id} ·" in h.slack.render_message(m) for m in h.cards()) == 1
    assert f'"{incident.id}"' not in json.dumps(h.slack.message(CHANNEL, rollup.ts).blocks)


async def test_in_a_storm_an_approval_still_gets_its_own_card_ahead_of_the_chatter(make_harness):
    h = await make_harness(slack_rate=RATE, slack_burst=BURST)
    h.slack.post_rate, h.slack.post_burst = RATE, BURST
    await send_storm(h)
    [rollup] = await h.slack.wait_for(lambda: rollups(h), timeout=10)
    await h.slack.wait_for(lambda: "• #500 " in h.slack.render_message(rollup), timeout=10)
    # Five people ask for cards: five cards and five stories queue at Slack's pace.
    await asyncio.gather(
        *(h.slack.pick(CHANNEL, rollup.ts, str(k), user=MONITOR) for k in range(490, 495))
    )
    await h.alert()  # the WAL alert: a tier 2 plan, waiting for an approver
    await h.grace.healer.drain()
    [waiting] = [i for i in await h.incidents() if i.plan is not None]

    def its_card() -> Message | None:
        for message in h.slack.messages(CHANNEL):
            for m in (message, *h.slack.thread(CHANNEL, message.ts)):
                if m.blocks and f"Incident #{waiting.id} ·" in h.slack.render_message(m):
                    return m
        return None

    card = await h.slack.wait_for(its_card, timeout=10)
    assert "[Approve]" in h.slack.render_message(card)
    assert f"• #{waiting.id} " not in "".join(h.slack.render_message(m) for m in rollups(h))
    # Writes queued before the approval card went out after it: someone must act first.
    with sqlite3.connect(h.grace.settings.db) as db:
        [(card_id, card_sent)] = db.execute(
            "SELECT id, sent_at FROM outbox WHERE kind = 'post_card' AND incident_id = ?",
            (waiting.id,),
        ).fetchall()
        overtaken = db.execute(
            "SELECT kind FROM outbox WHERE kind IN ('post_card', 'thread') AND id < ?"
            " AND (sent_at IS NULL OR sent_at > ?)",
            (card_id, card_sent),
        ).fetchall()
    assert {"post_card", "thread"} <= {kind for (kind,) in overtaken}
