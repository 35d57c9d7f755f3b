"""An alert's row of the alerts table, with what a storm repeats encoded once.

Intake (storage/intake.py) builds one row per stored alert, in the hottest
loop GRACE has: a storm sends the same label sets and instants thousands of
times, so each is rendered once and then looked up.
"""

from __future__ import annotations

import functools
from typing import Any

from engine.models import Alert, AlertStatus, canonical_json
from storage.db import time_text

STATUS_TEXT = {status: status.value for status in AlertStatus}
"""Each status as stored, looked up rather than read off the enum per alert."""

_ENCODED: dict[tuple[tuple[str, str], ...], str] = {}
"""Canonical JSON of recent label and annotation sets (see `_pairs_json`)."""
_ENCODED_MAX, _ENCODED_MAX_CHARS = 8192, 512
"""At most this many sets of at most this much JSON each: a few MB whatever is sent."""

# `time_text`, each instant rendered once: an alert keeps its startsAt through
# every repeat, and a pass's alerts share a few received_at values.
cached_time_text = functools.lru_cache(maxsize=8192)(time_text)


def alert_row(alert: Alert, alert_id: int | None, incident_id: int | None) -> tuple[Any, ...]:
    """The alert's row of the alerts table, in INSERT_ALERT's column order.

    Its label and annotation sets and its instants are each encoded once
    across passes (see `_pairs_json`, `cached_time_text`): a storm repeats them.
    bench/aiohttp_floor.py stores exactly these rows and nothing else, to
    measure the least any intake of one row per alert costs.
    """
    return (
        alert_id,
        incident_id,
        alert.source,
        alert.source_key,
        alert.name,
        STATUS_TEXT[alert.status],
        alert.severity,
        _pairs_json(alert.labels),
        _pairs_json(alert.annotations),
        alert.text,
        None if alert.starts_at is None else cached_time_text(alert.starts_at),
        None if alert.ends_at is None else cached_time_text(alert.ends_at),
        alert.link,
        alert.fingerprint,
        alert.group,
        alert.channel,
        alert.reporter,
        alert.thread_ts,
        cached_time_text(alert.received_at),
    )


def _pairs_json(pairs: dict[str, str]) -> str:
    """Canonical JSON of an alert's labels or annotations, each set encoded once.

    A storm repeats the same sets thousands of times. The key is the items in
    their order, so only an equal dict finds an entry, and equal dicts encode
    alike.
    """
    key = tuple(pairs.items())
    text = _ENCODED.get(key)
    if text is None:
        text = canonical_json(pairs)
        if len(text) <= _ENCODED_MAX_CHARS:
            if len(_ENCODED) >= _ENCODED_MAX:
                _ENCODED.clear()
            _ENCODED[key] = text
    return text
