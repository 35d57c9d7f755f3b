"""The target-name glob every cloud executor's allowlist uses."""

from __future__ import annotations

import pytest

from engine.executors.common import name_matches


@pytest.mark.parametrize(
    ("value", "pattern", "matches"),
    [
        ("deployment:shop/cart", "deployment:shop/*", True),
        ("deployment:shop/cart", "deployment:*/cart", True),
        ("deployment:shop/cart", "*:shop/cart", True),
        ("deployment:shop/a/b", "deployment:shop/*", False),
        ("deployment:shop/cart", "deployment:*", False),
        ("deployment:shop/cart", "*", False),
        ("pod:shop/cart", "deployment:shop/*", False),
        ("deployment:shopping/cart", "deployment:shop/*", False),
        ("deployment:shop/cart", "deployment:shop/cart", True),
    ],
)
def test_star_stops_at_colons_and_slashes(value: str, pattern: str, matches: bool) -> None:
    assert name_matches(value, pattern) is matches
