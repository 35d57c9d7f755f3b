"""Governance over real HTTP with signed requests: rejections that say why, dry
runs that touch nothing, and `/grace` to ask for a heal by name."""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from pathlib import Path

import pytest

from bot.app import build
from bot.demo import APPROVER, CHANNEL, wal_size
from bot.devslack import Delivery, Message
from bot.ids import ActionId, BlockId, CallbackId, RejectForm
from bot.listeners.modals import BLANK, NOT_OURS
from bot.modals import REASON_MAX
from engine.models import Decision, IncidentState
from tests.e2e.conftest import OTHER_CHANNEL, Harness

S = IncidentState
STRANGER = "U0STRANGER"
HOSTILE_REASON = "  <!channel> a migration runs until 18:00 & <https://evil.example|see>  \n"


def files_digest(*paths: Path) -> dict[str, str | None]:
    """Byte-exact fingerprints of files (None when absent)."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None for p in paths
    }


def app_files(h: Harness) -> dict[str, str | None]:
    return files_digest(h.app_db, h.app_db.with_name(h.app_db.name + "-wal"))


async def grace_counts(h: Harness) -> dict[str, int]:
    incidents = await h.incidents()
    store = h.grace.store
    return {
        "incidents": len(incidents),
        "actions": sum([len(await store.actions(i.id)) for i in incidents]),
        "snapshots": sum([len(await store.snapshots(i.id)) for i in incidents]),
        "approvals": sum([len(await store.approvals(i.id)) for i in incidents]),
        "audit": len(await store.audit_entries()),
    }


async def settled(h: Harness) -> None:
    await h.grace.healer.drain()
    await h.grace.outbox.idle()


async def open_form(h: Harness, card: Message, user: str = APPROVER) -> dict:
    """Click Reject and return the modal it opened."""
    known = len(h.slack.views)
    click = await h.click(card, user=user, action=ActionId.REJECT)
    assert click.status == 200 and click.elapsed < 3
    return await h.slack.wait_for(
        lambda: h.slack.views[known] if len(h.slack.views) > known else None
    )


async def submit(h: Harness, form: dict, reason: str, user: str = APPROVER) -> Delivery:
    values = {BlockId.REJECT_REASON: {ActionId.REJECT_REASON: reason}}
    delivery = await h.slack.submit_view(form["id"], user=user, values=values)
    assert delivery.status == 200 and delivery.elapsed < 3
    return delivery


def errors_of(delivery: Delivery) -> dict[str, str]:
    answer = json.loads(delivery.body)
    assert answer["response_action"] == "errors"
    return answer["errors"]


def told(h: Harness, user: str) -> list[str]:
    return [m.text for m in h.slack.ephemerals(user)]


async def awaiting(h: Harness) -> tuple[Message, object]:
    await h.alert()
    card = await h.card()
    await settled(h)
    incident = await h.grace.store.incident_for_card(CHANNEL, card.ts)
    assert incident.state is S.AWAITING_APPROVAL
    return card, incident


# ---------------------------------------------------------------- Reject asks why


async def test_reject_asks_why_and_the_reason_is_on_every_record(make_harness):
    h = await make_harness()
    wal_before = wal_size(h.app_db)
    card, incident = await awaiting(h)

    form = await open_form(h, card)
    assert form["callback_id"] == CallbackId.REJECT
    assert RejectForm.decode(form["private_metadata"]) == RejectForm(
        incident.id, incident.plan.hash, CHANNEL
    )
    [reason_input] = [b for b in form["blocks"] if b["type"] == "input"]
    assert reason_input["block_id"] == BlockId.REJECT_REASON
    assert not reason_input.get("optional", False)
    assert reason_input["element"]["multiline"] is True
    assert reason_input["element"]["max_length"] == REASON_MAX
    # Opening the form decides nothing.
    await settled(h)
    assert (await h.grace.store.get_incident(incident.id)).state is S.AWAITING_APPROVAL
    assert await h.grace.store.approvals(incident.id) == []

    closed = await submit(h, form, HOSTILE_REASON)
    assert closed.body == "", "a plain ack closes the modal"
    await h.slack.wait_for(lambda: any("Rejected by" in t for t in h.thread(card)))
    await settled(h)

    reason = HOSTILE_REASON.strip()
    rejected = await h.grace.store.get_incident(incident.id)
    assert rejected.state is S.REJECTED and rejected.reason == reason
    [approval] = await h.grace.store.approvals(incident.id)
    assert (approval.user, approval.decision, approval.reason) == (
        APPROVER,
        Decision.REJECT,
        reason,
    )
    assert approval.plan_hash == incident.plan.hash
    entries = await h.grace.store.audit_entries(incident.id)
    [decided] = [e for e in entries if e.action == "approval.reject"]
    assert decided.actor == APPROVER and decided.detail["reason"] == reason
    [moved] = [e for e in entries if e.action == "incident.rejected"]
    assert moved.actor == APPROVER and moved.detail["reason"] == reason
    assert (await h.grace.store.verify_audit()).ok

    [said] = [t for t in h.thread(card) if "Rejected by" in t]
    assert said == (
        ":no_entry_sign: Rejected by <@U0ONCALL>: &lt;!channel&gt; a migration runs until 18:00 "
        "&amp; &lt;https://evil.example|see&gt;"
    )
    final = h.slack.message(CHANNEL, card.ts)
    shown = h.slack.render_message(final)
    assert "Rejected" in shown and "*Why:* <!channel> a migration" in shown
    assert "<!channel>" not in json.dumps(final.blocks)
    assert not [b for b in final.blocks if b["type"] == "actions"]
    assert wal_size(h.app_db) == wal_before


@pytest.mark.parametrize("blank", ["", "   ", " \n\t \n"])
async def test_a_blank_reason_keeps_the_modal_open_and_records_nothing(make_harness, blank):
    h = await make_harness()
    card, incident = await awaiting(h)
    form = await open_form(h, card)
    before = await grace_counts(h)

    refused = await submit(h, form, blank)
    assert errors_of(refused) == {BlockId.REJECT_REASON: BLANK}
    await settled(h)
    assert await grace_counts(h) == before
    assert (await h.grace.store.get_incident(incident.id)).state is S.AWAITING_APPROVAL
    assert not any("Rejected" in t for t in h.thread(card))

    # The modal stayed open: the same form, with a reason, rejects.
    await submit(h, form, "disk is being replaced")
    await h.slack.wait_for(lambda: any("Rejected by" in t for t in h.thread(card)))
    await settled(h)
    assert (await h.grace.store.get_incident(incident.id)).reason == "disk is being replaced"


async def test_an_overlong_reason_keeps_the_modal_open(make_harness):
    h = await make_harness()
    card, incident = await awaiting(h)
    form = await open_form(h, card)
    refused = await submit(h, form, "x" * (REASON_MAX + 1))
    assert str(REASON_MAX + 1) in errors_of(refused)[BlockId.REJECT_REASON]
    await settled(h)
    assert await h.grace.store.approvals(incident.id) == []


@pytest.mark.parametrize(
    "metadata",
    [
        "",
        "not json",
        "[1, 2]",
        '{"incident": 1, "plan": "abc"}',
        '{"incident": "1", "plan": "abc", "channel": "C0ALERTS"}',
        '{"incident": 1, "plan": "abc", "channel": "<!channel>"}',
        '{"incident": 1, "plan": "<@U0BOSS>", "channel": "C0ALERTS"}',
        '{"incident": -1, "plan": "abc", "channel": "C0ALERTS"}',
    ],
)
async def test_a_forged_form_is_refused_and_records_nothing(make_harness, metadata):
    h = await make_harness()
    card, incident = await awaiting(h)
    form = await open_form(h, card)
    before = await grace_counts(h)
    form["private_metadata"] = metadata  # the stand-in submits the view as stored

    refused = await submit(h, form, "looks legitimate")
    assert errors_of(refused) == {BlockId.REJECT_REASON: NOT_OURS}
    await settled(h)
    assert await grace_counts(h) == before
    assert (await h.grace.store.get_incident(incident.id)).state is S.AWAITING_APPROVAL


async def test_a_form_for_another_plan_is_refused_privately(make_harness):
    h = await make_harness()
    card, incident = await awaiting(h)
    form = await open_form(h, card)
    form["private_metadata"] = RejectForm(incident.id, "0" * 16, CHANNEL).encode()

    await submit(h, form, "stale")
    answer = await h.slack.wait_for(lambda: told(h, APPROVER))
    assert "The plan changed" in answer[0]
    await settled(h)
    assert await h.grace.store.approvals(incident.id) == []
    refused = [e for e in await h.grace.store.audit_entries() if e.action == "approval.refused"]
    assert refused[0].detail["decision"] == "reject"
    assert (await h.grace.store.get_incident(incident.id)).state is S.AWAITING_APPROVAL


async def test_a_second_form_for_a_rejected_incident_is_refused_privately(make_harness):
    h = await make_harness()
    card, incident = await awaiting(h)
    first, second = await open_form(h, card), await open_form(h, card)
    await submit(h, first, "first word")
    await h.slack.wait_for(lambda: any("Rejected by" in t for t in h.thread(card)))
    await settled(h)

    await submit(h, second, "second word")
    answer = await h.slack.wait_for(lambda: told(h, APPROVER))
    assert "already rejected" in answer[0]
    await settled(h)
    assert (await h.grace.store.get_incident(incident.id)).reason == "first word"
    assert len(await h.grace.store.approvals(incident.id)) == 1
    assert sum("Rejected by" in t for t in h.thread(card)) == 1


async def test_a_rejection_by_someone_not_allowed_is_refused_like_an_approval(make_harness):
    h = await make_harness()
    card, incident = await awaiting(h)
    form = await open_form(h, card, user=STRANGER)
    await submit(h, form, "I do not like it", user=STRANGER)

    answer = await h.slack.wait_for(lambda: told(h, STRANGER))
    assert "not on the tier 2 approver list" in answer[0]
    await settled(h)
    assert told(h, APPROVER) == []
    assert (await h.grace.store.get_incident(incident.id)).state is S.AWAITING_APPROVAL
    assert await h.grace.store.approvals(incident.id) == []
    [refused] = [e for e in await h.grace.store.audit_entries() if e.action == "approval.refused"]
    assert refused.actor == STRANGER and refused.detail["decision"] == "reject"
    assert not any("Rejected" in t for t in h.thread(card))


async def test_when_slack_will_not_open_the_form_the_clicker_is_told(make_harness):
    h = await make_harness()
    card, incident = await awaiting(h)
    h.slack.fail_next("views.open", "expired_trigger_id", status=200, retry_after=None)
    await h.click(card, action=ActionId.REJECT)

    answer = await h.slack.wait_for(lambda: told(h, APPROVER))
    assert "expired_trigger_id" in answer[0] and "nothing was rejected" in answer[0]
    await settled(h)
    assert h.slack.views == []
    assert (await h.grace.store.get_incident(incident.id)).state is S.AWAITING_APPROVAL


# ---------------------------------------------------------------- Dry run


async def test_dry_run_tells_only_the_clicker_and_touches_nothing(make_harness):
    h = await make_harness()
    card, incident = await awaiting(h)
    files_before, counts_before = app_files(h), await grace_counts(h)
    assert files_before["app.db-wal"] is not None
    channel_before = h.slack.transcript(CHANNEL)
    snapshot_dir = h.grace.settings.snapshots
    snapshots_before = sorted(snapshot_dir.rglob("*")) if snapshot_dir.exists() else []

    click = await h.click(card, user=STRANGER, action=ActionId.DRY_RUN)
    assert click.status == 200 and click.elapsed < 3
    [text] = await h.slack.wait_for(lambda: told(h, STRANGER))
    await settled(h)

    assert text.startswith(":test_tube: *Dry run: nothing was touched.*")
    for part in [
        f"*Target:* sqlite `{h.app_db.resolve()}`",
        "1. `wal_checkpoint` mode=TRUNCATE (deadline 60 s)",
        "*1. Snapshot:* a consistent copy of",
        "online backup API",
        "`wal_size_at_most` bytes=1048576",
        "`integrity_ok`",
        "`read_latency` repeat=20: may be at most 50% slower",
        "restores that snapshot if verification fails",
        f"Plan `{incident.plan.hash}`",
    ]:
        assert part in text, part
    # Only the clicker saw it; the channel, the card and the thread are as they were.
    assert [m.recipient for m in h.slack.ephemerals()] == [STRANGER]
    assert h.slack.transcript(CHANNEL) == channel_before
    # Nothing was touched: the target's bytes, GRACE's records, the snapshot folder.
    assert app_files(h) == files_before
    assert await grace_counts(h) == counts_before
    assert await h.grace.store.get_incident(incident.id) == incident
    assert (sorted(snapshot_dir.rglob("*")) if snapshot_dir.exists() else []) == snapshots_before

    # And the plan can still be approved and run as usual.
    await h.click(card)
    assert (await h.finished(card)).state is S.RESOLVED


async def test_a_forged_dry_run_button_is_answered_privately(make_harness):
    h = await make_harness()
    card, _ = await awaiting(h)
    click = await h.click(card, action=ActionId.DRY_RUN)
    await h.slack.wait_for(lambda: told(h, APPROVER))
    forged = click.request_body.replace("incident", "incidnt")
    assert (await h.slack.signed_post(forged, "application/x-www-form-urlencoded")).status == 200
    answers = await h.slack.wait_for(lambda: len(told(h, APPROVER)) == 2 and told(h, APPROVER))
    assert "not one of GRACE's" in answers[1]


# ---------------------------------------------------------------- /grace


def ack_text(delivery: Delivery) -> str:
    assert delivery.status == 200 and delivery.elapsed < 3
    answer = json.loads(delivery.body)
    assert answer.get("response_type") == "ephemeral"
    return answer["text"]


async def test_cloud_says_what_can_act_and_why_not(make_harness, tmp_path):
    h = await make_harness(snapshot_dir=tmp_path / "not-a-dir" / "x")
    (tmp_path / "not-a-dir").write_text("a file where a folder should be")

    await h.slack.slash_command("cloud", user=APPROVER, channel=CHANNEL)

    [answer] = await h.slack.wait_for(lambda: told(h, APPROVER))
    assert "`service` *unavailable*: no services are configured" in answer
    assert "`sqlite` *unavailable*: snapshot dir" in answer
    assert "`sqlite-wal-checkpoint`" in answer


async def test_playbooks_lists_id_title_tier_and_executor(make_harness):
    h = await make_harness()
    answer = ack_text(await h.slack.slash_command("playbooks", user=APPROVER, channel=CHANNEL))
    assert (
        "• `sqlite-wal-checkpoint`: Checkpoint the WAL · tier 2 (one approver) · "
        "executor `sqlite` · TARGET is its `db_path`"
    ) in answer
    assert len(h.grace.healer.catalog.playbooks) == answer.count("\n• ")


async def test_heal_opens_an_incident_in_the_channel_it_was_typed_in(make_harness):
    h = await make_harness()
    delivery = await h.slack.slash_command(
        f"heal sqlite-wal-checkpoint {h.app_db}", user=APPROVER, channel=OTHER_CHANNEL
    )
    assert delivery.status == 200 and delivery.elapsed < 3 and delivery.body == ""
    [answer] = await h.slack.wait_for(lambda: told(h, APPROVER))
    [incident] = await h.incidents()
    assert answer.startswith(f"Opened incident #{incident.id} (Checkpoint the WAL on `")
    assert "its card follows here" in answer and "Awaiting approval" in answer
    assert (incident.channel, incident.alert.source, incident.alert.reporter) == (
        OTHER_CHANNEL,
        "manual",
        APPROVER,
    )
    card = await h.slack.wait_for(
        lambda: next((m for m in h.slack.messages(OTHER_CHANNEL) if m.blocks), None)
    )
    assert h.slack.messages(CHANNEL) == []
    await h.slack.click(OTHER_CHANNEL, card.ts, ActionId.APPROVE, user=APPROVER)
    await h.slack.wait_for(
        lambda: any("Learned" in m.text for m in h.slack.thread(OTHER_CHANNEL, card.ts))
    )
    await settled(h)
    assert (await h.grace.store.get_incident(incident.id)).state is S.RESOLVED
    assert wal_size(h.app_db) == 0


async def test_heal_dry_run_answers_privately_and_touches_nothing(make_harness):
    h = await make_harness()
    files_before, counts_before = app_files(h), await grace_counts(h)
    delivery = await h.slack.slash_command(
        f"heal sqlite-wal-checkpoint {h.app_db} --dry-run", user=STRANGER, channel=CHANNEL
    )
    assert delivery.status == 200 and delivery.elapsed < 3
    [answer] = await h.slack.wait_for(lambda: told(h, STRANGER))
    await settled(h)
    assert answer.startswith(":test_tube: *Dry run: nothing was touched.*")
    assert f"`{h.app_db.resolve()}`" in answer and "restores that snapshot" in answer
    assert [m.recipient for m in h.slack.ephemerals()] == [STRANGER]
    assert h.slack.messages(CHANNEL) == []
    assert app_files(h) == files_before
    assert await grace_counts(h) == counts_before == dict.fromkeys(counts_before, 0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("heal <!channel> /x.db", "There is no playbook `&lt;!channel&gt;`"),
        ("heal sqlite-wal-checkpoint /etc/passwd", "not in the sqlite allowlist"),
        ("heal sqlite-wal-checkpoint <@U0BOSS> --dry-run", "&lt;@U0BOSS&gt;"),
    ],
)
async def test_heal_refusals_are_private_escaped_and_store_nothing(make_harness, text, expected):
    h = await make_harness()
    await h.slack.slash_command(text, user=APPROVER, channel=CHANNEL)
    [answer] = await h.slack.wait_for(lambda: told(h, APPROVER))
    await settled(h)
    assert expected in answer
    assert "<!channel>" not in answer and "<@U0BOSS>" not in answer
    assert await h.incidents() == []
    assert h.slack.messages(CHANNEL) == []


async def test_slack_escaped_command_text_is_read_as_typed(make_harness):
    h = await make_harness()
    # Slack sends `&`, `<` and `>` in command text as entities.
    await h.slack.slash_command("heal &lt;!here&gt; x --dry-run", user=APPROVER, channel=CHANNEL)
    [answer] = await h.slack.wait_for(lambda: told(h, APPROVER))
    assert "There is no playbook `&lt;!here&gt;`" in answer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("frobnicate", "Unknown subcommand `frobnicate`"),
        ("<!channel> now", "Unknown subcommand `&lt;!channel&gt;`"),
        ("heal", "`heal` is missing PLAYBOOK and TARGET"),
        ("heal sqlite-wal-checkpoint", "`heal` is missing TARGET"),
        ("heal a b c", "`heal` takes two arguments, got 3: `a`, `b`, `c`"),
        ("heal a b --force", "Unknown option `--force` for `heal`"),
        ("playbooks all", "`/grace playbooks` takes no arguments; got `all`"),
    ],
)
async def test_wrong_commands_get_a_usage_error_naming_the_problem(make_harness, text, expected):
    h = await make_harness()
    answer = ack_text(await h.slack.slash_command(text, user=APPROVER, channel=CHANNEL))
    assert expected in answer
    assert "<!channel>" not in answer
    await settled(h)
    assert await h.incidents() == []
    assert h.slack.ephemerals() == []


async def test_heal_where_grace_cannot_post_is_refused(make_harness):
    h = await make_harness()
    typed = await h.slack.slash_command(
        f"heal sqlite-wal-checkpoint {h.app_db} --dry-run", user=APPROVER, channel=CHANNEL
    )
    await h.slack.wait_for(lambda: told(h, APPROVER))
    # The same command typed in a channel GRACE is not in (its response_url reused;
    # a new command has a trigger of its own).
    form = dict(urllib.parse.parse_qsl(typed.request_body))
    form.update(
        channel_id="C0NOWHERE",
        text=f"heal sqlite-wal-checkpoint {h.app_db}",
        trigger_id=h.slack.issue_trigger_id(),
    )
    await h.slack.signed_post(urllib.parse.urlencode(form), "application/x-www-form-urlencoded")
    answers = await h.slack.wait_for(lambda: len(told(h, APPROVER)) == 2 and told(h, APPROVER))
    assert "GRACE cannot open an incident here" in answers[1]
    assert "channel_not_found" in answers[1]
    await settled(h)
    assert await h.incidents() == []


def notices(h: Harness) -> list[str]:
    """GRACE's top-level words in the alert channel that are not cards."""
    return [
        m.text for m in h.slack.messages(CHANNEL) if m.bot_id == h.slack.bot_id and not m.blocks
    ]


def shown(h: Harness, card: Message) -> str:
    return h.slack.render_message(h.slack.message(CHANNEL, card.ts))


async def test_the_kill_switch_is_announced_counts_approvals_survives_a_restart_and_lifts(
    make_harness,
):
    lead = "U0LEAD"
    h = await make_harness(admins=[lead])
    await h.slack.slash_command("pause db migration <!channel>", user=APPROVER, channel=CHANNEL)
    [refused] = await h.slack.wait_for(lambda: told(h, APPROVER))
    assert "Only GRACE's admins" in refused and await h.grace.store.paused() is None
    await h.alert()
    card = await h.card()
    await settled(h)
    assert "GRACE is paused" not in shown(h, card)

    await h.slack.slash_command("pause db migration <!channel>", user=lead, channel=CHANNEL)
    [paused] = await h.slack.wait_for(lambda: told(h, lead))
    assert "GRACE is paused" in paused and "Every alert channel was told" in paused
    [notice] = await h.slack.wait_for(lambda: notices(h))
    assert "*GRACE is paused* by <@U0LEAD>: db migration &lt;!channel&gt;" in notice
    await h.slack.wait_for(lambda: "GRACE is paused" in shown(h, card))
    assert "<!channel>" not in json.dumps(h.slack.message(CHANNEL, card.ts).blocks)

    await h.click(card)
    [answer] = await h.slack.wait_for(lambda: told(h, APPROVER)[1:])
    assert "Your approval is recorded and counts" in answer and "checked again" in answer
    await settled(h)
    assert (await h.grace.store.incident_for_card(CHANNEL, card.ts)).state is S.APPROVED
    assert any("runs once GRACE is resumed" in t for t in h.thread(card))
    assert app_files(h)["app.db-wal"] is not None, "nothing ran"

    await h.grace.stop()  # a restart keeps the switch where it was, and the approval
    h.grace = await build(h.grace.settings)
    await h.grace.start()
    h.slack.connect(f"{h.grace.url}/slack/events")
    assert (await h.grace.store.paused()).by == lead

    await h.slack.slash_command("resume", user=lead, channel=CHANNEL)
    await h.slack.wait_for(lambda: any("resumed" in m for m in told(h, lead)))
    incident = await h.finished(card)  # no second click: the recorded approval counted
    assert incident.state is S.RESOLVED
    assert "*GRACE is resumed* by <@U0LEAD>. 1 approved plan(s)" in notices(h)[-1]
    final = shown(h, card)
    assert "GRACE is paused" not in final
    assert "*Approved by*\n@oncall" in final and "Resolved after" in final
    firing = "resolved" if incident.firing_count == 0 else f"{incident.firing_count} firing"
    assert f"1 received · now {firing}" in final
    actions = [e.action for e in await h.grace.store.audit_entries()]
    assert {"pause.refused", "grace.paused", "grace.resumed"} <= set(actions)


async def test_a_card_posted_while_paused_loses_the_banner_on_resume(make_harness):
    lead = "U0LEAD"
    h = await make_harness(admins=[lead])
    await h.slack.slash_command("pause", user=lead, channel=CHANNEL)
    await h.slack.wait_for(lambda: told(h, lead))
    await h.alert()
    card = await h.card()
    await settled(h)
    assert "*GRACE is paused* by @U0LEAD. Nothing runs" in shown(h, card)
    await h.slack.slash_command("resume", user=lead, channel=CHANNEL)
    await h.slack.wait_for(lambda: "GRACE is paused" not in shown(h, card))
    assert (await h.grace.store.incident_for_card(CHANNEL, card.ts)).state is S.AWAITING_APPROVAL


async def test_a_new_approval_card_pings_its_approvers_and_says_when_it_expires(make_harness):
    h = await make_harness()
    await h.alert()
    card = await h.card()
    await settled(h)
    incident = await h.grace.store.incident_for_card(CHANNEL, card.ts)
    message = h.slack.message(CHANNEL, card.ts)
    # The text is what notifies: the approver is pinged by the card itself.
    assert message.text.endswith(f"waiting for <@{APPROVER}>")
    stamp = int(incident.deadline.timestamp())
    assert f"<!date^{stamp}^{{date_short_pretty}} at {{time}}|" in json.dumps(message.blocks)
    expires = f"{incident.deadline:%Y-%m-%d %H:%M} UTC"
    assert f"*Waiting for* @oncall · *Expires* {expires}" in shown(h, card)


async def test_a_pending_approval_expires_even_across_a_restart(make_harness):
    from bot.settings import Expiry

    h = await make_harness(approval_expiry=Expiry(tier2=2.0), tick_seconds=0.05)
    await h.alert()
    card = await h.card()
    await settled(h)
    incident = await h.grace.store.incident_for_card(CHANNEL, card.ts)
    assert incident.state is S.AWAITING_APPROVAL and incident.deadline is not None
    # A client that keeps showing the old card: its Approve click, captured now.
    old_click = await h.click(card, user=STRANGER)
    assert (await h.grace.store.get_incident(incident.id)).state is S.AWAITING_APPROVAL
    await h.grace.stop()  # down while the deadline passes

    h.grace = await build(h.grace.settings)
    await h.grace.start()
    h.slack.connect(f"{h.grace.url}/slack/events")
    await h.slack.wait_for(lambda: any("Expired" in t for t in h.thread(card)), timeout=15)
    await settled(h)
    assert (await h.grace.store.get_incident(incident.id)).state is S.EXPIRED
    final = h.slack.message(CHANNEL, card.ts)
    assert "Expired" in h.slack.render_message(final)
    assert not [b for b in final.blocks if b["type"] == "actions"]
    assert sum("Reminder" in t for t in h.thread(card)) <= 1

    late = old_click.request_body.replace(STRANGER, APPROVER)
    assert (await h.slack.signed_post(late, "application/x-www-form-urlencoded")).status == 200
    await h.slack.wait_for(lambda: any("already expired" in m for m in told(h, APPROVER)))
    assert await h.grace.store.actions(incident.id) == []


TIER3 = """
playbooks:
  - id: sqlite-wal-checkpoint-careful
    title: Checkpoint the WAL, two people agreeing
    treats: [sqlite_wal_too_large]
    tier: 3
    target: {executor: sqlite, from_label: db_path}
    steps: [{action: wal_checkpoint, params: {mode: TRUNCATE}}]
    checks: [{check: integrity_ok}]
"""


async def test_tier3_needs_two_different_approvers_and_never_the_requester(make_harness):
    from bot.demo import MONITOR
    from bot.settings import Approvers

    h = await make_harness(
        playbooks=TIER3, approvers=Approvers(tier3=[APPROVER, "U0LEAD", MONITOR])
    )
    await h.alert()  # posted by MONITOR: the requester
    card = await h.card()
    await h.click(card, user=MONITOR)
    await h.slack.wait_for(lambda: any("raised this incident" in m for m in told(h, MONITOR)))
    await h.click(card, user=APPROVER)
    await settled(h)
    incident = await h.grace.store.incident_for_card(CHANNEL, card.ts)
    assert incident.state is S.AWAITING_APPROVAL, "one approver is not enough for tier 3"
    again = await h.slack.signed_post(
        (await h.click(card, user=APPROVER)).request_body, "application/x-www-form-urlencoded"
    )
    assert again.status == 200
    await h.slack.wait_for(lambda: any("already decided" in m for m in told(h, APPROVER)))
    await h.click(card, user="U0LEAD")
    assert (await h.finished(card)).state is S.RESOLVED
    approvals = await h.grace.store.approvals(incident.id)
    assert sorted(a.user for a in approvals) == sorted([APPROVER, "U0LEAD"])


async def test_an_approval_for_a_plan_that_changed_is_refused(make_harness):
    h = await make_harness()
    await h.alert()
    card = await h.card()
    await settled(h)
    incident = await h.grace.store.incident_for_card(CHANNEL, card.ts)
    probe = await h.click(card, user=STRANGER)  # a real click, to replay as an old card's
    stale = probe.request_body.replace(incident.plan.hash, "0123456789abcdef").replace(
        STRANGER, APPROVER
    )
    assert (await h.slack.signed_post(stale, "application/x-www-form-urlencoded")).status == 200
    await h.slack.wait_for(lambda: any("plan changed" in m for m in told(h, APPROVER)))
    await settled(h)
    assert (await h.grace.store.get_incident(incident.id)).state is S.AWAITING_APPROVAL
    refused = [e for e in await h.grace.store.audit_entries() if e.action == "approval.refused"]
    assert any(e.actor == APPROVER and "plan changed" in e.detail["why"] for e in refused)
