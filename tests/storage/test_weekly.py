"""The weekly report's claim and reads: one claim per period, its message before its
chart, the alerts people keep handling by hand, and the tier changes of the period."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import timedelta
from pathlib import Path

from engine.weekly import Period
from storage.store import SqliteStore
from tests.storage.conftest import FakeClock


def _week(clock: FakeClock) -> Period:
    return Period(start=clock.now() - timedelta(days=7), end=clock.now())


async def test_a_period_is_claimed_once_with_its_message_then_its_chart_in_one_stream(
    store: SqliteStore, clock: FakeClock, db_path: Path
):
    period = _week(clock)
    message, chart = {"text": "GRACE's report"}, {"filename": "c.png", "title": "t", "png": "AA=="}
    assert not await store.report_claimed(period)
    first, second = await asyncio.gather(
        store.claim_report(period, "C0REPORTS", message, chart),
        store.claim_report(period, "C0REPORTS", message, chart),
    )
    assert sorted([first, second]) == [False, True]
    assert await store.report_claimed(period)
    conn = sqlite3.connect(db_path)
    rows = conn.execute(
        "SELECT id, kind, stream, channel, payload FROM outbox ORDER BY id"
    ).fetchall()
    conn.close()
    assert [(kind, channel) for _, kind, _, channel, _ in rows] == [
        ("notice", "C0REPORTS"),
        ("upload", "C0REPORTS"),
    ]
    assert rows[0][2] == rows[1][2], "one stream: the chart waits for its message"
    assert json.loads(rows[1][4]) == {**chart, "after": rows[0][0]}
    # Only its message and chart go out, in that order, and the chart knows where.
    [head] = await store.outbox_heads(clock.now())
    assert head.kind == "notice"
    await store.mark_sent(head.id, "1700000000.000100")
    assert await store.sent_ts(head.id) == "1700000000.000100"
    [chart_row] = await store.outbox_heads(clock.now())
    assert chart_row.kind == "upload"
    # The next period is another claim.
    later = Period(start=period.end, end=period.end + timedelta(days=7))
    assert await store.claim_report(later, "C0REPORTS", message, chart)


async def test_installed_at_is_when_the_database_was_made(store: SqliteStore, db_path: Path):
    installed = await store.installed_at()
    conn = sqlite3.connect(db_path)
    [first] = conn.execute("SELECT applied_at FROM schema_version WHERE version = 1").fetchone()
    conn.close()
    assert installed.isoformat() == first
