"""What the alert storm prints: progress as runs end, several runs of a system and
mode as one row, the table, the notes, and each target's PASS or FAIL."""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Sequence

from _storm_alertmanager import AM_GROUP_WAIT_S
from _storm_grace import SLACK_BURST, SLACK_RATE
from _storm_runs import Run

# Targets (GRACE issue 3).
MIN_RATIO = 0.5
MAX_P99_MS = 50.0
MAX_FIRST_CARD_MS = 200.0
MAX_ALL_VISIBLE_MS = 10_000.0  # its card or its rollup line (GRACE issue 17)

Verdict = tuple[str, bool | None, str]  # (target, met or None when not measured, detail)


def print_progress(run: Run) -> None:
    if run.error or not run.load:
        print(f"    ERROR: {run.error}")
    else:
        print(
            f"    {run.alerts_per_s:,.0f} alerts/s, {run.requests_per_s:,.0f} req/s, "
            f"p99 {run.latency_ms(99):.1f} ms",
            flush=True,
        )


def combine(trials: list[Run]) -> Run:
    """One row for several runs of a system and mode: speed (rates, latency, first
    card) from the median run by alerts/s; correctness (Slack limit, accounting,
    incidents) must hold in every run, so the worst of them is shown."""
    done = [r for r in trials if r.load and not r.error]
    if not done:
        return trials[0]
    done.sort(key=lambda r: r.alerts_per_s)
    median = done[(len(done) - 1) // 2]
    if len(trials) == 1:
        return median
    out = dataclasses.replace(median, checks=list(median.checks), notes=list(median.notes))
    _worst_correctness(out, trials, done)
    firsts = [r.first_event_ms if r.first_event_ms is not None else float("inf") for r in done]
    out.first_event_ms = sorted(firsts)[(len(firsts) - 1) // 2]
    if out.first_event_ms == float("inf"):
        out.first_event_ms = None
    out.notes.insert(0, _spread_note(done, firsts))
    for r in trials:
        if r is not median:
            out.notes += [f"(another run) {n}" for n in r.notes if n.startswith(("429", "client"))]
    return out


def _worst_correctness(out: Run, trials: list[Run], done: list[Run]) -> None:
    out.accounted = all(r.accounted for r in trials)
    incidents = [r.incidents for r in done]
    if len(set(incidents)) > 1:
        off = [i for i in incidents if i != out.mode.expected_incidents]
        out.incidents = off[0] if off else out.incidents
        out.notes.append(f"incidents per run: {incidents}")
    if out.system == "GRACE":
        out.ratelimited = sum(r.ratelimited or 0 for r in done)
        out.max_writes_1s = max(r.max_writes_1s or 0 for r in done)
    errors = [r.error for r in trials if r.error]
    if errors:
        out.accounted = False
        out.notes.append(f"{len(errors)} of {len(trials)} runs failed: {errors[0]}")


def _spread_note(done: list[Run], firsts: list[float]) -> str:
    def spread(values: list[float], spec: str) -> str:
        return " / ".join(format(v, spec) for v in values)

    return (
        f"{len(done)} runs; rates and latencies of the median run by alerts/s, "
        f"first ms the median of the runs: alerts/s "
        f"{spread([r.alerts_per_s for r in done], ',.0f')}; p99 ms "
        f"{spread([r.latency_ms(99) for r in done], '.1f')}; first ms "
        f"{spread(firsts, ',.0f')}"
    )


def _fmt(value: float | None, spec: str, none: str = "-") -> str:
    if value is None or value != value:  # None or NaN
        return none
    return format(value, spec)


TABLE_HEAD = [
    "system",
    "mode",
    "alerts/s",
    "req/s",
    "p50 ms",
    "p99 ms",
    "first ms",
    "incidents",
    "Slack max/1s",
    "429s",
    "server CPU",
    "client CPU",
    "accounted",
]


def table(runs: Sequence[Run]) -> str:
    rows = [TABLE_HEAD] + [_table_row(r) for r in runs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_HEAD))]
    lines = [
        "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _table_row(r: Run) -> list[str]:
    if r.error or not r.load:
        return [r.system, r.mode.name, "ERROR"] + [""] * (len(TABLE_HEAD) - 3)
    return [
        r.system,
        r.mode.name,
        _fmt(r.alerts_per_s, ",.0f"),
        _fmt(r.requests_per_s, ",.0f"),
        _fmt(r.latency_ms(50), ".2f"),
        _fmt(r.latency_ms(99), ".2f"),
        _fmt(r.first_event_ms, ",.0f", "none"),
        _fmt(r.incidents, "d"),
        _fmt(r.max_writes_1s, "d"),
        _fmt(r.ratelimited, "d"),
        f"{r.server_cpu_s / r.duration:.0%}",
        f"{r.load.cpu_s / r.duration:.0%}",
        "yes" if r.accounted else "NO",
    ]


def verdicts(runs: Sequence[Run], against: bool) -> list[Verdict]:
    out: list[Verdict] = []
    grace = {r.mode.name: r for r in runs if r.system == "GRACE"}
    am = {r.mode.name: r for r in runs if r.system == "Alertmanager"}
    for mode, g in grace.items():
        if g.error or not g.load:
            out.append((f"{mode}: GRACE ran", False, g.error or "no result"))
            continue
        out.append(_ratio_verdict(g, am.get(mode), against))
        out += _grace_verdicts(g)
    return out


def _ratio_verdict(g: Run, a: Run | None, against: bool) -> Verdict:
    mode = g.mode.name
    rate = "alerts/s" if mode == "batched" else "requests/s"
    target = f"{mode}: {rate} >= {MIN_RATIO}x Alertmanager's"
    if a is None or not a.load or a.error:
        why = "run with --against-alertmanager" if not against else "Alertmanager failed"
        return (target, None, why)
    mine = g.alerts_per_s if mode == "batched" else g.requests_per_s
    theirs = a.alerts_per_s if mode == "batched" else a.requests_per_s
    ratio = mine / theirs
    return (target, ratio >= MIN_RATIO, f"{mine:,.0f} / {theirs:,.0f} = {ratio:.2f}x")


def _grace_verdicts(g: Run) -> list[Verdict]:
    """GRACE's own targets: latency, first card, Slack's limit, nothing lost."""
    mode, p99, first = g.mode.name, g.latency_ms(99), g.first_event_ms
    writes_ok = (
        g.max_writes_1s is not None and g.max_writes_1s <= SLACK_BURST and g.ratelimited == 0
    )
    return [
        (f"{mode}: p99 < {MAX_P99_MS:g} ms", p99 < MAX_P99_MS, f"{p99:.1f} ms"),
        (
            f"{mode}: first card < {MAX_FIRST_CARD_MS:g} ms",
            first is not None and first < MAX_FIRST_CARD_MS,
            f"{first:,.0f} ms" if first is not None else "no card",
        ),
        (
            f"{mode}: every incident visible in Slack <= {MAX_ALL_VISIBLE_MS / 1000:g} s",
            g.all_visible_ms is not None and g.all_visible_ms <= MAX_ALL_VISIBLE_MS,
            f"{g.all_visible_ms / 1000:.1f} s" if g.all_visible_ms is not None else "not all",
        ),
        (
            f"{mode}: Slack writes <= limit ({SLACK_RATE:g}/s, burst {SLACK_BURST})",
            writes_ok,
            f"max {g.max_writes_1s} in 1 s, {g.ratelimited} x 429",
        ),
        (f"{mode}: nothing lost", g.accounted, "; ".join(g.checks)),
        (
            f"{mode}: incidents opened == {g.mode.expected_incidents}",
            g.incidents == g.mode.expected_incidents,
            f"{g.incidents} opened",
        ),
    ]


def report(runs: Sequence[Run], args: argparse.Namespace) -> str:
    lines = [table(runs), ""]
    lines.append(
        "first ms: GRACE = first alert sent -> its card in Slack; Alertmanager = "
        f"-> its first webhook notification (group_wait {AM_GROUP_WAIT_S:g}s)"
    )
    lines.append(
        "Slack max/1s: most successful chat.* writes to one channel in any 1 s window; "
        "429s: rate-limit refusals the Slack stand-in gave"
    )
    lines.append(
        "server CPU / client CPU: CPU time during the storm / its wall time "
        "(100% = one core; this machine has "
        f"{os.cpu_count()})"
    )
    for r in runs:
        lines.append(f"\n{r.system} {r.mode.name}: {r.mode.describe()}")
        if r.error:
            lines.append(f"  ERROR: {r.error}")
        for text in r.checks + r.notes:
            lines.append(f"  - {text}")
    lines += _ratios(runs)
    lines.append("\nTargets:")
    failed = False
    for name, ok, detail in verdicts(runs, args.against_alertmanager):
        word = "n/a " if ok is None else ("PASS" if ok else "FAIL")
        failed |= ok is False
        lines.append(f"  {word}  {name}: {detail}")
    lines.append("\nOVERALL: " + ("FAIL (see above)" if failed else "PASS"))
    return "\n".join(lines)


def _ratios(runs: Sequence[Run]) -> list[str]:
    grace = {r.mode.name: r for r in runs if r.system == "GRACE" and r.load}
    am = {r.mode.name: r for r in runs if r.system == "Alertmanager" and r.load}
    if not am:
        return []
    lines = ["\nGRACE / Alertmanager, same run, same client:"]
    for mode in grace:
        if mode in am:
            g, a = grace[mode], am[mode]
            lines.append(
                f"  {mode:8} alerts/s {g.alerts_per_s / a.alerts_per_s:.2f}x  "
                f"requests/s {g.requests_per_s / a.requests_per_s:.2f}x  "
                f"p99 {g.latency_ms(99):.1f} ms vs {a.latency_ms(99):.1f} ms  "
                f"(per server CPU second: alerts {g.alerts_per_cpu_s / a.alerts_per_cpu_s:.2f}x)"
            )
    return lines
