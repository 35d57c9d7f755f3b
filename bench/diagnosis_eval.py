"""How well GRACE reads what teams really send: the labelled set, scored.

    .venv/bin/python bench/diagnosis_eval.py [--samples tests/labelled] [--misses-only]

Every sample of tests/labelled/ (see its README) is read the way its source
delivers it, touching nothing (`grace simulate`'s reading), and compared with
what a careful on-call engineer expects. Printed: per source and per problem,
how many were understood (problem and target right), how many noise or
resolved samples got a proposal, every proposed target checked against the
allowlists on its own, and every miss. Exit status 1 when a target of issue
15 is not met: at least 95% understood, no proposal for noise, no target
outside the allowlists.
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import json
import re
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bot.settings import Settings
from bot.simulate import SLACK, SimulationError, Simulator

SAMPLES = Path(__file__).resolve().parents[1] / "tests" / "labelled"
SLACK_DIRS = ("slack", "people")
MIN_UNDERSTOOD = 0.95


@dataclass(frozen=True)
class Outcome:
    """One sample's result."""

    path: str
    source: str
    expect: Mapping[str, Any]
    got: str
    """What GRACE made of it, in a few words."""
    understood: bool | None
    """For samples expecting a problem: right or not. None for noise and resolved."""
    proposed: bool
    outside: bool = False
    """A proposed target that the allowlists, checked on their own, do not admit."""

    @property
    def kind(self) -> str:
        if "noise" in self.expect:
            return "noise"
        if self.expect.get("resolved"):
            return "resolved"
        return str(self.expect.get("problem"))

    @property
    def wrong(self) -> bool:
        return (
            self.outside
            or (self.understood is False)
            or (self.understood is None and self.proposed)
        )


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def expecting(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.understood is not None]

    @property
    def understood_share(self) -> float:
        expecting = self.expecting
        return sum(bool(o.understood) for o in expecting) / len(expecting) if expecting else 0.0

    @property
    def noise_proposals(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.understood is None and o.proposed]

    @property
    def outside(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.outside]

    @property
    def ok(self) -> bool:
        return (
            self.understood_share >= MIN_UNDERSTOOD
            and not self.noise_proposals
            and not self.outside
        )


class _World:
    """The files the samples name, re-rooted into a temporary folder."""

    def __init__(self, spec: Mapping[str, Any], root: Path) -> None:
        self.root = root
        roots = sorted(spec.get("roots", []), key=len, reverse=True)
        self._pattern = (
            re.compile(
                r"(?<![\w.@+/-])(" + "|".join(re.escape(r) for r in roots) + r")(?![\w.@+-])"
            )
            if roots
            else None
        )
        for name, content in spec.get("files", {}).items():
            path = Path(self.rooted(name))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content or "")

    def rooted(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda m: f"{self.root}{m.group(1)}", text)

    def unrooted(self, text: str) -> str:
        return text.replace(str(self.root), "")


async def evaluate(samples: Path = SAMPLES) -> Report:
    config = yaml.safe_load((samples / "config.yml").read_text())
    report = Report()
    with tempfile.TemporaryDirectory(prefix="grace-eval-") as tmp:
        world = _World(config.get("world", {}), Path(tmp))
        settings_data = json.loads(world.rooted(json.dumps(config.get("settings", {}))))
        settings = Settings(db=Path(tmp) / "grace.db", **settings_data)
        simulator = Simulator(settings)
        try:
            for name, sample in load_samples(samples):
                report.outcomes.append(await _score(simulator, world, settings, name, sample))
        finally:
            await simulator.aclose()
    return report


def load_samples(samples: Path = SAMPLES) -> list[tuple[str, dict[str, Any]]]:
    """(folder/file, sample) for every sample, folders and files in name order."""
    found = []
    for folder in sorted(p for p in samples.iterdir() if p.is_dir()):
        for path in sorted(folder.glob("*.json")):
            found.append((f"{folder.name}/{path.name}", json.loads(path.read_text())))
    return found


async def _score(
    simulator: Simulator, world: _World, settings: Settings, name: str, sample: dict[str, Any]
) -> Outcome:
    folder = name.split("/", 1)[0]
    source = SLACK if folder in SLACK_DIRS else folder
    expect = sample["expect"]
    payload = sample["payload"]
    raw = world.rooted(payload if isinstance(payload, str) else json.dumps(payload)).encode()
    try:
        simulation = await simulator.simulate(raw, source, sample.get("headers"))
    except SimulationError as exc:
        understood = None if ("noise" in expect or expect.get("resolved")) else False
        return Outcome(name, folder, expect, f"refused: {exc}", understood, proposed=False)
    opening = simulation.opening
    proposal = opening.proposal if opening else None
    if opening is None:
        got = "no alert" if not simulation.readings else "resolved, nothing firing"
    elif proposal is not None:
        target = world.unrooted(proposal.plan.target.name)
        got = f"{proposal.diagnosis.problem} -> {target} ({proposal.plan.playbook_id})"
    else:
        problem = opening.diagnoses[0].problem if opening.diagnoses else "no pattern"
        got = f"{problem}, no plan: {world.unrooted(opening.refusal or '')}"
    outside = proposal is not None and not _admitted(
        proposal.plan.target.executor, proposal.plan.target.name, settings.targets
    )
    if "noise" in expect or expect.get("resolved"):
        return Outcome(name, folder, expect, got, None, proposal is not None, outside)
    wanted_target = expect.get("target")
    if wanted_target is None:
        recognised = bool(opening and opening.diagnoses)
        first = opening.diagnoses[0].problem if opening and opening.diagnoses else None
        right = proposal is None and recognised and first == expect["problem"]
    else:
        right = (
            proposal is not None
            and proposal.diagnosis.problem == expect["problem"]
            and world.unrooted(proposal.plan.target.name) == wanted_target
        )
    return Outcome(name, folder, expect, got, right, proposal is not None, outside)


def _admitted(executor: str, name: str, targets: Mapping[str, Sequence[str]]) -> bool:
    """The allowlists read on their own, independent of the executors' checks."""
    for pattern in targets.get(executor, ()):
        if executor == "files":
            if name == pattern or name.startswith(pattern.rstrip("/") + "/"):
                return True
        elif fnmatch.fnmatchcase(name, pattern):
            return True
    return False


def print_report(report: Report, misses_only: bool = False) -> None:
    outcomes = report.outcomes
    if not misses_only:
        print(f"{len(outcomes)} labelled samples\n")
        _table("source", _group(outcomes, lambda o: o.source))
        print()
        _table("problem", _group(outcomes, lambda o: o.kind))
        print()
    wrong = [o for o in outcomes if o.wrong]
    print(f"misses ({len(wrong)}):" if wrong else "misses: none")
    for outcome in wrong:
        expected = json.dumps(outcome.expect, sort_keys=True)
        print(f"  {outcome.path}\n    expected {expected}\n    got      {outcome.got}")
    print()
    expecting = report.expecting
    understood = sum(bool(o.understood) for o in expecting)
    print(
        f"understood: {understood}/{len(expecting)} = {report.understood_share:.1%} "
        f"(target {MIN_UNDERSTOOD:.0%})"
    )
    noise = [o for o in outcomes if o.understood is None]
    print(f"proposals for noise or resolved: {len(report.noise_proposals)}/{len(noise)} (target 0)")
    proposed = sum(o.proposed for o in outcomes)
    print(f"targets outside the allowlists: {len(report.outside)}/{proposed} proposals (target 0)")


def _group(outcomes: list[Outcome], key: Any) -> dict[str, list[Outcome]]:
    groups: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        groups[key(outcome)].append(outcome)
    return dict(sorted(groups.items()))


def _table(title: str, groups: Mapping[str, list[Outcome]]) -> None:
    print(f"{'by ' + title:<36} {'samples':>7} {'understood':>10} {'noise':>6} {'noise->plan':>11}")
    for name, items in groups.items():
        counts = Counter(
            "understood" if o.understood else "noise" if o.understood is None else "missed"
            for o in items
        )
        expecting = sum(o.understood is not None for o in items)
        shown = f"{counts['understood']}/{expecting}" if expecting else "-"
        noise = counts["noise"]
        wrongly = sum(o.understood is None and o.proposed for o in items)
        print(f"{name:<36} {len(items):>7} {shown:>10} {noise:>6} {wrongly:>11}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=Path, default=SAMPLES)
    parser.add_argument("--misses-only", action="store_true")
    args = parser.parse_args(argv)
    report = asyncio.run(evaluate(args.samples))
    print_report(report, args.misses_only)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
