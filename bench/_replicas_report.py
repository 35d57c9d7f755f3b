"""What the replicas bench prints: progress as phases end, then per phase a table
of every configuration (the median run by rate, every run's rate beside it), the
notes, and a PASS or FAIL line for each configuration's checks."""

from __future__ import annotations

import math
from collections.abc import Sequence

from _replicas_cluster import Config
from _replicas_phases import Phase


def storm_rate(p: Phase) -> float:
    return p.sent / p.send_s if p.load and p.send_s > 0 else float("nan")


def heal_rate(p: Phase) -> float:
    return p.sent / p.done_s if p.done_s else float("nan")


def progress(kind: str, p: Phase) -> str:
    if kind == "storm":
        head = (
            f"{storm_rate(p):,.0f} alerts/s, p50 {p.latency_ms(50):.1f} ms,"
            f" p99 {p.latency_ms(99):.1f} ms, at rest after {_s(p.done_s)} s"
        )
    else:
        head = f"{heal_rate(p):,.1f} heals/s, all resolved after {_s(p.done_s)} s"
    return f"    {head}; {'checks PASS' if not p.fails else 'FAIL: ' + '; '.join(p.fails)}"


def report(configs: Sequence[Config], storms: list[Phase], heals: list[Phase]) -> str:
    out = ["Storm ingestion (the median run by alerts/s; of an even count, the slower middle)", ""]
    out += _table(
        [
            "config",
            "alerts/s",
            "p50 ms",
            "p99 ms",
            "at rest s",
            "GRACE CPU",
            "PG CPU",
            "per replica",
            "runs alerts/s",
        ],
        [
            [
                c.name,
                f"{storm_rate(m):,.0f}",
                f"{m.latency_ms(50):.2f}",
                f"{m.latency_ms(99):.2f}",
                _s(m.done_s),
                _pct(m.replicas_cpu_s, m.send_s),
                _pct(m.pg_cpu_s, m.send_s) if c.store == "postgresql" else "-",
                m.spread,
                " / ".join(f"{storm_rate(r):,.0f}" for r in runs),
            ]
            for c, runs, m in _by_config(configs, storms, storm_rate)
        ],
    )
    out += ["", "Heals (the median run by heals/s; of an even count, the slower middle)", ""]
    out += _table(
        [
            "config",
            "heals",
            "heals/s",
            "resolved s",
            "send s",
            "GRACE CPU",
            "PG CPU",
            "runners",
            "runs heals/s",
        ],
        [
            [
                c.name,
                str(m.sent),
                f"{heal_rate(m):,.1f}",
                _s(m.done_s),
                _s(m.send_s),
                _pct(m.replicas_cpu_s, m.done_s),
                _pct(m.pg_cpu_s, m.done_s) if c.store == "postgresql" else "-",
                m.spread,
                " / ".join(f"{heal_rate(r):,.1f}" for r in runs),
            ]
            for c, runs, m in _by_config(configs, heals, heal_rate)
        ],
    )
    out += ["", "Notes (every run):"]
    for kind, phases in (("storm", storms), ("heals", heals)):
        for i, p in enumerate(phases):
            out += [f"  [{kind} {p.config.name} #{i // len(configs) + 1}] {n}" for n in p.notes]
    out += ["", "Checks (every run):"]
    failed = False
    for kind, phases in (("storm", storms), ("heals", heals)):
        for c in configs:
            mine = [p for p in phases if p.config == c]
            fails = [f for p in mine for f in p.fails]
            failed |= bool(fails)
            verdict = "PASS" if not fails else "FAIL"
            detail = "; ".join(fails) if fails else _passed(kind, mine)
            out.append(f"  {verdict}  {kind} {c.name}: {detail}")
    out += ["", f"OVERALL: {'FAIL (see above)' if failed else 'PASS'}"]
    return "\n".join(out)


def _passed(kind: str, phases: list[Phase]) -> str:
    if kind == "storm":
        return (
            f"{len(phases)} run(s): every alert answered 200 and stored once, one incident"
            " per group, alert_count adds up, no Slack message twice"
        )
    return (
        f"{len(phases)} run(s): one incident per target, all resolved, each plan ran once,"
        " every WAL truncated, no Slack message twice"
    )


def _by_config(
    configs: Sequence[Config], phases: list[Phase], rate: object
) -> list[tuple[Config, list[Phase], Phase]]:
    rows = []
    for c in configs:
        runs = [p for p in phases if p.config == c]
        if not runs:
            continue
        ranked = sorted(runs, key=lambda p: _finite(rate(p)))  # type: ignore[operator]
        rows.append((c, runs, ranked[(len(ranked) - 1) // 2]))
    return rows


def _finite(x: float) -> float:
    return x if not math.isnan(x) else -1.0


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(head)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i in (0, len(cells) - 1) else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(head), line(["-" * w for w in widths]), *map(line, rows)]


def _s(seconds: float | None) -> str:
    return "-" if seconds is None or math.isnan(seconds) else f"{seconds:.2f}"


def _pct(cpu: float, window: float | None) -> str:
    return f"{100 * cpu / window:.0f}%" if window else "-"
