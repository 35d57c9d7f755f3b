"""From a diagnosis and a playbook to a concrete, hashable plan."""

from __future__ import annotations

from collections.abc import Sequence

from engine.catalog import PlaybookSpec
from engine.models import Alert, Plan, PlannedBenchmark, PlannedCheck, PlannedStep
from engine.ports import Executor, TargetRefused


def make_plan(
    playbook: PlaybookSpec, alert: Alert, executor: Executor, allowlist: Sequence[str]
) -> Plan:
    """Raises TargetRefused when the alert does not name an allowlisted target.

    The alert is untrusted: the target is only ever what the executor's
    allowlist check returns, never the raw label.
    """
    value = playbook.target.name_from(alert.labels)
    if value is None:
        raise TargetRefused(
            f"The alert has no `{playbook.target.shape}` label, so there is no target to act on."
        )
    target = executor.resolve_target(value, allowlist)
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
