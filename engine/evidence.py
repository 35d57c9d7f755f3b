"""How sure GRACE may be that a playbook works: the lower bound of its success rate.

A raw rate ranks a playbook that worked once (1/1, 100%) above one that
worked 48 times in 50 (96%). The Wilson score interval's lower bound at 95%
accounts for how few runs there were: 1/1 is 21% at worst, 48/50 is 87%.
Playbooks that treat the same diagnosis are ranked by it, and the card
says why the one chosen was.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from engine.models import PlaybookStats

Z_95 = 1.959963984540054
"""The normal quantile of a two-sided 95% interval."""


def wilson_lower_bound(successes: int, attempts: int, z: float = Z_95) -> float:
    """The lower end of the Wilson score interval; 0.0 with no attempts."""
    if not 0 <= successes <= max(attempts, 0):
        raise ValueError(f"{successes} successes in {attempts} attempts")
    if successes == 0:
        return 0.0  # exactly: the formula leaves a rounding error that would rank 0/3 above 0/0
    rate = successes / attempts
    z2 = z * z
    centre = rate + z2 / (2 * attempts)
    spread = z * math.sqrt(rate * (1 - rate) / attempts + z2 / (4 * attempts * attempts))
    return max(0.0, (centre - spread) / (1 + z2 / attempts))


def lower_bound(stats: PlaybookStats) -> float:
    return wilson_lower_bound(stats.successes, stats.attempts)


def record(stats: PlaybookStats) -> str:
    """`12/13 succeeded, 67% at worst, median 41 s`, or that it never ran."""
    if stats.attempts == 0:
        return "never run yet"
    worst = f"{lower_bound(stats):.0%} at worst"
    median = "" if stats.median_seconds is None else f", median {_seconds(stats.median_seconds)}"
    return f"{stats.successes}/{stats.attempts} succeeded, {worst}{median}"


def ranked(candidates: Sequence[str], stats: Mapping[str, PlaybookStats]) -> list[str]:
    """Playbook ids by lower bound, best first. Among equal bounds the one that
    failed less goes first (0/3 and a new playbook are both 0% at worst: the new
    one gets its chance), then the catalog's order (a user's playbook before a
    built-in)."""

    def key(playbook: str) -> tuple[float, int]:
        known = stats[playbook]
        return -lower_bound(known), known.attempts - known.successes

    return sorted(candidates, key=key)


def why_chosen(chosen: str, others: Sequence[str], stats: Mapping[str, PlaybookStats]) -> str:
    """The card's line: this playbook's record, and those it was ranked above."""
    line = f"`{chosen}`: {record(stats[chosen])}"
    if others:
        over = "; ".join(f"`{other}`: {record(stats[other])}" for other in others)
        line += f". Ranked above {over}"
    return line


def _seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"
