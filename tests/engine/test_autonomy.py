"""A playbook whose record falls is demoted one tier at once, and only once; one whose
record rises is proposed for promotion, which only an admin decides."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.autonomy import (
    Autonomy,
    ProposalState,
    TierChange,
    demotion,
    effective,
    promotion,
    tier_of,
)
from engine.earned import EarnedAutonomy, Verdict
from engine.models import REQUIRED_APPROVALS, Incident, Plan, PlaybookStats, Target
from engine.narration import Narrator
from engine.story import PromotionProposed
from tests.engine.fakes import FixedClock, MemoryStore, RecordingNotifier

POLICY = Autonomy()
AT = datetime(2026, 12, 7, tzinfo=UTC)


def stats(successes: int, attempts: int) -> PlaybookStats:
    return PlaybookStats(
        playbook_id="p", attempts=attempts, successes=successes, median_seconds=None
    )


def change(tier: int, base: int) -> TierChange:
    return TierChange(playbook_id="p", tier=tier, base_tier=base, by="grace", reason="r", at=AT)


@pytest.mark.parametrize(
    ("record", "base", "current", "demoted_to"),
    [
        (stats(0, 5), 1, None, 2),  # five failures: under the floor after enough runs
        (stats(4, 5), 1, None, 2),  # 80% raw, 38% at worst
        (stats(0, 4), 1, None, None),  # too few runs to judge
        (stats(49, 50), 1, None, None),  # 89.5% at worst clears the 80% floor
        (stats(0, 9), 1, change(2, 1), None),  # demoted already: one step, then people look
        (stats(0, 9), 3, None, None),  # tier 3 is the ceiling
        (stats(0, 9), 2, None, 3),
    ],
)
def test_demotion_needs_enough_runs_under_the_floor_and_happens_once(
    record, base, current, demoted_to
):
    assert demotion(record, base, current, POLICY) == demoted_to


def test_the_floor_and_the_runs_come_from_the_config():
    strict = Autonomy(demote_below=0.95, demote_after=50)
    assert demotion(stats(49, 50), 1, None, strict) == 2
    assert demotion(stats(40, 40), 1, None, strict) is None  # 40 runs are too few for it


def plan_at(tier: int, **more: object) -> Plan:
    target = Target(executor="sqlite", name="/db")
    return Plan(playbook_id="p", title="t", tier=tier, target=target, steps=(), checks=(), **more)


def test_a_demoted_playbook_s_plan_asks_for_its_new_tier_s_approvals():
    plan = plan_at(1)
    assert effective(plan, None) is plan
    raised = effective(plan, change(2, 1))
    assert (raised.tier, raised.required_approvals) == (2, REQUIRED_APPROVALS[2])
    assert raised.hash != plan.hash  # approvals bind to the plan as it now stands
    stricter = plan.model_copy(update={"tier": 3, "required_approvals": 2})
    assert effective(stricter, change(2, 1)) is stricter  # never lowers a plan


# LB(n/n) = n / (n + 1.96²): 20/20 is 83.9% at worst, 73/73 is 95.0%, 80/80 is 95.4%.
@pytest.mark.parametrize(
    ("record", "base", "current", "promoted_to"),
    [
        (stats(80, 80), 2, None, 1),  # 95.4% at worst after 80 runs clears the 95% bar
        (stats(20, 20), 2, None, None),  # enough runs, but 84% at worst is under the bar
        (stats(79, 80), 2, None, None),  # one failure keeps it under
        (stats(80, 80), 3, None, None),  # tier 3 is never promoted
        (stats(80, 80), 1, None, None),  # tier 1 cannot go lower
        (stats(80, 80), 1, change(2, 1), 1),  # a demoted playbook may earn its tier back
        (stats(80, 80), 2, change(1, 2), None),  # promoted already
        (stats(80, 80), 2, change(3, 2), None),  # demoted to 3: never promoted
    ],
)
def test_promotion_needs_enough_runs_over_the_bar_and_only_from_tier_2(
    record, base, current, promoted_to
):
    assert promotion(record, base, current, POLICY) == promoted_to


def test_the_bar_and_the_runs_of_a_promotion_come_from_the_config():
    eager = Autonomy(promote_above=0.4, min_runs=3)
    assert promotion(stats(2, 2), 2, None, eager) is None  # 34% at worst, and too few runs
    assert promotion(stats(3, 3), 2, None, eager) == 1  # 44% at worst after 3 runs
    assert promotion(stats(9, 9), 2, None, Autonomy(promote_above=0.4, min_runs=10)) is None


def test_a_promoted_playbook_s_plan_asks_only_what_its_new_tier_asks():
    plan = plan_at(2, approvers=("U0ONCALL",), required_approvals=2)
    lowered = effective(plan, change(1, 2))
    assert (lowered.tier, lowered.required_approvals, lowered.approvers) == (1, 0, ())
    assert lowered.hash != plan.hash
    # The catalog raised it to tier 3 since: an Accept for tier 2 does not lower it.
    raised = plan_at(3)
    assert effective(raised, change(1, 2)) is raised
    assert tier_of(3, change(1, 2)) == 3 and tier_of(2, change(1, 2)) == 1


def incident() -> Incident:
    return Incident.model_validate(
        {
            "id": 7,
            "state": "resolved",
            "fingerprint": "f",
            "alert": {"source": "t", "source_key": "k", "name": "A", "received_at": AT},
            "channel": "C0ALERTS",
            "created_at": AT,
            "updated_at": AT,
        }
    )


def earned(store: MemoryStore, notifier: RecordingNotifier) -> EarnedAutonomy:
    return EarnedAutonomy(
        store,
        Narrator(notifier),
        store.clock,
        Autonomy(promote_above=0.4, min_runs=3),
        {"p": 2},
        frozenset({"U0LEAD"}),
    )


async def test_a_record_over_the_bar_proposes_once_and_only_an_admin_decides():
    store = MemoryStore(FixedClock())
    notifier = RecordingNotifier(store)
    autonomy = earned(store, notifier)
    for n in (2, 3, 4):  # 2/2 is too few runs; 3/3 proposes; 4/4 finds it open
        await autonomy.learned(incident(), plan_at(2), stats(n, n), success=True)
    [event] = notifier.proposals
    assert isinstance(event, PromotionProposed)
    proposal = event.proposal
    assert (proposal.from_tier, proposal.to_tier, proposal.attempts) == (2, 1, 3)
    assert proposal.channel == "C0ALERTS" and round(proposal.lower_bound, 4) == 0.4385

    refused = await autonomy.decide(proposal.id, "U0ONCALL", accept=True)
    assert refused.verdict is Verdict.REFUSED and store.tiers == {}
    assert store.audit_rows[-1][:2] == ("U0ONCALL", "promotion.refused")

    accepted = await autonomy.decide(proposal.id, "U0LEAD", accept=True)
    assert accepted.verdict is Verdict.DECIDED
    assert accepted.proposal.state is ProposalState.ACCEPTED
    assert accepted.proposal.decided_by == "U0LEAD"
    change_ = store.tiers["p"]
    assert (change_.tier, change_.base_tier, change_.by) == (1, 2, "U0LEAD")
    assert change_.reason.startswith("3/3 succeeded, 44% at worst")
    again = await autonomy.decide(proposal.id, "U0LEAD", accept=False)
    assert again.verdict is Verdict.DECIDED_BEFORE
    assert again.proposal.state is ProposalState.ACCEPTED
    # Promoted: tier 1 now, so no further proposal.
    await autonomy.learned(incident(), plan_at(1), stats(9, 9), success=True)
    assert len(notifier.proposals) == 1


async def test_a_failure_that_demotes_withdraws_the_open_proposal():
    store = MemoryStore(FixedClock())
    notifier = RecordingNotifier(store)
    autonomy = earned(store, notifier)
    await autonomy.learned(incident(), plan_at(2), stats(3, 3), success=True)
    [event] = notifier.proposals
    await autonomy.learned(incident(), plan_at(2), stats(3, 9), success=False)
    assert store.tiers["p"].tier == 3
    assert store.proposals[event.proposal.id].state is ProposalState.DISMISSED
    late = await autonomy.decide(event.proposal.id, "U0LEAD", accept=True)
    assert late.verdict is Verdict.DECIDED_BEFORE and store.tiers["p"].tier == 3


async def test_a_promoted_playbook_heals_at_once_but_a_person_s_words_still_wait(world):
    w = world(tier=2)
    w.store.tiers["fix-thing"] = TierChange(
        playbook_id="fix-thing", tier=1, base_tier=2, by="U0LEAD", reason="r", at=AT
    )
    healed = await w.open(w.alert())
    assert w.store.incidents[healed.id].state.value == "resolved"
    assert w.store.incidents[healed.id].plan.tier == 1
    asked = await w.open(w.alert(thing="db9", reporter="U0MONITOR"))
    assert asked.state.value == "awaiting_approval"
    assert (asked.plan.tier, asked.plan.required_approvals) == (2, 1)
