"""A burst of duplicate clicks against the incident's story: the refusal backlog.

One person clicks Approve on a card 1,000 times at once after someone else
decided; each click is refused privately ("Someone else decided on this plan
first."). Then the incident's next story line is told. Measured with the real
store, notifier, outbox worker and Slack SDK client against DevSlack, which
holds chat.postMessage to Slack's pace (1 a second per channel, bursts of 3):

- writes queued in the channel (its lane) and for the person, after the burst;
- the private answers the person received;
- seconds, at Slack's pace, until the story line is in the thread.

Time is simulated (it moves when the outbox waits), so Slack's pace costs no
real time and the figure is the one a person would wait.

    .venv/bin/python bench/click_burst.py [--clicks 1000]

A benchmark, not a test: it prints numbers and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slack_sdk.web.async_client import AsyncWebClient

from bot.devslack import DevSlack
from bot.metrics import Metrics
from bot.notifier import OutboxNotifier
from bot.outbox import OutboxWorker
from engine.models import Alert
from engine.story import NeedsHuman
from storage.store import SqliteStore
from tests.bot.test_outbox_worker import SimClock

CHANNEL, USER = "C0ALERTS", "U0ALICE"
REFUSAL = "Someone else decided on this plan first."


def queued(db: Path) -> tuple[int, int]:
    """Unsettled writes in the channel's lane, and in the person's."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT lane = ?, COUNT(*) FROM outbox WHERE state IN ('pending', 'sending')"
            " GROUP BY lane = ?",
            (CHANNEL, CHANNEL),
        ).fetchall()
    by_lane = {bool(channel): count for channel, count in rows}
    return by_lane.get(True, 0), by_lane.get(False, 0)


async def burst(clicks: int, workdir: Path) -> dict[str, float]:
    clock = SimClock()
    slack = DevSlack(
        token="xoxb-bench",
        signing_secret="bench",
        channels={CHANNEL: "alerts"},
        users={USER: "alice"},
        post_rate_per_channel=1.0,
        clock=clock.seconds,
    )
    await slack.start()
    store = await SqliteStore.open(workdir / "grace.db", clock)
    client = AsyncWebClient(token=slack.token, base_url=slack.api_url)
    worker = OutboxWorker(store, client, Metrics(), clock)
    notifier = OutboxNotifier(store, worker)
    worker.start()
    try:
        alert = Alert(
            source="bench",
            source_key="1",
            name="DiskFilling",
            channel=CHANNEL,
            received_at=clock.now(),
        )
        [intake] = await store.ingest_alerts([alert], "bench-1")
        assert intake.incident is not None
        incident = intake.incident
        await notifier.post_card(incident)
        await notifier.tell_thread(incident, NeedsHuman(reason="the first line"))
        await worker.idle()
        clock.frozen = True  # the clicks arrive at one instant
        await asyncio.gather(*(notifier.tell_user(CHANNEL, USER, REFUSAL) for _ in range(clicks)))
        await notifier.tell_thread(incident, NeedsHuman(reason="the next line"))
        in_channel, for_person = queued(workdir / "grace.db")
        told_at = clock.seconds()
        clock.frozen = False
        await worker.idle()
        [card] = slack.messages(CHANNEL)
        [story_line] = [m for m in slack.thread(CHANNEL, card.ts) if "next line" in m.text]
        delivered_at = next(
            c.at
            for c in slack.calls
            if c.method == "chat.postMessage" and c.response.get("ts") == story_line.ts
        )
        return {
            "in_channel": in_channel,
            "for_person": for_person,
            "answers": len(slack.ephemerals(USER)),
            "story_wait_s": delivered_at - told_at,
        }
    finally:
        await worker.stop(flush_within=0)
        await store.close()
        await slack.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=1000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="grace-bench-") as tmp:
        result = asyncio.run(burst(args.clicks, Path(tmp)))
    print(
        f"{args.clicks} duplicate clicks: {result['in_channel']} write(s) queued in the channel, "
        f"{result['for_person']} for the person; {result['answers']} answer(s) shown; "
        f"the next story line waited {result['story_wait_s']:.1f} s at Slack's pace"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
