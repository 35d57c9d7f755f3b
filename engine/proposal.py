"""From an alert to a proposed plan: diagnosis, playbook, target, plan.

Shared by alerts, by a person's `/grace heal` request and by dry runs, so all
three refuse the same things with the same words.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from engine.catalog import Catalog, PlaybookSpec
from engine.models import Alert, Availability, Diagnosis, Plan
from engine.planning import make_plan
from engine.ports import Executor, TargetMissing, TargetRefused

MANUAL = "manual"  # the source of alerts that are a person's request to run a playbook
PLAYBOOK_LABEL = "playbook"


class Refused(Exception):
    """Why no plan can be proposed, worded for the person who will read it."""


@dataclass(frozen=True)
class Proposal:
    diagnosis: Diagnosis
    plan: Plan


class DryRun(BaseModel):
    """Everything a heal would do, touching nothing."""

    model_config = ConfigDict(frozen=True)

    plan: Plan
    snapshot: str


def manual_request(playbook: PlaybookSpec, target: str) -> dict[str, str]:
    """The labels of a person's request: which playbook, and its target as its label(s)."""
    return {PLAYBOOK_LABEL: playbook.id, **playbook.target.labels_for(target)}


async def propose(
    alert: Alert,
    catalog: Catalog,
    executors: Mapping[str, Executor],
    allowlists: Mapping[str, Sequence[str]],
    availability: Callable[[Executor], Awaitable[Availability]],
) -> Proposal:
    """Raises Refused; nothing is touched either way."""
    diagnosis, playbook = _diagnose(alert, catalog)
    executor = executors.get(playbook.target.executor)
    if executor is None:
        raise Refused(f"The `{playbook.target.executor}` executor is not configured.")
    answer = await availability(executor)
    if not answer.ok:
        raise Refused(f"The `{executor.name}` executor cannot act here: {answer.reason}")
    try:
        plan = make_plan(playbook, alert, executor, allowlists.get(executor.name, ()), diagnosis)
    except TargetMissing as missing:
        raise Refused(f"{_recognised(alert, diagnosis)}, but {missing}.") from None
    except TargetRefused as refusal:
        raise Refused(f"Refused, nothing was touched: {refusal}") from None
    return Proposal(diagnosis, plan)


def dry_run(plan: Plan, executors: Mapping[str, Executor]) -> DryRun:
    executor = executors[plan.target.executor]
    return DryRun(plan=plan, snapshot=executor.describe_snapshot(plan.target))


def _diagnose(alert: Alert, catalog: Catalog) -> tuple[Diagnosis, PlaybookSpec]:
    if alert.source == MANUAL:
        playbook_id = alert.labels.get(PLAYBOOK_LABEL, "")
        playbook = catalog.playbook(playbook_id)
        if playbook is None:
            known = ", ".join(p.id for p in catalog.playbooks)
            raise Refused(f"There is no playbook `{playbook_id}`. Known: {known}.")
        asked = f"<@{alert.reporter}> asked" if alert.reporter else "Someone asked"
        diagnosis = Diagnosis(
            pattern_id=MANUAL,
            problem=playbook.treats[0],
            explanation=f"{asked} for “{playbook.title}”.",
        )
        return diagnosis, playbook
    diagnosis = catalog.diagnose(alert)
    if diagnosis is None:
        raise Refused(_unrecognised(alert, catalog))
    playbook = catalog.playbook_for(diagnosis.problem, {**alert.labels, **diagnosis.facts})
    if playbook is None:
        raise Refused(f"{_recognised(alert, diagnosis)}, but no playbook treats it.")
    return diagnosis, playbook


def _recognised(alert: Alert, diagnosis: Diagnosis) -> str:
    return f"Recognised `{alert.name}` as `{diagnosis.problem}` (pattern `{diagnosis.pattern_id}`)"


def _unrecognised(alert: Alert, catalog: Catalog) -> str:
    """ "No pattern recognises it" only when that is true: a pattern about this
    alert name that did not match says why not."""
    misses = catalog.near_misses(alert)
    if not misses:
        return f"No pattern recognises `{alert.name}`."
    why = "; ".join(f"pattern `{pattern.id}`: {reason}" for pattern, reason in misses)
    return f"`{alert.name}` is known, but no pattern for it matched this alert ({why})."
