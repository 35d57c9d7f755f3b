"""Caps on untrusted alert input, and fresh keys for what arrives, shared by every source.

An alert is attacker-controlled text; these bounds keep one hostile or broken
integration from bloating the database or a Slack card. Text is also made
storable here: JSON may carry a lone surrogate (`"\\ud83d"`), which no UTF-8
database or Slack message can hold, so it becomes U+FFFD where text enters
rather than an alert lost when it is stored. Instants are checked here too:
one whose UTC time falls outside Python's years 1 to 9999 is refused.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, AwareDatetime

from engine.models import sha256_hex

MAX_LABELS = 64
MAX_KEY = 128
MAX_VALUE = 1024
MAX_TEXT = 8000
MAX_NAME = 200


_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def storable(text: str) -> str:
    """`text` with every surrogate code point (never valid UTF-8) replaced by U+FFFD."""
    if text.isascii() or _SURROGATE.search(text) is None:
        return text  # the usual case, without building a new string
    return _SURROGATE.sub(REPLACEMENT, text)


def storable_json(value: Any) -> Any:
    """A parsed JSON document with `storable` applied to every string in it, keys too."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {storable(str(k)): storable_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable_json(item) for item in value]
    return value


def cap_pairs(pairs: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """At most MAX_LABELS pairs, keys and values cut to their limits, all storable strings."""
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    capped: dict[str, str] = {}
    for key, value in items:
        if len(capped) >= MAX_LABELS:
            break
        capped[storable(str(key)[:MAX_KEY])] = storable(str(value)[:MAX_VALUE])
    return capped


def cap_text(text: str, limit: int = MAX_TEXT) -> str:
    return storable(text[:limit])


def cap_labels(pairs: dict[str, str]) -> dict[str, str]:
    """cap_pairs, without rebuilding the dict in the usual case where nothing is too long.

    Only for dicts the caller owns (fresh from validation): the same object is returned.
    A plain loop, not all() over a generator: this runs twice per alert in a storm.
    """
    if len(pairs) > MAX_LABELS:
        return cap_pairs(pairs)
    for key, value in pairs.items():
        if len(key) > MAX_KEY or len(value) > MAX_VALUE or _unstorable(key) or _unstorable(value):
            return cap_pairs(pairs)
    return pairs


def _unstorable(text: str) -> bool:
    return not text.isascii() and _SURROGATE.search(text) is not None


def cap_identity(value: str) -> str:
    """An identity (id, fingerprint, group) no longer than MAX_KEY that stays distinct.

    Cutting would make two long ids with a common prefix one alert, and so drop
    the second as a duplicate; a hash keeps them apart.
    """
    if len(value) > MAX_KEY:
        return "sha256:" + sha256_hex(storable(value))
    return storable(value)


@functools.lru_cache(maxsize=4096)  # storms repeat the same few links thousands of times
def capped_link(url: str | None) -> str | None:
    """The link when it is a web URL of at most MAX_VALUE characters, else None.

    A link is dropped rather than cut: a cut URL points somewhere else.
    """
    if not url or len(url) > MAX_VALUE or _unstorable(url):
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


def in_range(value: datetime) -> datetime:
    """`value`, when its UTC time is a datetime Python can hold; else ValueError.

    `9999-12-31T23:59:59-00:01` parses, but is in year 10000 in UTC: storing it
    (as UTC text) or comparing it with another instant would fail far from here.
    A naive value is read as UTC already, so it is always in range.
    """
    if value.tzinfo is not None:
        try:
            value.astimezone(UTC)
        except OverflowError:
            raise ValueError("an instant whose UTC time is outside years 1 to 9999") from None
    return value


def in_range_or_none(value: datetime | None) -> datetime | None:
    """For readers that take an unreadable time as no time (Slack messages, SNS)."""
    try:
        return None if value is None else in_range(value)
    except ValueError:
        return None


Instant = Annotated[AwareDatetime, AfterValidator(in_range)]
"""A sender's timestamp field, with its zone, refused (naming the field) when out of range."""

AnyInstant = Annotated[datetime, AfterValidator(in_range)]
"""The same for a field that may come without a zone (read as UTC)."""


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
