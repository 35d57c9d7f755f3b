"""From a diagnosis and a playbook to a concrete, hashable plan."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from engine.catalog import PlaybookSpec
from engine.models import (
    Alert,
    Diagnosis,
    Plan,
    PlannedBenchmark,
    PlannedCheck,
    PlannedStep,
    Target,
)
from engine.ports import Executor, TargetMissing, TargetRefused


@dataclass(frozen=True)
class Targeted:
    """A plan, and the labels that named its target (the candidate the allowlist
    admitted, when the text offered several)."""

    plan: Plan
    labels: Mapping[str, str]


def make_plan(
    playbook: PlaybookSpec,
    alert: Alert,
    executor: Executor,
    allowlist: Sequence[str],
    diagnosis: Diagnosis | None = None,
) -> Plan:
    """Raises TargetMissing when the alert names no target, TargetRefused when
    the executor's allowlist does not admit the one it names.

    The alert is untrusted: the target is only ever what the executor's
    allowlist check returns, never the raw label.
    """
    return target_plan(playbook, alert, executor, allowlist, diagnosis).plan


def target_plan(
    playbook: PlaybookSpec,
    alert: Alert,
    executor: Executor,
    allowlist: Sequence[str],
    diagnosis: Diagnosis | None = None,
) -> Targeted:
    """make_plan, telling which labels named the target."""
    labels = found(alert, diagnosis)
    if playbook.target.name_from(labels) is None:
        raise TargetMissing(_nothing_found(playbook, labels, diagnosis))
    target, labels = _first_admitted(playbook, labels, diagnosis, executor, allowlist)
    return Targeted(_plan(playbook, target), labels)


def _plan(playbook: PlaybookSpec, target: Target) -> Plan:
    return Plan(
        playbook_id=playbook.id,
        title=playbook.title,
        tier=playbook.tier,
        target=target,
        steps=tuple(
            PlannedStep(action=s.action, params=s.params, timeout_s=s.timeout)
            for s in playbook.steps
        ),
        checks=tuple(PlannedCheck(check=c.check, params=c.params) for c in playbook.checks),
        benchmarks=tuple(
            PlannedBenchmark(benchmark=b.benchmark, params=b.params, tolerance=b.tolerance)
            for b in playbook.benchmarks
        ),
        approvers=tuple(playbook.approval.approvers) if playbook.approval else (),
        required_approvals=playbook.required_approvals,
    )


def found(alert: Alert, diagnosis: Diagnosis | None) -> Mapping[str, str]:
    """What the pattern found to act on: its facts, when it says where targets
    are (a kube-state-metrics alert's own `pod` label is the scraper's, not the
    workload's; a `db` label naming a database by name is no file); all the
    labels, for a pattern that does not say."""
    if diagnosis is not None and (diagnosis.facts or diagnosis.looked_for):
        return diagnosis.facts
    return alert.labels


def _first_admitted(
    playbook: PlaybookSpec,
    labels: Mapping[str, str],
    diagnosis: Diagnosis | None,
    executor: Executor,
    allowlist: Sequence[str],
) -> tuple[Target, Mapping[str, str]]:
    """The first candidate the executor admits; the first refusal when none is.

    Only text offers several candidates (a person's message names a few
    things): whichever the allowlist admits is the one GRACE may act on.
    """
    fact = playbook.target.from_label
    others = diagnosis.alternatives.get(fact, ()) if diagnosis else ()
    first: TargetRefused | None = None
    for candidate in (labels[fact], *others):
        named = {**labels, fact: candidate}
        value = playbook.target.name_from(named)
        assert value is not None, "the scope was found with the first candidate"
        try:
            return executor.resolve_target(value, allowlist), named
        except TargetRefused as refusal:
            first = first or refusal
    assert first is not None
    raise first


def _nothing_found(
    playbook: PlaybookSpec, labels: Mapping[str, str], diagnosis: Diagnosis | None
) -> str:
    """Which facts are missing and where each was looked for."""
    looked_for = diagnosis.looked_for if diagnosis else {}
    wanted = [playbook.target.scope_label, playbook.target.from_label]
    missing = [fact for fact in wanted if fact is not None and not labels.get(fact)]
    parts = [
        f"`{fact}` (looked in {_or(looked_for.get(fact) or (f'label `{fact}`',))})"
        for fact in missing
    ]
    return f"nothing in the alert names its {' or '.join(parts)}"


def _or(places: Sequence[str]) -> str:
    return places[0] if len(places) == 1 else f"{', '.join(places[:-1])} and {places[-1]}"
