"""The weekly report through the real bot, database, outbox and the Slack stand-in:
posted once when its cron time passes, never again for that period after a restart,
once for a period missed while GRACE was down, and its chart a PNG in its thread."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from matplotlib.image import imread

from bot.app import build
from bot.demo import CHANNEL
from engine.clock import SystemClock
from engine.models import IncidentState as S
from engine.weekly import ReportSchedule, due_period
from tests.e2e.conftest import OTHER_CHANNEL

BERLIN = ZoneInfo("Europe/Berlin")
SCHEDULE = ReportSchedule(channel=OTHER_CHANNEL, cron="0 9 * * MON", tz="Europe/Berlin")


class MovableClock(SystemClock):
    """Real time flowing from a chosen instant, which a test may move forward; waits are real."""

    def __init__(self, at: datetime) -> None:
        self.move_to(at)

    def move_to(self, at: datetime) -> None:
        self._offset = at - datetime.now(UTC)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset


def reports(h):
    return [m for m in h.slack.messages(OTHER_CHANNEL) if m.text.startswith("GRACE's report")]


async def settled(h) -> None:
    await h.grace.healer.drain()
    await h.grace.outbox.idle()


async def restart(h, clock: MovableClock) -> None:
    await h.grace.stop()
    h.grace = await build(h.grace.settings, clock)
    await h.grace.start()
    h.slack.connect(f"{h.grace.url}/slack/events")


async def test_the_report_is_posted_once_when_due_after_restarts_and_once_for_missed_weeks(
    make_harness,
):
    # The first Monday 09:00 in Berlin after this database is created.
    first_due = due_period(SCHEDULE, datetime.now(UTC)).end + timedelta(days=7)
    clock = MovableClock(first_due - timedelta(minutes=1))
    h = await make_harness(clock=clock, weekly_report=SCHEDULE, tick_seconds=0.05)
    reporter = h.grace.reporter
    assert reporter is not None

    # Before its time, and for the week that ended before GRACE existed: nothing.
    await h.alert()
    card = await h.card()
    await h.click(card)
    assert (await h.finished(card)).state is S.RESOLVED
    assert await reporter.tick() is False
    await settled(h)
    assert reports(h) == []

    # Its time passes: the scheduler posts it, and the chart follows in its thread.
    clock.move_to(first_due + timedelta(seconds=1))
    [report] = await h.slack.wait_for(lambda: reports(h) or None)
    upload = await h.slack.wait_for(
        lambda: next((u for u in h.slack.uploads.values() if u.completed), None)
    )
    start = (first_due - timedelta(days=7)).astimezone(BERLIN)
    assert report.text == (
        f"GRACE's report: {start:%a %d %b %H:%M} to {first_due.astimezone(BERLIN):%a %d %b %H:%M}"
    )
    body = "\n".join(b["text"]["text"] for b in report.blocks if b["type"] == "section")
    assert "*Incidents:* 1" in body and "*Heals:* 1 ran, 1 succeeded" in body
    assert "`sqlite-wal-checkpoint` (tier 2): 1 run, 1/1 succeeded" in body
    assert "*Tier changes:* none" in body and "*Toil candidates:* none" in body
    assert (upload.channel, upload.thread_ts) == (OTHER_CHANNEL, report.ts)
    assert upload.filename == f"grace-report-{first_due.astimezone(BERLIN):%Y-%m-%d}.png"
    assert upload.data.startswith(b"\x89PNG\r\n\x1a\n")
    height, width, _ = imread(io.BytesIO(upload.data), format="png").shape
    assert (width, height) == (800, 400)
    shared = h.slack.thread(OTHER_CHANNEL, report.ts)
    assert [f["name"] for m in shared for f in getattr(m, "files", [])] == [upload.filename]

    # Ticks and a restart inside the same period post nothing more.
    assert await reporter.tick() is False
    clock.move_to(first_due + timedelta(days=3))
    await restart(h, clock)
    assert await h.grace.reporter.tick() is False
    await settled(h)
    assert len(reports(h)) == 1 and len(h.slack.uploads) == 1

    # Down for three weeks: one report at start-up, for the latest week only.
    await h.grace.stop()
    latest = first_due + timedelta(days=21)
    clock.move_to(latest + timedelta(hours=5))
    h.grace = await build(h.grace.settings, clock)
    await h.grace.start()
    h.slack.connect(f"{h.grace.url}/slack/events")
    await h.slack.wait_for(lambda: len(reports(h)) == 2 or None)
    await settled(h)
    assert await h.grace.reporter.tick() is False
    [first, missed] = reports(h)
    assert first.ts == report.ts
    since = (latest - timedelta(days=7)).astimezone(BERLIN)
    assert missed.text.startswith(f"GRACE's report: {since:%a %d %b %H:%M} to ")
    assert "No incidents and no heals in this period." in missed.blocks[1]["text"]["text"]
    await h.slack.wait_for(lambda: len(h.slack.uploads) == 2 or None)
    assert not [m for m in h.slack.messages(CHANNEL) if m.text.startswith("GRACE's report")]
