"""A playbook whose record falls is demoted one tier at once, and only once."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.autonomy import Autonomy, TierChange, demotion, effective
from engine.models import REQUIRED_APPROVALS, Plan, PlaybookStats, Target

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


def test_a_demoted_playbook_s_plan_asks_for_its_new_tier_s_approvals():
    plan = Plan(
        playbook_id="p",
        title="t",
        tier=1,
        target=Target(executor="sqlite", name="/db"),
        steps=(),
        checks=(),
    )
    assert effective(plan, None) is plan
    raised = effective(plan, change(2, 1))
    assert (raised.tier, raised.required_approvals) == (2, REQUIRED_APPROVALS[2])
    assert raised.hash != plan.hash  # approvals bind to the plan as it now stands
    stricter = plan.model_copy(update={"tier": 3, "required_approvals": 2})
    assert effective(stricter, change(2, 1)) is stricter  # never lowers a plan
