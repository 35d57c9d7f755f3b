"""From a diagnosis and a playbook to a concrete, hashable plan."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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
    allowlist check returns, never the raw label. The diagnosis' facts (the
    target as its pattern found it, under the playbook's label names) come first.
    """
    labels = {**alert.labels, **diagnosis.facts} if diagnosis else alert.labels
    if playbook.target.name_from(labels) is None:
        raise TargetMissing(_nothing_found(playbook, labels, diagnosis))
    target = _first_admitted(playbook, labels, diagnosis, executor, allowlist)
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


def _first_admitted(
    playbook: PlaybookSpec,
    labels: Mapping[str, str],
    diagnosis: Diagnosis | None,
    executor: Executor,
    allowlist: Sequence[str],
) -> Target:
    """The first candidate the executor admits; the first refusal when none is.

    Only text offers several candidates (a person's message names a few
    things): whichever the allowlist admits is the one GRACE may act on.
    """
    fact = playbook.target.from_label
    others = diagnosis.alternatives.get(fact, ()) if diagnosis else ()
    first: TargetRefused | None = None
    for candidate in (labels[fact], *others):
        value = playbook.target.name_from({**labels, fact: candidate})
        assert value is not None, "the scope was found with the first candidate"
        try:
            return executor.resolve_target(value, allowlist)
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
