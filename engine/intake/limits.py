"""Caps on untrusted alert input, and fresh keys for what arrives, shared by every source.

An alert is attacker-controlled text; these bounds keep one hostile or broken
integration from bloating the database or a Slack card.
"""

from __future__ import annotations

import functools
import itertools
import os
import uuid
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from engine.models import sha256_hex

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


def cap_labels(pairs: dict[str, str]) -> dict[str, str]:
    """cap_pairs, without rebuilding the dict in the usual case where nothing is too long.

    Only for dicts the caller owns (fresh from validation): the same object is returned.
    A plain loop, not all() over a generator: this runs twice per alert in a storm.
    """
    if len(pairs) > MAX_LABELS:
        return cap_pairs(pairs)
    for key, value in pairs.items():
        if len(key) > MAX_KEY or len(value) > MAX_VALUE:
            return cap_pairs(pairs)
    return pairs


def cap_identity(value: str) -> str:
    """An identity (id, fingerprint, group) no longer than MAX_KEY that stays distinct.

    Cutting would make two long ids with a common prefix one alert, and so drop
    the second as a duplicate; a hash keeps them apart.
    """
    return value if len(value) <= MAX_KEY else "sha256:" + sha256_hex(value)


@functools.lru_cache(maxsize=4096)  # storms repeat the same few links thousands of times
def capped_link(url: str | None) -> str | None:
    """The link when it is a web URL of at most MAX_VALUE characters, else None.

    A link is dropped rather than cut: a cut URL points somewhere else.
    """
    if not url or len(url) > MAX_VALUE:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:  # an unbalanced [ in the host, say
        return None
    return url if parts.scheme.lower() in ("http", "https") and parts.netloc else None


def summary_text(annotations: dict[str, str]) -> str:
    """What a person reads first: the summary, then the description (uncut; cap after).

    Spelt out rather than a join over a generator, which costs five times as much.
    """
    summary = annotations.get("summary", "")
    description = annotations.get("description", "")
    if summary and description:
        return f"{summary}\n{description}"
    return summary or description


class _Keys:
    """Keys unique across processes and restarts: a random prefix drawn once per
    process (again in a forked child) and a counter. A uuid4 per key would cost
    a getrandom syscall per request, or per alert, on the intake's hottest path."""

    def __init__(self) -> None:
        self._draw()
        os.register_at_fork(after_in_child=self._draw)

    def _draw(self) -> None:
        self._prefix = uuid.uuid4().hex
        self._counter = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}-{next(self._counter)}"


fresh_key = _Keys().next
"""A key no other call returns, in this process or any other: for delivery
keys and the source_key of alerts that bring no identity of their own."""
