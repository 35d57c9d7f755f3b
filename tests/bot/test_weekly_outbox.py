"""The weekly report's rows through the real outbox worker and the Slack stand-in:
the message, then its chart shared in the message's thread, each once."""

from __future__ import annotations

import base64
from datetime import timedelta

from engine.weekly import Period
from tests.bot import test_outbox_worker
from tests.bot.test_outbox_worker import CHANNEL, Rig, delivered

rig = test_outbox_worker.rig  # the outbox worker's own rig: store, worker, stand-in

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
CHART = {
    "filename": "grace-report.png",
    "title": "Incidents per day",
    "png": base64.b64encode(PNG).decode(),
}


async def _claim(rig: Rig) -> None:
    now = rig.clock.now()
    period = Period(start=now - timedelta(days=7), end=now)
    assert await rig.store.claim_report(period, CHANNEL, {"text": "GRACE's report"}, CHART)
    rig.worker.wake()


def _shared(rig: Rig, ts: str) -> list[str]:
    return [f["name"] for m in rig.slack.thread(CHANNEL, ts) for f in getattr(m, "files", [])]


async def test_the_chart_is_shared_in_the_thread_of_the_report(rig: Rig) -> None:
    await _claim(rig)
    await delivered(rig)
    [report] = rig.slack.messages(CHANNEL)
    assert report.text == "GRACE's report"
    [upload] = rig.slack.uploads.values()
    assert upload.completed and upload.data == PNG
    assert (upload.channel, upload.thread_ts, upload.title) == (CHANNEL, report.ts, CHART["title"])
    assert _shared(rig, report.ts) == ["grace-report.png"]


async def test_a_chart_whose_answer_was_lost_is_found_not_shared_again(rig: Rig) -> None:
    rig.slack.lose_answer("files.completeUploadExternal")
    await _claim(rig)
    await delivered(rig)
    [report] = rig.slack.messages(CHANNEL)
    assert _shared(rig, report.ts) == ["grace-report.png"]
    assert sum(u.completed for u in rig.slack.uploads.values()) == 1
    methods = [c.method for c in rig.slack.calls]
    assert methods.count("files.completeUploadExternal") == 1
    assert "conversations.replies" in methods


async def test_a_chart_whose_share_failed_is_uploaded_again(rig: Rig) -> None:
    rig.slack.fail_next("files.completeUploadExternal", "internal_error", status=500)
    await _claim(rig)
    await delivered(rig)
    [report] = rig.slack.messages(CHANNEL)
    assert _shared(rig, report.ts) == ["grace-report.png"]
    assert [c.method for c in rig.slack.calls].count("files.completeUploadExternal") == 2


async def test_a_chart_whose_report_was_refused_is_dropped_not_posted_alone(rig: Rig) -> None:
    rig.slack.fail_next("chat.postMessage", "msg_too_long", status=200)
    await _claim(rig)
    await delivered(rig)
    assert rig.slack.messages(CHANNEL) == [] and rig.slack.uploads == {}
