"""Playbooks ranked by how sure GRACE may be that they work, not by their raw rate."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.evidence import lower_bound, ranked, record, why_chosen, wilson_lower_bound
from engine.models import PlaybookStats


def stats(playbook: str, successes: int, attempts: int, median: float | None = 41.0):
    return PlaybookStats(
        playbook_id=playbook,
        attempts=attempts,
        successes=successes,
        median_seconds=median if attempts else None,
    )


@pytest.mark.parametrize(
    ("successes", "attempts", "bound"),
    [(1, 1, 0.2065), (48, 50, 0.8654), (12, 13, 0.6669), (3, 10, 0.1078), (0, 5, 0.0)],
)
def test_the_lower_bound_is_wilsons_at_95_percent(successes, attempts, bound):
    assert wilson_lower_bound(successes, attempts) == pytest.approx(bound, abs=1e-4)


def test_no_attempts_is_no_evidence_and_nonsense_is_refused():
    assert wilson_lower_bound(0, 0) == 0.0
    with pytest.raises(ValueError):
        wilson_lower_bound(3, 2)


@given(st.integers(0, 500).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_the_bound_lies_under_the_rate_and_grows_with_evidence(run):
    successes, attempts = run
    bound = wilson_lower_bound(successes, attempts)
    assert 0.0 <= bound <= (successes / attempts if attempts else 0.0) + 1e-12
    # The same rate over ten times the runs is surer.
    assert wilson_lower_bound(successes * 10, attempts * 10) >= bound - 1e-12


def test_a_long_record_outranks_a_lucky_run_and_an_untried_one_outranks_a_failing_one():
    known = {
        "lucky": stats("lucky", 1, 1),
        "proven": stats("proven", 48, 50),
        "new": stats("new", 0, 0),
        "also-new": stats("also-new", 0, 0),
        "failing": stats("failing", 0, 3),
    }
    assert ranked(["failing", "new", "lucky", "also-new", "proven"], known) == [
        "proven",
        "lucky",
        "new",
        "also-new",
        "failing",
    ]
    assert lower_bound(known["proven"]) > lower_bound(known["lucky"])


def test_the_card_line_says_the_record_and_what_it_was_ranked_above():
    known = {"a": stats("a", 12, 13, 41.0), "b": stats("b", 3, 10, 200.0), "c": stats("c", 0, 0)}
    assert record(known["a"]) == "12/13 succeeded, 67% at worst, median 41 s"
    assert record(known["b"]) == "3/10 succeeded, 11% at worst, median 3 min"
    assert record(known["c"]) == "never run yet"
    assert why_chosen("a", ["b", "c"], known) == (
        "`a`: 12/13 succeeded, 67% at worst, median 41 s. Ranked above "
        "`b`: 3/10 succeeded, 11% at worst, median 3 min; `c`: never run yet"
    )
    assert why_chosen("c", [], known) == "`c`: never run yet"
