"""From an alert to a proposed plan: diagnosis, playbook, target, plan.

Shared by alerts, by a person's `/grace heal` request and by dry runs, so all
three refuse the same things with the same words.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from engine.catalog import Catalog, PlaybookSpec
from engine.evidence import ranked, why_chosen
from engine.models import (
    Alert,
    Availability,
    Diagnosis,
    Plan,
    PlaybookStats,
    at_least_tier,
)
from engine.planning import Targeted, found, target_plan
from engine.ports import Executor, TargetMissing, TargetRefused

MANUAL = "manual"  # the source of alerts that are a person's request to run a playbook
PLAYBOOK_LABEL = "playbook"
PEOPLE_TIER = 2  # what a person's message leads to always waits for an approval


Records = Callable[[Sequence[str]], Awaitable[Mapping[str, PlaybookStats]]]
"""Each named playbook's record so far (the store's pre-aggregated statistics)."""


class Refused(Exception):
    """Why no plan can be proposed, worded for the person who will read it."""


class TargetHeld(Refused):
    """The target is in safe hold since an earlier incident: GRACE will not touch it.

    `target` goes into the story (NeedsHuman.held), for bot/ to say how it is cleared."""

    def __init__(self, target: str, incident_id: int) -> None:
        super().__init__(
            f"`{target}` is in safe hold since incident #{incident_id}: GRACE will not touch "
            "it until a person checks it and an admin clears it."
        )
        self.target = target


@dataclass(frozen=True)
class Proposal:
    diagnosis: Diagnosis
    plan: Plan
    request: str | None = None
    """`PLAYBOOK TARGET` as a person would ask for this plan with `/grace heal`."""


@dataclass(frozen=True)
class Reading:
    """How GRACE reads one alert, touching nothing: `grace simulate`, the
    "Heal this" shortcut and the labelled set's evaluation show it."""

    alert: Alert
    diagnoses: tuple[Diagnosis, ...]
    """Every pattern that recognised it, in the catalog's order."""
    misses: tuple[tuple[str, str], ...]
    """(pattern, why not) for the patterns about its name that did not match."""
    proposal: Proposal | None
    refusal: str | None
    because: Mapping[str, str]
    """pattern -> what in the alert it matched on, for each diagnosis."""


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
    records: Records | None = None,
) -> Proposal:
    """The first reading of the alert that yields a plan; raises Refused with
    the first reading's reason when none does. Nothing is touched either way.

    Several patterns may recognise one problem in one alert (its name, and a
    signature in its text): each is tried in the catalog's order, so a later
    one can still find the target an earlier one could not. Several playbooks
    may treat one diagnosis: with `records`, they are tried best record first
    (engine/evidence.py), and the diagnosis says why the one chosen was.
    """
    first: Refused | None = None
    for diagnosis, candidates in _readings(alert, catalog):
        known = await records([p.id for p in candidates]) if records is not None else None
        order = candidates
        if known is not None:
            by_id = {p.id: p for p in candidates}
            order = [by_id[i] for i in ranked(list(by_id), known)]
        for n, playbook in enumerate(order):
            try:
                targeted = await _plan(
                    alert, diagnosis, playbook, executors, allowlists, availability
                )
            except Refused as refusal:
                first = first or refusal
                continue
            named = targeted.labels
            fact = playbook.target.from_label
            if diagnosis.facts.get(fact, named[fact]) != named[fact]:
                # The text offered several; the diagnosis tells of the one acted on.
                diagnosis = catalog.with_fact(diagnosis, alert, fact, named[fact])
            if known is not None:
                below = [p.id for p in order[n + 1 :]]
                diagnosis = diagnosis.model_copy(
                    update={"evidence": why_chosen(playbook.id, below, known)}
                )
            typed = playbook.target.typed_from(named)
            request = f"{playbook.id} {typed}" if typed else None
            return Proposal(diagnosis, for_people(alert, targeted.plan), request)
    assert first is not None, "_readings yields at least one reading or raises"
    raise first


async def read(
    alert: Alert,
    catalog: Catalog,
    executors: Mapping[str, Executor],
    allowlists: Mapping[str, Sequence[str]],
    availability: Callable[[Executor], Awaitable[Availability]],
    records: Records | None = None,
) -> Reading:
    """Everything GRACE makes of an alert: its readings, the near misses and the
    plan it would propose, or why it would propose none."""
    proposal: Proposal | None = None
    refusal: str | None = None
    try:
        proposal = await propose(alert, catalog, executors, allowlists, availability, records)
    except Refused as refused:
        refusal = str(refused)
    manual = alert.source == MANUAL
    diagnoses = () if manual else tuple(catalog.diagnoses(alert))
    misses = tuple((p.id, why) for p, why in catalog.near_misses(alert))
    because = (
        {} if manual else {p.id: p.because(alert) for p in catalog.patterns if p.matches(alert)}
    )
    return Reading(alert, diagnoses, misses, proposal, refusal, because)


async def _plan(
    alert: Alert,
    diagnosis: Diagnosis,
    playbook: PlaybookSpec,
    executors: Mapping[str, Executor],
    allowlists: Mapping[str, Sequence[str]],
    availability: Callable[[Executor], Awaitable[Availability]],
) -> Targeted:
    executor = executors.get(playbook.target.executor)
    if executor is None:
        raise Refused(f"The `{playbook.target.executor}` executor is not configured.")
    answer = await availability(executor)
    if not answer.ok:
        raise Refused(f"The `{executor.name}` executor cannot act here: {answer.reason}")
    try:
        allowlist = allowlists.get(executor.name, ())
        return target_plan(playbook, alert, executor, allowlist, diagnosis)
    except TargetMissing as missing:
        raise Refused(f"{_recognised(alert, diagnosis)}, but {missing}.") from None
    except TargetRefused as refusal:
        raise Refused(f"Refused, nothing was touched: {refusal}") from None


def from_a_person(alert: Alert) -> bool:
    """Posted by a person rather than an integration (a request by name aside)."""
    return alert.reporter is not None and alert.source != MANUAL


def for_people(alert: Alert, plan: Plan) -> Plan:
    """What a person's message leads to always waits for an approval: tier 2 at least."""
    return at_least_tier(plan, PEOPLE_TIER) if from_a_person(alert) else plan


def dry_run(plan: Plan, executors: Mapping[str, Executor]) -> DryRun:
    executor = executors[plan.target.executor]
    return DryRun(plan=plan, snapshot=executor.describe_snapshot(plan.target))


def _readings(alert: Alert, catalog: Catalog) -> Iterator[tuple[Diagnosis, list[PlaybookSpec]]]:
    """Each diagnosis the alert can be read as, in order, with the playbooks that
    treat it; Refused when there is none, saying what was recognised or why nothing was."""
    if alert.source == MANUAL:
        diagnosis, playbook = _requested(alert, catalog)
        yield diagnosis, [playbook]
        return
    diagnoses = catalog.diagnoses(alert)
    if not diagnoses:
        raise Refused(_unrecognised(alert, catalog))
    # An alert's first pattern names the problem; later ones of the same problem
    # may still find its target. A problem no playbook treats is left to a
    # person, never handed to another pattern's playbook (an alarm without data
    # is no high CPU). A person's words may tell of several troubles: each is
    # read in turn, and every plan they lead to waits for an approval.
    problem = diagnoses[0].problem
    for diagnosis in diagnoses:
        if diagnosis.problem != problem and not from_a_person(alert):
            continue
        candidates = catalog.playbooks_for(diagnosis.problem, found(alert, diagnosis))
        if not candidates:
            raise Refused(f"{_recognised(alert, diagnosis)}, but no playbook treats it.")
        yield diagnosis, candidates


def _requested(alert: Alert, catalog: Catalog) -> tuple[Diagnosis, PlaybookSpec]:
    """A person's request for a playbook by name: the request is the diagnosis."""
    playbook_id = alert.labels.get(PLAYBOOK_LABEL, "")
    playbook = catalog.playbook(playbook_id)
    if playbook is None:
        known = ", ".join(p.id for p in catalog.playbooks)
        raise Refused(f"There is no playbook `{playbook_id}`. Known: {known}.")
    # Who asked is the alert's reporter: the bot names them on the card.
    diagnosis = Diagnosis(
        pattern_id=MANUAL,
        problem=playbook.treats[0],
        explanation=f"Asked for “{playbook.title}” by name.",
    )
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
