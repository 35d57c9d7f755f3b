"""`/grace stats` and `grace stats`: what GRACE did over a period, as people read it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from bot.blocks import escape, span, who
from engine.api import (
    PeriodStats,
    PlaybookSpec,
    StatsReport,
    TierChange,
    lower_bound,
    record,
    tier_of,
)
from engine.models import PlaybookStats

STATS_USAGE = "Usage: `/grace stats [7d|30d|90d]`"


def stats_text(
    report: StatsReport,
    days: int,
    playbooks: Sequence[PlaybookSpec],
    changes: Mapping[str, TierChange] | None = None,
) -> str:
    """The period's numbers with the period before them; says so when there is nothing.
    A playbook's tier is its catalog one, or what its record changed it to (`changes`)."""
    head = f"*GRACE over the last {days} days* ({_day(report.current)}, UTC)"
    return "\n".join([head, *stats_lines(report, f"The {days} days before", playbooks, changes)])


def stats_lines(
    report: StatsReport,
    before_named: str,
    playbooks: Sequence[PlaybookSpec],
    changes: Mapping[str, TierChange] | None = None,
) -> list[str]:
    """The numbers of `stats_text` under any heading (the weekly report has its own);
    `before_named` names the period before, as an empty period's line starts it."""
    tiers = {p.id: p.tier for p in playbooks}
    now, before = report.current, report.previous
    if not now.incidents and not now.heals:
        earlier = f" {before_named}: {_count(before.incidents, 'incident')}."
        return [f"No incidents and no heals in this period.{earlier}"]
    lines = [
        f"*Incidents:* {now.incidents} ({_trend(now.incidents, before.incidents)})"
        f" · healed without a human {now.healed_alone} · approved {now.approved}"
        f" · rejected {now.rejected} · expired {now.expired}"
        f" · needed a human {now.needed_human}",
        f"*Heals:* {_heals(now)} ({_rate_trend(now, before)})",
        f"*Time to resolve:* {_percentiles(now.resolve_p50_s, now.resolve_p90_s)}"
        f" · *time to approve:* {_percentiles(now.approve_p50_s, now.approve_p90_s)}",
    ]
    if now.top_alerts:
        top = " · ".join(f"`{escape(name)}` {n}" for name, n in now.top_alerts)
        lines.append(f"*Top alerts:* {top}")
    if now.playbooks:
        lines.append("*Playbooks:*")
        for playbook in now.playbooks:
            shown = _tier(
                tiers.get(playbook.playbook_id), (changes or {}).get(playbook.playbook_id)
            )
            lines.append(f"• `{escape(playbook.playbook_id)}`{shown}: {_record(playbook)}")
    return lines


def stats_json(report: StatsReport, days: int) -> dict[str, Any]:
    """`grace stats --json`: the same numbers, with the rates and bounds worked out."""

    def period(stats: PeriodStats) -> dict[str, Any]:
        out = stats.model_dump(mode="json")
        out["success_rate"] = stats.success_rate
        out["top_alerts"] = [{"alert": name, "incidents": n} for name, n in stats.top_alerts]
        for shown, playbook in zip(out["playbooks"], stats.playbooks, strict=True):
            shown["lower_bound"] = round(lower_bound(playbook), 4)
        return out

    return {"days": days, "current": period(report.current), "previous": period(report.previous)}


def _record(playbook: PlaybookStats) -> str:
    return f"{_count(playbook.attempts, 'run')}, {record(playbook)}"


def _tier(tier: int | None, change: TierChange | None) -> str:
    if tier is None:
        return " (no longer in the catalog)"
    now = tier_of(tier, change)
    if change is not None and now > tier:
        return f" (tier {now}, demoted from {tier})"
    if change is not None and now < tier:
        return f" (tier {now}, promoted from {tier} by {who(change.by)})"
    return f" (tier {tier})"


def _heals(stats: PeriodStats) -> str:
    if not stats.heals:
        return "none ran"
    return f"{stats.heals} ran, {stats.heal_successes} succeeded"


def _rate_trend(now: PeriodStats, before: PeriodStats) -> str:
    rate = "no rate" if now.success_rate is None else f"{now.success_rate:.0%}"
    if before.success_rate is None:
        return f"{rate}; none ran the period before"
    return f"{rate}; {before.success_rate:.0%} the period before"


def _trend(now: int, before: int) -> str:
    if now == before:
        return f"as many as the period before, {before}"
    arrow = ":arrow_up:" if now > before else ":arrow_down:"
    return f"{arrow} {abs(now - before)} from {before} the period before"


def _percentiles(p50: float | None, p90: float | None) -> str:
    if p50 is None or p90 is None:
        return "none"
    return f"p50 {span(timedelta(seconds=p50))}, p90 {span(timedelta(seconds=p90))}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _day(stats: PeriodStats) -> str:
    return f"{stats.since:%Y-%m-%d %H:%M} to {stats.until:%Y-%m-%d %H:%M}"
