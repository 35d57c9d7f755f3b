"""The walking skeleton's incident, end to end over real HTTP with signed requests."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time

import pytest

from bot.demo import APPROVER, CHANNEL, wal_size
from bot.ids import ActionId, BlockId
from engine.models import IncidentState
from tests.e2e.conftest import OTHER_CHANNEL

S = IncidentState

TIER1 = """
playbooks:
  - id: sqlite-wal-checkpoint-now
    title: Checkpoint the WAL at once
    treats: [sqlite_wal_too_large]
    tier: 1
    target: {executor: sqlite, from_label: db_path}
    steps: [{action: wal_checkpoint, params: {mode: TRUNCATE}}]
    checks: [{check: wal_size_at_most, params: {bytes: 1048576}}, {check: integrity_ok}]
"""

IMPOSSIBLE_CHECK = """
playbooks:
  - id: sqlite-wal-checkpoint-strict
    title: Checkpoint the WAL and expect a billion rows
    treats: [sqlite_wal_too_large]
    tier: 1
    target: {executor: sqlite, from_label: db_path}
    steps: [{action: wal_checkpoint, params: {mode: TRUNCATE}}]
    checks:
      - check: scalar_at_least
        params: {query: "SELECT count(*) FROM events", value: 1000000000}
"""


def rows(path) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT id, body FROM events ORDER BY id").fetchall()


async def test_whole_incident_from_alert_to_learning(make_harness):
    h = await make_harness()
    before_rows = rows(h.app_db)
    assert wal_size(h.app_db) > 500_000

    delivery = await h.alert()
    assert delivery.status == 200
    card = await h.card()
    buttons = [e["action_id"] for b in card.blocks if b["type"] == "actions" for e in b["elements"]]
    assert buttons == [ActionId.APPROVE, ActionId.REJECT, ActionId.DRY_RUN]
    assert "Awaiting approval" in h.slack.render_message(card)

    click = await h.click(card)
    assert click.status == 200 and click.elapsed < 3
    incident = await h.finished(card)

    assert incident.state is S.RESOLVED
    assert wal_size(h.app_db) == 0
    assert rows(h.app_db) == before_rows
    thread = h.thread(card)
    stages = [
        "*Plan:*",
        "Approved by <@U0ONCALL>",
        "Snapshot taken",
        "Step `wal_checkpoint` succeeded in",
        "Verification passed",
        "1/1 succeeded, median",
    ]
    assert len(thread) == len(stages)
    for text, stage in zip(thread, stages, strict=True):
        assert stage in text
    final = h.slack.message(CHANNEL, card.ts)
    assert "Resolved" in h.slack.render_message(final)
    assert not [b for b in final.blocks if b["type"] == "actions"], (
        "the final card keeps no buttons"
    )
    snapshot = (await h.grace.store.snapshots(incident.id))[0]
    with sqlite3.connect(snapshot.location) as snap:
        assert snap.execute("SELECT count(*) FROM events").fetchone()[0] == len(before_rows)
    assert (await h.grace.store.playbook_stats("sqlite-wal-checkpoint")).successes == 1
    assert (await h.grace.store.verify_audit()).ok
    told = [(e.actor, e.action) for e in await h.grace.store.audit_entries(incident.id)]
    for expected in [
        ("U0MONITOR", "alerts.received"),
        ("grace", "incident.awaiting_approval"),
        ("U0ONCALL", "approval.approve"),
        ("U0ONCALL", "incident.approved"),
        ("grace", "snapshot.taken"),
        ("grace", "step.finished"),
        ("grace", "verification"),
        ("grace", "incident.resolved"),
    ]:
        assert expected in told, expected


async def test_the_slack_ack_never_waits_for_the_heal(make_harness):
    h = await make_harness(rows=40_000)
    await h.alert()
    card = await h.card()
    click = await h.click(card)
    # The ack came back while the incident was still on its way, not after.
    incident = await h.grace.store.incident_for_card(CHANNEL, card.ts)
    assert click.status == 200 and incident.state is not S.RESOLVED
    assert (await h.finished(card)).state is S.RESOLVED


async def test_tier1_heals_at_once(make_harness):
    h = await make_harness(playbooks=TIER1)
    await h.integration_alert()
    card = await h.card()
    incident = await h.finished(card)
    assert incident.state is S.RESOLVED and incident.plan.playbook_id == "sqlite-wal-checkpoint-now"
    assert "Tier 1: healing at once" in h.thread(card)[1]
    assert wal_size(h.app_db) == 0
    assert not [b for b in card.blocks if b["type"] == "actions"]


async def test_a_tier1_alert_typed_by_a_person_waits_for_an_approval(make_harness):
    h = await make_harness(playbooks=TIER1)
    await h.alert()  # the monitoring user is a person, not an integration
    card = await h.card()
    await h.grace.healer.drain()
    await h.grace.outbox.idle()
    incident = await h.grace.store.incident_for_card(CHANNEL, card.ts)
    assert incident.state is S.AWAITING_APPROVAL
    assert (incident.plan.tier, incident.plan.required_approvals) == (2, 1)
    assert wal_size(h.app_db) > 0


async def test_bad_or_stale_signature_is_refused_and_creates_nothing(make_harness):
    h = await make_harness()
    body = json.dumps(
        {
            "type": "event_callback",
            "event_id": "Ev1",
            "event": {
                "type": "message",
                "channel": CHANNEL,
                "user": "U1",
                "ts": "1.1",
                "text": f"SQLiteWALTooLarge db_path={h.app_db}",
            },
        }
    )
    wrong = await h.slack.signed_post(body, "application/json", secret="not-the-secret")
    stale = await h.slack.signed_post(body, "application/json", timestamp=int(time.time()) - 600)
    assert (wrong.status, stale.status) == (401, 401)
    assert await h.incidents() == []
    assert h.cards() == []


async def test_a_slack_retry_of_the_same_event_opens_one_incident(make_harness):
    h = await make_harness()
    first = await h.alert()
    await h.card()
    again = await h.slack.redeliver(first)
    assert again.status == 200
    await h.grace.healer.drain()
    assert len(await h.incidents()) == 1
    assert len(h.cards()) == 1


async def test_approve_twice_in_a_row_runs_once(make_harness):
    h = await make_harness()
    await h.alert()
    card = await h.card()
    first = await h.click(card)
    # A client still showing the old card sends the same click again.
    second = await h.slack.signed_post(first.request_body, first.request_headers["Content-Type"])
    assert second.status == 200
    incident = await h.finished(card)
    assert incident.state is S.RESOLVED
    assert len(await h.grace.store.actions(incident.id)) == 1


async def test_approve_clicked_concurrently_runs_once(make_harness):
    h = await make_harness()
    await h.alert()
    card = await h.card()
    clicks = await asyncio.gather(*(h.click(card) for _ in range(5)))
    assert {c.status for c in clicks} == {200}
    incident = await h.finished(card)
    assert len(await h.grace.store.actions(incident.id)) == 1
    assert sum("Approved by" in t for t in h.thread(card)) == 1


async def test_unlisted_approver_is_refused_privately_and_audited(make_harness):
    h = await make_harness()
    await h.alert()
    card = await h.card()
    click = await h.click(card, user="U0STRANGER")
    assert click.status == 200
    told = await h.slack.wait_for(lambda: h.slack.ephemerals("U0STRANGER"))
    assert "not on the tier 2 approver list" in told[0].text
    entries = await h.grace.store.audit_entries()
    refused = [e for e in entries if e.action == "approval.refused"]
    assert refused and refused[0].actor == "U0STRANGER"
    incident = await h.grace.store.incident_for_card(CHANNEL, card.ts)
    assert incident.state is S.AWAITING_APPROVAL
    assert await h.grace.store.actions(incident.id) == []


async def test_a_path_outside_the_allowlist_is_refused_and_untouched(make_harness, tmp_path):
    h = await make_harness(playbooks=TIER1)
    outside = tmp_path / "elsewhere.db"
    conn = sqlite3.connect(outside)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE t (x)")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.commit()
    wal_before = wal_size(outside)
    try:
        await h.alert(f"SQLiteWALTooLarge db_path={outside}")
        card = await h.card()
        told = await h.slack.wait_for(lambda: h.thread(card))
        assert (
            "Refused, nothing was touched" in told[0] and "not in the sqlite allowlist" in told[0]
        )
        incident = await h.grace.store.incident_for_card(CHANNEL, card.ts)
        assert incident.state is S.NEEDS_HUMAN
        assert wal_size(outside) == wal_before > 0
        assert await h.grace.store.snapshots(incident.id) == []
    finally:
        conn.close()


async def test_an_alert_without_the_label_says_so(make_harness):
    h = await make_harness()
    await h.alert("SQLiteWALTooLarge severity=warning")
    card = await h.card()
    told = await h.slack.wait_for(lambda: h.thread(card))
    assert "Recognised `SQLiteWALTooLarge`" in told[0]
    assert "names its `db_path` (looked in label `db_path`" in told[0]


async def test_failed_verification_restores_the_snapshot_and_rolls_back(make_harness):
    h = await make_harness(playbooks=IMPOSSIBLE_CHECK)
    before_rows = rows(h.app_db)
    await h.integration_alert()
    card = await h.card()
    incident = await h.finished(card)
    assert incident.state is S.ROLLED_BACK
    assert "verification failed" in incident.reason
    assert rows(h.app_db) == before_rows
    thread = h.thread(card)
    assert any("Verification FAILED" in t for t in thread)
    assert any("Rolled back" in t and "Restored:" in t for t in thread)
    assert "0/1 succeeded" in thread[-1]
    assert "Rolled back" in h.slack.render_message(h.slack.message(CHANNEL, card.ts))


async def test_own_messages_and_other_channels_are_not_alerts(make_harness):
    h = await make_harness()
    text = f"SQLiteWALTooLarge db_path={h.app_db}"
    await h.slack.post_message_as(CHANNEL, text, bot_id=h.slack.bot_id)
    await h.slack.post_message_as(OTHER_CHANNEL, text, user=APPROVER)
    await h.slack.post_message_as(CHANNEL, "good morning, all quiet", user=APPROVER)
    await h.grace.healer.drain()
    assert await h.incidents() == []
    # An integration's bot message in the alert channel is an alert.
    await h.alert(bot_id="B0ALERTMANAGER", username="Alertmanager")
    assert (await h.card()).bot_id == h.slack.bot_id
    assert len(await h.incidents()) == 1


async def test_audit_chain_verifies_and_names_a_tampered_row(make_harness):
    h = await make_harness()
    await h.alert()
    card = await h.card()
    await h.click(card)
    await h.finished(card)
    report = await h.grace.store.verify_audit()
    assert report.ok and report.rows >= 8
    db = h.grace.settings.db
    with sqlite3.connect(db) as raw:
        raw.execute("DROP TRIGGER audit_log_no_update")
        raw.execute("UPDATE audit_log SET actor = 'U0MALLORY' WHERE seq = 3")
    report = await h.grace.store.verify_audit()
    assert not report.ok and report.first_bad_seq == 3


async def test_healthz(make_harness):
    import aiohttp

    h = await make_harness()
    async with aiohttp.ClientSession() as session, session.get(f"{h.grace.url}/healthz") as resp:
        assert resp.status == 200 and (await resp.json()) == {"ok": True}


async def test_an_unknown_alert_channel_stops_start_up_with_its_name(make_harness):
    from bot.app import build
    from bot.settings import ConfigError

    h = await make_harness()
    settings = h.grace.settings.model_copy(update={"alert_channels": ["C0ALERTS", "C0TYPO"]})
    grace = await build(settings)
    try:
        with pytest.raises(
            ConfigError, match="GRACE_ALERT_CHANNELS: Slack cannot find channel C0TYPO"
        ):
            await grace.start()
    finally:
        await grace.stop()


async def test_learning_accumulates_across_incidents(make_harness):
    h = await make_harness(playbooks=TIER1)
    for n in range(1, 4):
        with h.owner:  # the application keeps writing: the WAL grows again
            h.owner.executemany(
                "INSERT INTO events (body) VALUES (?)", [("more " + "y" * 200,)] * 3000
            )
        assert wal_size(h.app_db) > 500_000
        await h.integration_alert()
        card = await h.slack.wait_for(lambda n=n: h.cards()[n - 1] if len(h.cards()) >= n else None)
        incident = await h.finished(card)
        assert incident.state is S.RESOLVED
        assert f"{n}/{n} succeeded, median" in h.thread(card)[-1]
    stats = await h.grace.store.playbook_stats("sqlite-wal-checkpoint-now")
    assert (stats.attempts, stats.successes) == (3, 3) and stats.median_seconds > 0


async def test_a_forged_button_value_is_answered_privately_and_does_nothing(make_harness):
    h = await make_harness()
    await h.alert()
    card = await h.card()
    first = await h.click(card)
    forged = first.request_body.replace("incident", "incidnt")
    # Re-signed, as an attacker holding the secret could not; this proves the value check alone.
    delivery = await h.slack.signed_post(forged, "application/x-www-form-urlencoded")
    assert delivery.status == 200
    told = await h.slack.wait_for(lambda: h.slack.ephemerals(APPROVER))
    assert any("not one of GRACE's" in m.text for m in told)
    incident = await h.finished(card)
    assert len(await h.grace.store.actions(incident.id)) == 1


async def test_reject_ends_the_incident_and_touches_nothing(make_harness):
    h = await make_harness()
    wal_before = wal_size(h.app_db)
    await h.alert()
    card = await h.card()
    click = await h.click(card, action=ActionId.REJECT)
    assert click.status == 200
    form = await h.slack.wait_for(lambda: h.slack.views[-1] if h.slack.views else None)
    values = {BlockId.REJECT_REASON: {ActionId.REJECT_REASON: "not during the migration"}}
    await h.slack.submit_view(form["id"], user=APPROVER, values=values)
    await h.slack.wait_for(lambda: any("Rejected by <@U0ONCALL>" in t for t in h.thread(card)))
    await h.grace.outbox.idle()
    incident = await h.grace.store.incident_for_card(CHANNEL, card.ts)
    assert incident.state is S.REJECTED
    assert wal_size(h.app_db) == wal_before
    final = h.slack.message(CHANNEL, card.ts)
    assert "Rejected" in h.slack.render_message(final)
    assert not [b for b in final.blocks if b["type"] == "actions"]


async def test_an_approver_list_may_name_a_slack_user_group(make_harness):
    from bot.settings import Approvers

    h = await make_harness(
        usergroups={"S0ONCALL": ["U0GROUPIE"]}, approvers=Approvers(tier2=["S0ONCALL"])
    )
    await h.alert()
    card = await h.card()
    await h.click(card, user="U0OUTSIDER")
    told = await h.slack.wait_for(lambda: h.slack.ephemerals("U0OUTSIDER"))
    assert "not on the tier 2 approver list" in told[0].text
    await h.click(card, user="U0GROUPIE")
    assert (await h.finished(card)).state is S.RESOLVED
    assert [c.args["usergroup"] for c in h.slack.calls if c.method == "usergroups.users.list"] == [
        "S0ONCALL"
    ], "members are cached, not looked up on every click"
