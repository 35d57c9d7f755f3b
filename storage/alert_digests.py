"""The digest in each delivery's `alerts.received` audit row, and its check.

Intake (storage/intake.py) writes one audit row per delivery that names the
delivery's contiguous range of alert ids and a digest of those alert rows;
the hash chain (storage/audit.py) vouches for the row, the digest for the
alerts it names. The format lives here, so writing and checking it change
together.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

import aiosqlite

from engine.models import canonical_json
from engine.records import DigestReport

ACTION = "alerts.received"
"""The audit action of a delivery's one row. Rows written before it was
introduced are `alert.received`, one per alert, and stay as they are."""

DIGEST_ALGORITHM = "sha256-json-v1"
"""Named in each audit row, so a later change of digest can be told apart.
See `alerts_digest`."""

ALERTS_OF_DELIVERY = (
    "SELECT source, source_key, fingerprint, status FROM alerts"
    " WHERE id BETWEEN ? AND ? ORDER BY id"
)
"""The stored alerts an `alerts.received` row attests, for recomputing its digest."""


def alerts_digest(rows: Iterable[Sequence[Any]]) -> str:
    """The digest an `alerts.received` row holds: sha256 (hex) of the canonical
    JSON (engine.models.canonical_json, UTF-8) of the list of
    [source, source_key, fingerprint, status] of the stored alerts in id order.

    To check a row: read its detail's `alert_ids.first`..`alert_ids.last`
    with ALERTS_OF_DELIVERY and compare this digest of them, and their
    number, with its `digest` and `count`; `verify_alert_digests` does that
    for the whole log. The hash chain vouches for the detail, the digest for
    those four columns of the alert rows (not their labels or text).
    """
    return digest_of([[src, key, fingerprint, status] for src, key, fingerprint, status in rows])


def digest_of(items: list[list[str]]) -> str:
    """`alerts_digest` of rows already in list form, as intake builds them."""
    return hashlib.sha256(canonical_json(items).encode()).hexdigest()


async def verify_alert_digests(conn: aiosqlite.Connection) -> DigestReport:
    """Recompute every `alerts.received` row's digest from the alerts table.

    Complements `audit.verify_chain`, which proves the rows' details are the
    ones written; this proves the alert rows they name are still the ones
    stored. Older `alert.received` rows (one per alert) name no digest and
    are not checked here.
    """
    async with conn.execute(
        "SELECT seq, detail FROM audit_log WHERE action = ? ORDER BY seq", (ACTION,)
    ) as cursor:
        audited = list(await cursor.fetchall())
    problems: list[str] = []
    for seq, detail_text in audited:
        try:
            detail = json.loads(detail_text)
            first, last = int(detail["alert_ids"]["first"]), int(detail["alert_ids"]["last"])
            count, digest = int(detail["count"]), str(detail["digest"])
        except (TypeError, ValueError, KeyError):
            problems.append(f"seq {seq}: detail names no alert range and digest")
            continue
        async with conn.execute(ALERTS_OF_DELIVERY, (first, last)) as cursor:
            stored = list(await cursor.fetchall())
        if len(stored) != count:
            problems.append(f"seq {seq}: {count} alerts attested, {len(stored)} stored")
        elif alerts_digest(stored) != digest:
            problems.append(f"seq {seq}: alerts {first}..{last} do not match their digest")
    return DigestReport(rows=len(audited), problems=tuple(problems))
