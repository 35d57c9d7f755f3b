"""Caps on untrusted alert input, shared by every source.

An alert is attacker-controlled text; these bounds keep one hostile or broken
integration from bloating the database or a Slack card.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

MAX_LABELS = 64
MAX_KEY = 128
MAX_VALUE = 1024
MAX_TEXT = 8000
MAX_NAME = 200


def cap_pairs(pairs: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """At most MAX_LABELS pairs, keys and values cut to their limits, all as strings."""
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    capped: dict[str, str] = {}
    for key, value in items:
        if len(capped) >= MAX_LABELS:
            break
        capped[str(key)[:MAX_KEY]] = str(value)[:MAX_VALUE]
    return capped


def cap_text(text: str, limit: int = MAX_TEXT) -> str:
    return text[:limit]
