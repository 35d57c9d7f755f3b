"""The contract of the audit log: every audited change has its row, in order,
written by whichever replica, and the chain and the alert digests verify."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from itertools import pairwise

from engine.models import Alert, IncidentState, Pause
from engine.records import GENESIS_HASH
from engine.storage_ports import GraceStore
from tests.storage.contract.conftest import ContractClock, open_incident

S = IncidentState


async def test_an_empty_log_verifies(store: GraceStore) -> None:
    report = await store.verify_audit()
    assert (report.ok, report.rows, report.head_hash) == (True, 0, GENESIS_HASH)
    assert (await store.verify_alert_digests()).ok


async def test_the_chain_verifies_after_writes_from_two_replicas(
    store: GraceStore,
    replica: GraceStore,
    clock: ContractClock,
    make_alert: Callable[..., Alert],
) -> None:
    incident = await open_incident(store, make_alert(), "d-1")
    await asyncio.gather(
        store.transition(incident.id, S.OPEN, S.DIAGNOSED, actor="grace"),
        replica.audit("U1", "note", incident_id=incident.id, detail={"said": "hi"}),
        store.audit("grace", "ping"),
        replica.set_pause(Pause(by="U0LEAD", at=clock.now()), actor="U0LEAD"),
    )
    await replica.ingest_alerts([make_alert(), make_alert()], "d-2")
    entries = await replica.audit_entries()
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    assert entries[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in pairwise(entries))
    report = await store.verify_audit()
    assert report.ok and report.rows == len(entries) == 6
    assert report.head_hash == entries[-1].hash
    digests = await store.verify_alert_digests()
    assert digests.ok and digests.rows == 2


async def test_an_incidents_rows_and_a_time_window(
    store: GraceStore, clock: ContractClock, make_alert: Callable[..., Alert]
) -> None:
    one = await open_incident(store, make_alert(), "d-1")
    other = await open_incident(store, make_alert(), "d-2")
    clock.advance(60)
    since = clock.now()
    await store.transition(one.id, S.OPEN, S.NEEDS_HUMAN, actor="grace", reason="no playbook")
    await store.audit("U1", "looked", incident_id=other.id)
    mine = await store.audit_entries(one.id)
    assert [e.action for e in mine] == ["alerts.received", "incident.needs_human"]
    assert mine[1].detail == {"from": "open", "to": "needs_human", "reason": "no playbook"}
    recent = await store.audit_entries(since=since)
    assert [(e.action, e.incident_id) for e in recent] == [
        ("incident.needs_human", one.id),
        ("looked", other.id),
    ]
    assert await store.audit_entries(since=since + timedelta(seconds=1)) == []
