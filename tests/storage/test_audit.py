"""The audit log: append-only by trigger, tamper-evident by hash chain."""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

import pytest

from engine.models import Alert, AuditEntry, IncidentState, canonical_json, sha256_hex
from storage import audit
from storage.db import connect, connect_sync
from storage.store import SqliteStore
from tests.storage.conftest import FakeClock, open_incident

S = IncidentState


async def _fill(store: SqliteStore, make_alert: Callable[..., Alert], clock: FakeClock) -> None:
    """A realistic sequence: intake, transitions, free-form audit rows."""
    inc = await open_incident(store, make_alert(), "d-1")
    assert inc is not None
    clock.advance(1)
    await store.transition(inc.id, S.OPEN, S.DIAGNOSED, actor="grace")
    await store.audit("U0LEAD", "grace.pause", detail={"why": "maintenance", "minutes": 30})
    clock.advance(1)
    await store.transition(inc.id, S.DIAGNOSED, S.APPROVED, actor="U0LEAD", reason="go")
    await store.audit("grace", "note", incident_id=inc.id)


def _tamper(db_path: Path, *statements: str) -> None:
    """Change the file behind the triggers' back, as someone with shell access could."""
    with sqlite3.connect(db_path) as conn:
        conn.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        conn.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
        for statement in statements:
            conn.execute(statement)


async def test_chain_links_every_row(
    store: SqliteStore, make_alert: Callable[..., Alert], clock: FakeClock
) -> None:
    await _fill(store, make_alert, clock)
    entries = await store.audit_entries()
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == audit.GENESIS_HASH
    for before, after in itertools.pairwise(entries):
        assert after.prev_hash == before.hash
    pause = entries[2]
    assert (pause.actor, pause.action, pause.incident_id) == ("U0LEAD", "grace.pause", None)
    assert pause.detail == {"why": "maintenance", "minutes": 30}
    expected = sha256_hex(
        pause.prev_hash
        + canonical_json(
            {
                "seq": 3,
                "at": pause.at.isoformat(timespec="microseconds"),
                "actor": "U0LEAD",
                "action": "grace.pause",
                "incident_id": None,
                "detail": {"why": "maintenance", "minutes": 30},
            }
        )
    )
    assert pause.hash == expected

    report = await store.verify_audit()
    assert report == audit.AuditReport(
        ok=True, rows=5, first_bad_seq=None, problem="", head_hash=entries[-1].hash
    )


async def test_empty_log_verifies(store: SqliteStore) -> None:
    report = await store.verify_audit()
    assert (report.ok, report.rows, report.first_bad_seq) == (True, 0, None)


async def test_triggers_refuse_update_and_delete(
    store: SqliteStore, make_alert: Callable[..., Alert], clock: FakeClock, db_path: Path
) -> None:
    await _fill(store, make_alert, clock)
    with sqlite3.connect(db_path) as conn:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM audit_log WHERE seq = 5")
    assert len(await store.audit_entries()) == 5
    assert (await store.verify_audit()).ok


async def test_edited_row_is_named(
    store: SqliteStore, make_alert: Callable[..., Alert], clock: FakeClock, db_path: Path
) -> None:
    await _fill(store, make_alert, clock)
    _tamper(db_path, """UPDATE audit_log SET detail = '{"why":"nothing to see"}' WHERE seq = 3""")
    report = await store.verify_audit()
    assert not report.ok
    assert report.rows == 5
    assert report.first_bad_seq == 3
    assert "hash" in report.problem


async def test_rehashed_row_breaks_the_next_link(
    store: SqliteStore, make_alert: Callable[..., Alert], clock: FakeClock, db_path: Path
) -> None:
    """Recomputing the edited row's own hash does not help: the next row points at the old one."""
    await _fill(store, make_alert, clock)
    with sqlite3.connect(db_path) as conn:
        seq, at, action, incident_id, prev = conn.execute(
            "SELECT seq, at, action, incident_id, prev_hash FROM audit_log WHERE seq = 2"
        ).fetchone()
    forged = audit.row_hash(
        prev, seq=seq, at=at, actor="mallory", action=action, incident_id=incident_id, detail={}
    )
    _tamper(
        db_path,
        f"UPDATE audit_log SET actor = 'mallory', detail = '{{}}', hash = '{forged}' WHERE seq = 2",
    )
    conn = await connect(db_path)
    try:
        report = await audit.verify_chain(conn)
    finally:
        await conn.close()
    assert (report.ok, report.first_bad_seq) == (False, 3)
    assert "prev_hash" in report.problem


async def test_deleted_row_is_a_gap(
    store: SqliteStore, make_alert: Callable[..., Alert], clock: FakeClock, db_path: Path
) -> None:
    await _fill(store, make_alert, clock)
    _tamper(db_path, "DELETE FROM audit_log WHERE seq = 2")
    report = await store.verify_audit()
    assert (report.ok, report.rows, report.first_bad_seq) == (False, 4, 3)
    assert "gap" in report.problem


async def test_deleted_first_row_is_caught(
    store: SqliteStore, make_alert: Callable[..., Alert], clock: FakeClock, db_path: Path
) -> None:
    await _fill(store, make_alert, clock)
    _tamper(db_path, "DELETE FROM audit_log WHERE seq = 1")
    report = await store.verify_audit()
    assert (report.ok, report.first_bad_seq) == (False, 2)


async def test_append_requires_the_callers_transaction(db_path: Path) -> None:
    with (
        closing(connect_sync(db_path)) as conn,
        pytest.raises(RuntimeError, match="transaction"),
    ):
        audit.append(conn, at=datetime.now(UTC), actor="a", action="b")


async def test_append_rolls_back_with_the_callers_transaction(store: SqliteStore) -> None:
    """A write that fails takes its audit rows with it; the next write chains onto
    the last committed row, even in the same batch and the same transaction."""

    def gone(conn: sqlite3.Connection) -> None:
        audit.append(conn, at=datetime.now(UTC), actor="a", action="gone")
        raise RuntimeError("rolled back")

    def kept(conn: sqlite3.Connection) -> AuditEntry:
        return audit.append(conn, at=datetime.now(UTC), actor="a", action="kept")

    results = await asyncio.gather(
        store.writer.run(gone), store.writer.run(kept), return_exceptions=True
    )
    assert isinstance(results[0], RuntimeError)
    assert isinstance(results[1], AuditEntry)
    assert (results[1].seq, results[1].prev_hash) == (1, audit.GENESIS_HASH)
    assert (await store.verify_audit()).ok


async def test_a_chain_reads_the_head_once_and_stays_right(store: SqliteStore) -> None:
    """Many rows from one write: the remembered head advances row by row."""

    def many(conn: sqlite3.Connection) -> list[int]:
        chain = audit.Chain(conn)
        return [chain.write(at=datetime.now(UTC), actor="a", action=f"n{n}").seq for n in range(5)]

    await store.audit("grace", "first")
    assert await store.writer.run(many) == [2, 3, 4, 5, 6]
    report = await store.verify_audit()
    assert (report.ok, report.rows) == (True, 6)


class _Color(StrEnum):
    RED = "red"


async def test_detail_is_stored_exactly_as_hashed(
    store: SqliteStore, db_path: Path, clock: FakeClock
) -> None:
    """Non-JSON values are reduced before hashing, so verification never drifts."""
    await store.audit(
        "grace",
        "odd.detail",
        detail={"when": clock.now(), "color": _Color.RED, "ratio": 0.1, "nested": {"b": 1, "a": 2}},
    )
    [entry] = await store.audit_entries()
    assert entry.detail == {
        "when": clock.now().isoformat().replace("+00:00", "Z"),
        "color": "red",
        "ratio": 0.1,
        "nested": {"a": 2, "b": 1},
    }
    with sqlite3.connect(db_path) as conn:
        stored = conn.execute("SELECT detail FROM audit_log").fetchone()[0]
    assert json.loads(stored) == entry.detail
    assert (await store.verify_audit()).ok


@pytest.mark.parametrize(
    ("actor", "action", "incident_id", "detail"),
    [
        ("grace", "alerts.received", None, {}),
        ("U0HUMAN,alertmanager", "alerts.received", 7, {"ids": [1, 2], "digest": "ab"}),
        ('quo"te\\ \u00e9 \u2028 \x01', "n\u00e4me\n", 2**40, {"\u00fc": "\U0001f600"}),
        ("grace", "odd", True, {"x": 0.1}),  # not a plain int: the long way, same hash
    ],
)
def test_the_writers_hash_is_row_hash(
    actor: str, action: str, incident_id: int | None, detail: dict[str, object]
) -> None:
    """Chain.write splices the detail text into the body instead of encoding it
    twice; verification recomputes with row_hash, so the two must agree byte for byte."""
    at = "2025-03-01T12:00:00.250000+00:00"
    expected = audit.row_hash(
        "f" * 64, seq=12, at=at, actor=actor, action=action, incident_id=incident_id, detail=detail
    )
    spliced = audit._row_hash_of_text(
        "f" * 64,
        seq=12,
        at=at,
        actor=actor,
        action=action,
        incident_id=incident_id,
        detail_text=canonical_json(detail),
    )
    assert spliced == expected
