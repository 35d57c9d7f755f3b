"""Durable before acknowledged: what Slack delivered survives a death right after the 200.

GRACE's death is simulated at the one moment that matters: the delivery is
committed and Slack has its answer, but the work after the answer never runs
(the inbox's handling is dropped, as a SIGKILL would drop it). A new GRACE on
the same database must then do that work, once. tests/e2e/test_crash.py kills
real processes.
"""

from __future__ import annotations

import json
import urllib.parse

from bot.app import build
from bot.demo import APPROVER, CHANNEL
from bot.ids import ActionId
from engine.models import IncidentState

S = IncidentState


def dies_after_answering(h) -> None:
    """From now on, every accepted delivery is committed and answered, never handled."""
    h.grace.inbox._spawn = lambda work: work.close()


async def restart(h) -> None:
    await h.grace.stop()
    h.grace = await build(h.grace.settings)
    await h.grace.start()
    h.slack.connect(f"{h.grace.url}/slack/events")


async def test_an_alert_answered_then_lost_is_handled_at_the_next_start(make_harness):
    h = await make_harness()
    dies_after_answering(h)
    delivery = await h.alert()
    assert delivery.status == 200
    await h.grace.healer.drain()
    assert await h.incidents() == [] and h.cards() == []

    await restart(h)

    card = await h.card()
    [incident] = await h.incidents()
    assert incident.state is S.AWAITING_APPROVAL
    # Slack's retry of the same event, after the restart, changes nothing.
    await h.slack.redeliver(delivery)
    await h.grace.healer.drain()
    assert [i.id for i in await h.incidents()] == [incident.id]
    assert [c.ts for c in h.cards()] == [card.ts]


async def test_an_approval_answered_then_lost_still_runs_once(make_harness):
    h = await make_harness()
    await h.alert()
    card = await h.card()
    await h.grace.healer.drain()
    dies_after_answering(h)
    click = await h.click(card)
    assert click.status == 200
    await h.grace.healer.drain()
    [waiting] = await h.incidents()
    assert waiting.state is S.AWAITING_APPROVAL  # nothing ran before the "death"

    await restart(h)

    incident = await h.finished(card)
    assert incident.state is S.RESOLVED
    await h.slack.redeliver(click)  # Slack retrying the click: already handled
    await h.grace.healer.drain()
    await h.grace.outbox.idle()
    assert sum("Approved by" in t for t in h.thread(card)) == 1


async def test_a_command_answered_then_lost_is_carried_out_and_answered(make_harness):
    lead = "U0LEAD"
    h = await make_harness(admins=[lead])
    dies_after_answering(h)
    typed = await h.slack.slash_command("pause db migration", user=lead, channel=CHANNEL)
    assert typed.status == 200
    await h.grace.healer.drain()
    assert await h.grace.store.paused() is None

    await restart(h)

    await h.slack.wait_for(
        lambda: any("GRACE is paused" in m.text for m in h.slack.ephemerals(lead))
    )
    pause = await h.grace.store.paused()
    assert pause is not None and pause.by == lead and pause.reason == "db migration"


async def test_a_rejection_answered_then_lost_is_recorded_at_the_next_start(make_harness):
    h = await make_harness()
    await h.alert()
    card = await h.card()
    await h.grace.healer.drain()
    await h.click(card, action=ActionId.REJECT)
    view = await h.slack.wait_for(lambda: h.slack.views[-1] if h.slack.views else None)
    dies_after_answering(h)
    block = next(b for b in view["blocks"] if b.get("type") == "input")
    submitted = await h.slack.submit_view(
        view["id"],
        user=APPROVER,
        values={block["block_id"]: {block["element"]["action_id"]: "wrong database"}},
    )
    assert submitted.status == 200

    await restart(h)

    await h.slack.wait_for(lambda: any("wrong database" in t for t in h.thread(card)))
    [incident] = await h.incidents()
    assert incident.state is S.REJECTED and incident.reason == "wrong database"
    body = dict(urllib.parse.parse_qsl(submitted.request_body))
    assert json.loads(body["payload"])["type"] == "view_submission"
