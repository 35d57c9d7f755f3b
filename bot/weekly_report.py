"""The weekly report in Slack: claimed once per period, posted by the outbox.

Each scheduler tick asks which period is due (engine/weekly.py). A period is
claimed in the database together with its message and chart (storage/weekly.py),
so it is posted exactly once whatever restarts; the outbox then posts the
message and uploads the chart into its thread. The numbers are read and the
chart drawn (in a worker thread) before the claim. Periods that ended before
the database was created are not reported: a new install starts with the next.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import ContextBlock, HeaderBlock, MarkdownTextObject

from bot.blocks import HEADER_LIMIT, cap, escape, mention, sections
from bot.ids import is_user_id
from bot.stats_text import stats_lines
from bot.weekly_chart import chart_png
from engine.api import (
    Period,
    PlaybookSpec,
    ReportSchedule,
    TierChange,
    WeeklyReport,
    day_slices,
    due_period,
)
from engine.ports import Clock
from engine.storage_ports import WeeklyStore

log = logging.getLogger(__name__)


class WeeklyReporter:
    def __init__(
        self,
        store: WeeklyStore,
        schedule: ReportSchedule,
        playbooks: Sequence[PlaybookSpec],
        clock: Clock,
        wake: Callable[[], None],
    ) -> None:
        self.store, self.schedule, self.playbooks = store, schedule, playbooks
        self.clock, self.wake = clock, wake
        self._settled: datetime | None = None
        """The end of the latest period known claimed: until the next one, a tick
        asks nothing of the database."""
        self._installed: datetime | None = None

    async def tick(self) -> bool:
        """Claim and queue the due period's report unless that was done; True if now."""
        period = due_period(self.schedule, self.clock.now())
        if period.end == self._settled:
            return False
        if self._installed is None:
            self._installed = await self.store.installed_at()
        claimed = False
        # A period that ended before GRACE was installed is nobody's missed report.
        if period.end > self._installed and not await self.store.report_claimed(period):
            message, chart = await self.compose(period)
            claimed = await self.store.claim_report(period, self.schedule.channel, message, chart)
            if claimed:
                log.info("weekly report for the period ending %s queued", period.end)
                self.wake()
        self._settled = period.end
        return claimed

    async def compose(
        self, period: Period, *, scheduled: bool = True
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The report's message (chat.postMessage's text and blocks) and its chart."""
        report = await self.store.weekly_report(
            period, self.schedule.tz, day_slices(period, self.schedule.zone)
        )
        changes = await self.store.playbook_tiers()
        png = await asyncio.to_thread(chart_png, report)
        cron = self.schedule.cron if scheduled else None
        message = report_message(report, self.playbooks, changes, cron)
        return message, chart_upload(report, png)


def chart_upload(report: WeeklyReport, png: bytes) -> dict[str, Any]:
    """files_upload_v2's arguments for the chart (the bytes in base64, to be stored)."""
    end = report.period.end.astimezone(report.period.start.tzinfo)
    return {
        "filename": f"grace-report-{end:%Y-%m-%d}.png",
        "title": f"Incidents per day to {end:%a %d %b}",
        "png": base64.b64encode(png).decode("ascii"),
    }


def report_message(
    report: WeeklyReport,
    playbooks: Sequence[PlaybookSpec],
    changes: Mapping[str, TierChange],
    cron: str | None = None,
) -> dict[str, Any]:
    """The report as chat.postMessage's text and blocks; `cron` when it came on schedule."""
    zone = report.period.start.tzinfo
    start, end = report.period.start.astimezone(zone), report.period.end.astimezone(zone)
    title = cap(f"GRACE's report: {start:%a %d %b %H:%M} to {end:%a %d %b %H:%M}", HEADER_LIMIT)
    lines = [
        *stats_lines(report.stats, "The period before", playbooks, changes),
        *_tier_lines(report.tier_changes),
        _toil_line(report.toil),
    ]
    blocks = [HeaderBlock(text=title), *sections(lines)]
    when = f"on schedule `{escape(cron)}`" if cron else "on demand"
    about = f"Times in {escape(report.tz)}. Posted {when}; the chart is in the thread."
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=about)]))
    return {"text": title, "blocks": [block.to_dict() for block in blocks]}


def _tier_lines(changes: Sequence[TierChange]) -> list[str]:
    if not changes:
        return ["*Tier changes:* none"]
    lines = ["*Tier changes:*"]
    for change in changes:
        if change.tier == change.base_tier:
            move = f"back to its catalog tier {change.tier}"
        else:
            move = "demoted" if change.tier > change.base_tier else "promoted"
            move += f" to tier {change.tier} (catalog tier {change.base_tier})"
        lines.append(
            f"• `{escape(change.playbook_id)}` {move} by {_who(change.by)}: {escape(change.reason)}"
        )
    return lines


def _who(actor: str) -> str:
    """A person by mention; GRACE itself by name."""
    return mention(actor) if is_user_id(actor) else escape(actor)


def _toil_line(toil: Sequence[tuple[str, int]]) -> str:
    if not toil:
        return "*Toil candidates:* none (no alert needed a human twice without a playbook)"
    listed = " · ".join(f"`{escape(alert)}` {n}" for alert, n in toil)
    return f"*Toil candidates* (needed a human, no playbook): {listed}"
