"""The "Heal this" message shortcut: any message, read for the person who asked."""

from __future__ import annotations

from bot.demo import APPROVER, CHANNEL, MONITOR
from bot.ids import CallbackId


async def ask(h, ts: str, user: str = APPROVER) -> str:
    before = len(h.slack.ephemerals(user))
    delivery = await h.slack.message_shortcut(CHANNEL, ts, CallbackId.HEAL_THIS, user=user)
    assert delivery.status == 200 and delivery.elapsed < 3
    answers = await h.slack.wait_for(lambda: h.slack.ephemerals(user)[before:] or None)
    return answers[0].text


async def posted(h, text: str, **poster: str) -> str:
    delivery = await h.slack.post_message_as(CHANNEL, text, **poster)
    return str(delivery.payload()["event"]["ts"])


async def test_a_persons_message_is_read_and_the_plan_shown_to_the_asker_alone(make_harness):
    h = await make_harness()
    ts = await posted(h, f"reports are timing out, {h.app_db} is locked", user=MONITOR)
    await h.grace.healer.drain()
    answer = await ask(h, ts)
    assert "*Recognised* `sqlite_database_locked`" in answer
    assert "It would propose this; nothing was done." in answer
    assert f"`/grace heal sqlite-recover-lock {h.app_db}`" in answer
    assert h.slack.ephemerals(MONITOR) == []


async def test_an_integrations_alert_in_a_thread_is_read_too(make_harness):
    h = await make_harness()
    parent = await posted(h, "morning", user=MONITOR)
    text = f"[FIRING:1] SQLiteWALTooLarge db_path={h.app_db}"
    reply = await h.slack.post_message_as(
        CHANNEL, text, bot_id="B0ALERTMANAGER", username="Alertmanager", thread_ts=parent
    )
    answer = await ask(h, str(reply.payload()["event"]["ts"]))
    assert "`sqlite_wal_too_large`" in answer and "sqlite-wal-checkpoint" in answer


async def test_what_grace_cannot_act_on_is_said_plainly(make_harness):
    h = await make_harness()
    unknown = await posted(h, "[FIRING:1] KafkaConsumerLag group=billing", bot_id="B0AM")
    assert "No pattern recognises `KafkaConsumerLag`" in await ask(h, unknown)
    chatter = await posted(h, "lunch at noon?", user=MONITOR)
    assert "finds nothing in this message it can read" in await ask(h, chatter)
    outside = await posted(h, "<!channel> db at /srv/other/orders.db is locked", user=MONITOR)
    answer = await ask(h, outside)
    assert "*Why no plan:* Refused, nothing was touched: sqlite target" in answer
    assert "not in the sqlite allowlist" in answer
    assert "<!channel>" not in answer
