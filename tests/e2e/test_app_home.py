"""App Home over real HTTP with signed requests: what each person sees on it, decisions
and the kill switch from it, and republishing within Slack's views.publish limit."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from bot.app import build
from bot.demo import APPROVER, CHANNEL, MONITOR, bloat_wal, delivering, demo_settings
from bot.devslack import DevSlack, Message
from bot.home_publisher import BURST, RATE
from bot.ids import ActionId, BlockId, CallbackId, HomeView, RejectForm
from bot.settings import Approvers
from engine.models import Decision, IncidentState
from tests.e2e.conftest import Harness, MakeHarness

S = IncidentState
ADMIN = "U0LEAD"
STRANGER = "U0STRANGER"


async def harness(make_harness: MakeHarness, **overrides: Any) -> Harness:
    h = await make_harness(admins=[ADMIN], **overrides)
    h.slack.users.update({ADMIN: "lead", STRANGER: "stranger"})
    return h


async def settled(h: Harness) -> None:
    await h.grace.healer.drain()
    await h.grace.outbox.idle()


async def awaiting(h: Harness) -> tuple[Message, Any]:
    await h.alert()
    card = await h.card()
    await settled(h)
    incident = await h.grace.store.incident_for_card(CHANNEL, card.ts)
    assert incident.state is S.AWAITING_APPROVAL
    return card, incident


async def home_of(h: Harness, user: str, shows: str = "GRACE") -> str:
    """`user`'s Home as they read it, once it shows `shows`."""
    await h.slack.wait_for(lambda: shows in h.slack.home.render(user))
    return h.slack.home.render(user)


async def opened(h: Harness, user: str, shows: str = "GRACE") -> str:
    delivery = await h.slack.home.open(user)
    assert delivery.status == 200 and delivery.elapsed < 3
    return await home_of(h, user, shows)


def actions(h: Harness, user: str) -> dict[str, list[dict[str, Any]]]:
    """The Home's buttons, by block."""
    blocks = h.slack.homes[user]["blocks"]
    return {b["block_id"]: b["elements"] for b in blocks if b["type"] == "actions"}


def decision_of(card: Message) -> list[dict[str, Any]]:
    [block] = [b for b in card.blocks if b.get("block_id") == BlockId.DECISION]
    return block["elements"]


def publishes(h: Harness, user: str | None = None) -> list[Any]:
    return [
        c
        for c in h.slack.calls
        if c.method == "views.publish" and user in (None, c.args.get("user_id"))
    ]


# ---------------------------------------------------------------- what each person sees


async def test_an_approver_sees_the_waiting_approval_with_the_cards_own_buttons(make_harness):
    h = await harness(make_harness)
    card, incident = await awaiting(h)

    home = await opened(h, APPROVER, "Waiting for your approval:* 1")
    assert f"#{incident.id}" in home and "Expires" in home
    buttons = actions(h, APPROVER)[f"{BlockId.HOME_DECISION}.{incident.id}"]
    on_card = decision_of(h.slack.message(CHANNEL, card.ts))
    same = ("action_id", "value", "text", "style")
    assert [{k: b.get(k) for k in same} for b in buttons] == [
        {k: b.get(k) for k in same} for b in on_card
    ]
    assert [b["action_id"] for b in buttons] == [
        ActionId.APPROVE,
        ActionId.REJECT,
        ActionId.DRY_RUN,
    ]
    assert f'"plan": "{incident.plan.hash}"' in buttons[0]["value"]
    assert "Open incidents:* 1" in home and "Awaiting approval" in home
    assert "This week" in home and "*Opened*\n1" in home
    assert BlockId.HOME_SWITCH not in actions(h, APPROVER), "the kill switch is for admins"
    view = h.slack.homes[APPROVER]
    assert HomeView.decode(view["private_metadata"]).channel == h.slack.home.channel(APPROVER)


async def test_someone_who_may_not_approve_sees_no_approval_to_give(make_harness):
    h = await harness(make_harness)
    _, incident = await awaiting(h)

    home = await opened(h, MONITOR, "Open incidents:* 1")
    assert "Waiting for your approval:* nothing" in home
    assert f"#{incident.id}" in home
    assert actions(h, MONITOR) == {}


async def test_a_member_of_an_approver_group_sees_the_approval(make_harness):
    h = await harness(
        make_harness,
        usergroups={"S0SRE": [MONITOR]},
        approvers=Approvers(tier2=["S0SRE"]),
    )
    _, incident = await awaiting(h)
    await opened(h, MONITOR, "Waiting for your approval:* 1")
    assert f"{BlockId.HOME_DECISION}.{incident.id}" in actions(h, MONITOR)
    await opened(h, APPROVER, "Open incidents:* 1")
    assert "Waiting for your approval:* nothing" in h.slack.home.render(APPROVER)


async def test_an_admin_sees_pause_and_then_resume_behind_a_confirm_dialog(make_harness):
    h = await harness(make_harness)
    home = await opened(h, ADMIN, "GRACE is running")
    [pause] = actions(h, ADMIN)[BlockId.HOME_SWITCH]
    assert (pause["action_id"], "confirm" in pause) == (ActionId.PAUSE, False)
    assert "Waiting for your approval:* nothing" in home

    known = len(h.slack.views)
    clicked = await h.slack.home.click(ADMIN, ActionId.PAUSE)
    assert clicked.status == 200 and clicked.elapsed < 3
    form = await h.slack.wait_for(lambda: h.slack.views[known:] and h.slack.views[known])
    assert form["callback_id"] == CallbackId.PAUSE
    values = {BlockId.PAUSE_REASON: {ActionId.PAUSE_REASON: "failover <!channel> & co"}}
    submitted = await h.slack.submit_view(form["id"], user=ADMIN, values=values)
    assert submitted.status == 200 and submitted.body == ""

    home = await home_of(h, ADMIN, "GRACE is paused")
    assert "GRACE is paused: nothing new will run" in home, "the answer is on the Home"
    assert "failover <!channel> & co" in home  # escaped in the view, read as written
    assert "<!channel>" not in json.dumps(h.slack.homes[ADMIN])
    pause = await h.grace.store.paused()
    assert (pause.by, pause.reason) == (ADMIN, "failover <!channel> & co")
    [resume] = actions(h, ADMIN)[BlockId.HOME_SWITCH]
    assert resume["action_id"] == ActionId.RESUME
    assert resume["confirm"]["confirm"]["text"] == "Resume"

    assert await h.slack.home.click(ADMIN, ActionId.RESUME, confirm=False) is None
    await settled(h)
    assert await h.grace.store.paused() is not None, "a cancelled dialog sends nothing"
    await h.slack.home.click(ADMIN, ActionId.RESUME, confirm=True)
    home = await home_of(h, ADMIN, "GRACE is running")
    assert "GRACE resumed" in home
    assert await h.grace.store.paused() is None
    actions_done = [e.action for e in await h.grace.store.audit_entries()]
    assert actions_done.count("grace.paused") == actions_done.count("grace.resumed") == 1


# ---------------------------------------------------------------- deciding from the Home


async def test_approve_from_home_heals_exactly_as_the_card_would(make_harness):
    h = await harness(make_harness)
    card, incident = await awaiting(h)
    await opened(h, APPROVER, "Waiting for your approval:* 1")

    block = f"{BlockId.HOME_DECISION}.{incident.id}"
    clicked = await h.slack.home.click(APPROVER, ActionId.APPROVE, block_id=block)
    assert clicked.status == 200 and clicked.elapsed < 3
    healed = await h.finished(card)

    assert healed.state is S.RESOLVED
    [approval] = await h.grace.store.approvals(incident.id)
    assert (approval.user, approval.decision, approval.plan_hash) == (
        APPROVER,
        Decision.APPROVE,
        incident.plan.hash,
    )
    assert any(t.startswith(":+1: Approved by <@U0ONCALL>") for t in h.thread(card))
    final = h.slack.render_message(h.slack.message(CHANNEL, card.ts))
    assert "Approved by" in final and "@oncall" in final and "Resolved" in final
    home = await home_of(h, APPROVER, "*Healed*\n1")
    assert "Waiting for your approval:* nothing" in home and "Open incidents:* none" in home
    assert "*Approvals given*\n1" in home
    assert h.slack.ephemerals(APPROVER) == [], "nothing to answer: the card and Home say it"
    assert 'grace_slack_requests_total{method="views.publish",outcome="ok"}' in await h.metrics()


async def test_a_refused_click_on_the_home_is_answered_on_the_home(make_harness):
    h = await harness(make_harness)
    card, incident = await awaiting(h)
    await opened(h, STRANGER, "Open incidents:* 1")
    [approve] = [b for b in decision_of(card) if b["action_id"] == ActionId.APPROVE]

    # Not shown to them, but a click that says it is from their Home is heard.
    forged = {"action_id": ActionId.APPROVE, "block_id": "x", "value": approve["value"]}
    clicked = await h.slack.home.act(STRANGER, {**forged, "type": "button"})
    assert clicked.status == 200

    home = await home_of(h, STRANGER, "GRACE's answer")
    assert "not on the tier 2 approver list" in home
    await settled(h)
    assert await h.grace.store.approvals(incident.id) == []
    assert (await h.grace.store.get_incident(incident.id)).state is S.AWAITING_APPROVAL
    assert h.slack.ephemerals(STRANGER) == []
    # Opening the Home again is a fresh look: the answer is gone.
    await h.slack.home.open(STRANGER)
    await h.slack.wait_for(lambda: "GRACE's answer" not in h.slack.home.render(STRANGER))


async def test_reject_from_home_asks_why_and_dry_run_answers_on_the_home(make_harness):
    h = await harness(make_harness)
    card, incident = await awaiting(h)
    await opened(h, APPROVER, "Waiting for your approval:* 1")
    block = f"{BlockId.HOME_DECISION}.{incident.id}"

    await h.slack.home.click(APPROVER, ActionId.DRY_RUN, block_id=block)
    home = await home_of(h, APPROVER, "GRACE's answer")
    assert "Dry run: nothing was touched" in home and incident.plan.hash in home
    assert (await h.grace.store.get_incident(incident.id)).state is S.AWAITING_APPROVAL

    known = len(h.slack.views)
    await h.slack.home.click(APPROVER, ActionId.REJECT, block_id=block)
    form = await h.slack.wait_for(lambda: h.slack.views[known:] and h.slack.views[known])
    home_channel = h.slack.home.channel(APPROVER)
    assert RejectForm.decode(form["private_metadata"]) == RejectForm(
        incident.id, incident.plan.hash, home_channel
    )
    values = {BlockId.REJECT_REASON: {ActionId.REJECT_REASON: "a migration runs"}}
    await h.slack.submit_view(form["id"], user=APPROVER, values=values)
    await h.slack.wait_for(lambda: any("Rejected by" in t for t in h.thread(card)))
    await settled(h)
    assert (await h.grace.store.get_incident(incident.id)).reason == "a migration runs"
    await home_of(h, APPROVER, "Waiting for your approval:* nothing")


async def test_a_forged_pause_or_resume_is_refused_and_answered(make_harness):
    h = await harness(make_harness)
    await opened(h, STRANGER)
    assert actions(h, STRANGER) == {}

    await h.slack.home.act(STRANGER, {"action_id": ActionId.PAUSE, "type": "button"})
    home = await home_of(h, STRANGER, "Only GRACE's admins may pause it.")
    assert "GRACE is running" in home and not h.slack.views, "no form was opened"
    await h.slack.home.act(STRANGER, {"action_id": ActionId.RESUME, "type": "button"})
    await home_of(h, STRANGER, "Only GRACE's admins may resume it.")
    await settled(h)
    assert await h.grace.store.paused() is None
    refused = [e.action for e in await h.grace.store.audit_entries() if e.actor == STRANGER]
    assert refused == ["pause.refused", "resume.refused"]


# ---------------------------------------------------------------- republishing


async def test_homes_follow_a_storm_coalesced_within_the_publish_limit(make_harness):
    h = await harness(make_harness)
    viewers = [APPROVER, MONITOR, ADMIN, STRANGER]
    for user in viewers:
        await opened(h, user, "Open incidents:* none")
    before = len(publishes(h))

    storm = 12
    for n in range(storm):
        await h.integration_alert(f"[FIRING:1] HostDown instance=web-{n} severity=critical")
    for user in viewers:
        await home_of(h, user, f"Open incidents:* {storm}")
    await settled(h)

    calls = publishes(h)[before:]
    assert all(c.response["ok"] for c in calls), "never over views.publish's limit"
    # Each incident moved a card at least twice (posted, then needs a human): a publish
    # per change would be that many per viewer; coalesced, a few rounds serve them all.
    changes = 2 * storm
    assert len(calls) < changes * len(viewers) / 3
    window = [c.at for c in publishes(h)]
    assert all(
        sum(1 for t in window if start <= t < start + 60) <= BURST + 60 * RATE for start in window
    )


async def test_a_restart_republishes_the_homes_people_opened(make_harness):
    h = await harness(make_harness)
    await opened(h, APPROVER, "Open incidents:* none")
    await h.grace.stop()

    # GRACE comes back; nobody opens the Home again, yet theirs is published again.
    h.grace = await build(h.grace.settings)
    await h.grace.start()
    h.slack.connect(f"{h.grace.url}/slack/events")
    seen = len(publishes(h, APPROVER))
    await h.slack.wait_for(lambda: len(publishes(h, APPROVER)) > seen)
    await h.alert()
    await home_of(h, APPROVER, "Waiting for your approval:* 1")


async def test_the_home_works_the_same_over_socket_mode(tmp_path: Path):
    """Opening the Home, a click on it and its answer all travel over the WebSocket."""
    app_db = tmp_path / "app" / "app.db"
    owner = bloat_wal(app_db, rows=5000)
    token = f"xoxb-test-{secrets.token_hex(4)}"
    slack = DevSlack(
        token=token,
        signing_secret=secrets.token_hex(16),
        channels={CHANNEL: "alerts"},
        users={APPROVER: "oncall", MONITOR: "monitoring"},
    )
    await slack.start()
    settings = demo_settings(tmp_path, slack, token, "", app_db.parent, slack.use_socket_mode())
    grace = await build(settings.model_copy(update={"slack_rate": 500.0}))
    try:
        await grace.start()
        async with delivering(grace, slack):
            h = Harness(slack, grace, app_db, owner)
            card, incident = await awaiting(h)
            opening = await slack.home.open(APPROVER)
            assert opening.envelope is not None and opening.envelope["type"] == "events_api"
            await home_of(h, APPROVER, "Waiting for your approval:* 1")
            block = f"{BlockId.HOME_DECISION}.{incident.id}"
            click = await slack.home.click(APPROVER, ActionId.APPROVE, block_id=block)
            assert click is not None and click.status == 200 and click.elapsed < 3
            assert click.envelope is not None and click.envelope["type"] == "interactive"
            assert (await h.finished(card)).state is S.RESOLVED
            await home_of(h, APPROVER, "*Healed*\n1")
    finally:
        await grace.stop()
        await slack.stop()
        owner.close()
