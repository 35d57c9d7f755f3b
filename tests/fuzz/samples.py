"""Real payloads (tests/engine/intake/samples), mutated: hostile text, odd instants and any
JSON in place of some of their values, some keys gone. A mutated real payload gets past
a parser's first checks, so the fuzz reaches what lies behind them."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from tests.fuzz.strategies import MARKERS, instants, json_values, mostly, texts

SAMPLES = Path(__file__).parents[1] / "engine" / "intake" / "samples"
_MAX_NODES = 60
"""Values of one document considered for a change: enough to reach every part of a sample."""


@cache
def samples(source: str) -> tuple[Any, ...]:
    return tuple(json.loads(p.read_text()) for p in sorted((SAMPLES / source).glob("*.json")))


_replacements = st.one_of(texts, texts, st.sampled_from(MARKERS), instants, json_values)


@st.composite
def mutated(draw: st.DrawFn, document: Any) -> Any:
    """`document` with about one value in eight replaced and one key in twenty dropped."""
    budget = [_MAX_NODES]

    def walk(value: Any) -> Any:
        if budget[0] <= 0:
            return value
        budget[0] -= 1
        if draw(st.integers(0, 7)) == 0:
            return draw(_replacements)
        if isinstance(value, dict):
            kept = {k: v for k, v in value.items() if draw(st.integers(0, 19)) != 0}
            return {k: walk(v) for k, v in kept.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return walk(document)


def mutated_samples(source: str) -> st.SearchStrategy[Any]:
    """A sample of `source`, as it is or mutated."""
    originals = st.sampled_from(samples(source))
    return mostly(originals.flatmap(mutated), originals, one_in=3)
