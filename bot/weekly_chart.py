"""The weekly report's chart: incidents per day by how they ended, and the heals'
success rate, as one PNG.

Drawn with matplotlib's object API on the Agg canvas, never `pyplot`: pyplot
keeps global state and is not safe off the main thread, and the chart is drawn
in a worker thread so the event loop never waits on it. matplotlib is imported
when a chart is drawn (half a second): a GRACE without a report never pays it.
"""

from __future__ import annotations

import io

from engine.api import PeriodStats, WeeklyReport

# How each day's incidents ended, drawn bottom to top, each incident once (its
# state); "other" is what is still open or ended otherwise (cleared, rolled back).
_ENDINGS = (
    ("healed without a human", "#2e7d32"),
    ("healed once approved", "#1565c0"),
    ("rejected", "#6a1b9a"),
    ("expired", "#ef6c00"),
    ("needed a human", "#c62828"),
    ("other", "#9e9e9e"),
)


def _endings(day: PeriodStats) -> tuple[int, ...]:
    approved = day.resolved - day.healed_alone
    known = (day.healed_alone, approved, day.rejected, day.expired, day.needed_human)
    return (*known, max(0, day.incidents - sum(known)))


def chart_png(report: WeeklyReport) -> bytes:
    """The chart's PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    bars = figure.add_subplot()
    zone = report.period.start.tzinfo
    labels = [f"{day.since.astimezone(zone):%a %d}" for day in report.days]
    positions = list(range(len(report.days)))
    counts = [_endings(day) for day in report.days]
    bottoms = [0] * len(report.days)
    for index, (name, colour) in enumerate(_ENDINGS):
        heights = [row[index] for row in counts]
        bars.bar(positions, heights, bottom=bottoms, color=colour, label=name)
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    bars.set_xticks(positions, labels)
    bars.set_ylabel("incidents opened")
    bars.set_ylim(0, max([*bottoms, 1]) * 1.05)
    rates = bars.twinx()
    rate = [day.success_rate * 100 if day.success_rate is not None else None for day in report.days]
    shown = [(x, r) for x, r in zip(positions, rate, strict=True) if r is not None]
    if shown:
        xs, ys = zip(*shown, strict=True)
        rates.plot(xs, ys, color="black", marker="o", label="heals succeeded (%)")
    rates.set_ylim(0, 105)
    rates.set_ylabel("heals succeeded (%)")
    (shapes, names), (line, rate_name) = (
        bars.get_legend_handles_labels(),
        rates.get_legend_handles_labels(),
    )
    figure.legend(shapes + line, names + rate_name, loc="outside lower center", ncols=4, fontsize=7)
    bars.set_title(f"Incidents per day ({report.tz})")
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()
