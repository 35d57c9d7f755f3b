"""The append-only, hash-chained audit log.

Each row's hash covers the previous row's hash and the row's own canonical
content, so altering, deleting or inserting any row behind the triggers' back
breaks the chain at that row. `append` runs inside the caller's transaction
(a group writer's op) so an audited change and its audit row commit together
or not at all; verification reads through the async read connection.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiosqlite
from pydantic_core import to_jsonable_python

from engine.models import AuditEntry, canonical_json, sha256_hex
from engine.records import GENESIS_HASH, AuditReport
from storage.db import parse_time, time_text


def row_hash(
    prev_hash: str,
    *,
    seq: int,
    at: str,
    actor: str,
    action: str,
    incident_id: int | None,
    detail: Mapping[str, Any],
) -> str:
    """The chain's hash of one row; `at` is the stored text, never re-rendered."""
    body = {
        "seq": seq,
        "at": at,
        "actor": actor,
        "action": action,
        "incident_id": incident_id,
        "detail": dict(detail),
    }
    return sha256_hex(prev_hash + canonical_json(body))


_encode_str = json.encoder.encode_basestring  # what canonical_json does with a str


def _row_hash_of_text(
    prev_hash: str,
    *,
    seq: int,
    at: str,
    actor: str,
    action: str,
    incident_id: int | None,
    detail_text: str,
) -> str:
    """`row_hash`, given the detail already as canonical JSON text: the body is
    spliced around it (keys in canonical_json's sorted order) instead of
    encoding the detail a second time. `row_hash` stays the definition that
    verification uses; a test keeps the two byte-equal."""
    if type(seq) is not int or (incident_id is not None and type(incident_id) is not int):
        # Not the plain ints the splice renders as canonical_json would: take the long way.
        return row_hash(
            prev_hash,
            seq=seq,
            at=at,
            actor=actor,
            action=action,
            incident_id=incident_id,
            detail=json.loads(detail_text),
        )
    body = (
        f'{{"action":{_encode_str(action)},"actor":{_encode_str(actor)},"at":{_encode_str(at)},'
        f'"detail":{detail_text},"incident_id":{"null" if incident_id is None else incident_id},'
        f'"seq":{seq}}}'
    )
    return sha256_hex(prev_hash + body)


def append(
    conn: sqlite3.Connection,
    *,
    at: datetime,
    actor: str,
    action: str,
    incident_id: int | None = None,
    detail: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Append one chained row and return it. The caller must hold a write transaction.

    The write lock (BEGIN IMMEDIATE, which the group writer takes for every
    batch) is what makes reading the head and inserting after it safe;
    without it two writers could chain onto the same row.
    """
    row = Chain(conn).write(
        at=at, actor=actor, action=action, incident_id=incident_id, detail=detail
    )
    return AuditEntry(
        seq=row.seq,
        at=parse_time(row.at),
        actor=actor,
        action=action,
        incident_id=incident_id,
        detail=json.loads(row.detail),
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


@dataclass(frozen=True, slots=True)
class WrittenRow:
    """What `Chain.write` stored, as stored (times and detail as text)."""

    seq: int
    at: str
    detail: str
    prev_hash: str
    hash: str


class Chain:
    """Appends several rows inside one write transaction, reading the head once.

    Meant to live exactly as long as one queued write: if that write fails,
    its savepoint is rolled back and this object is thrown away with it, so
    a remembered head can never outlive the rows it points at.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        if not conn.in_transaction:
            raise RuntimeError("audit.append must run inside a write transaction")
        self._conn = conn
        self._head: tuple[int, str] | None = None
        self._at: datetime | None = None
        self._at_text = ""

    def write(
        self,
        *,
        at: datetime,
        actor: str,
        action: str,
        incident_id: int | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> WrittenRow:
        """Append one row. Detail values are reduced to plain JSON first
        (datetimes to ISO text, enums to values), so what is hashed is exactly
        what is stored and what verification will parse back."""
        seq, prev_hash = self._next()
        if at is not self._at:  # a batch of rows usually shares one time
            self._at, self._at_text = at, time_text(at)
        detail_text = canonical_json(to_jsonable_python(dict(detail or {})))
        digest = _row_hash_of_text(
            prev_hash,
            seq=seq,
            at=self._at_text,
            actor=actor,
            action=action,
            incident_id=incident_id,
            detail_text=detail_text,
        )
        self._conn.execute(
            "INSERT INTO audit_log (seq, at, actor, action, incident_id, detail, prev_hash, hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, self._at_text, actor, action, incident_id, detail_text, prev_hash, digest),
        )
        # Remembered only once the row is in: a failed insert leaves the head as it was.
        self._head = (seq, digest)
        return WrittenRow(seq, self._at_text, detail_text, prev_hash, digest)

    def _next(self) -> tuple[int, str]:
        if self._head is None:
            head = self._conn.execute(
                "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            self._head = (0, GENESIS_HASH) if head is None else (int(head[0]), str(head[1]))
        seq, digest = self._head
        return seq + 1, digest


async def verify_chain(conn: aiosqlite.Connection) -> AuditReport:
    """Recompute every row and name the first one that does not fit.

    A row is bad when its seq skips a number (a row was deleted), its
    prev_hash is not the previous row's hash (rows were removed or
    re-chained), or its own hash does not match its content (it was edited).
    Every row is still counted after a break, so `rows` is the log's size.
    """
    rows = 0
    expected_seq = 1
    prev_hash = GENESIS_HASH
    first_bad: int | None = None
    problem = ""
    async with conn.execute(
        "SELECT seq, at, actor, action, incident_id, detail, prev_hash, hash"
        " FROM audit_log ORDER BY seq"
    ) as cursor:
        async for row in cursor:
            rows += 1
            if first_bad is None:
                problem = _row_problem(row, expected_seq, prev_hash)
                if problem:
                    first_bad = int(row[0])
            expected_seq = int(row[0]) + 1
            prev_hash = str(row[7])
    return AuditReport(
        ok=first_bad is None,
        rows=rows,
        first_bad_seq=first_bad,
        problem=problem,
        head_hash=prev_hash,
    )


def _row_problem(row: Any, expected_seq: int, expected_prev: str) -> str:
    seq, at, actor, action, incident_id, detail_text, prev_hash, stored_hash = tuple(row)
    if seq != expected_seq:
        return f"gap: expected seq {expected_seq}, found {seq}"
    if prev_hash != expected_prev:
        return f"seq {seq}: prev_hash does not match the previous row's hash"
    try:
        detail = json.loads(detail_text)
    except (TypeError, ValueError):
        return f"seq {seq}: detail is not valid JSON"
    if not isinstance(detail, dict):
        return f"seq {seq}: detail is not a JSON object"
    computed = row_hash(
        prev_hash,
        seq=seq,
        at=at,
        actor=actor,
        action=action,
        incident_id=incident_id,
        detail=detail,
    )
    if computed != stored_hash:
        return f"seq {seq}: hash does not match the row's content"
    return ""


def entry_from_row(row: Any) -> AuditEntry:
    return AuditEntry(
        seq=row["seq"],
        at=parse_time(row["at"]),
        actor=row["actor"],
        action=row["action"],
        incident_id=row["incident_id"],
        detail=json.loads(row["detail"]),
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )
