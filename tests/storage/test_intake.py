"""Alert intake with dedupe: one active incident per group, one transaction per delivery."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from engine.models import Alert, AlertStatus, IncidentState, Intake
from storage.store import SqliteStore
from tests.storage.conftest import T0, FakeClock, open_incident

S = IncidentState
FIRING, RESOLVED = AlertStatus.FIRING, AlertStatus.RESOLVED

TABLES = ("deliveries", "alerts", "incidents", "incident_alerts", "audit_log")


def _counts(db_path: Path) -> dict[str, int]:
    with sqlite3.connect(db_path) as conn:
        return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}


def _members(db_path: Path, incident_id: int) -> dict[str, tuple[str, int]]:
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute(
            "SELECT fingerprint, status, count FROM incident_alerts WHERE incident_id = ?",
            (incident_id,),
        )
        return {fp: (status, count) for fp, status, count in rows}


async def test_a_firing_alert_opens_an_incident(
    store: SqliteStore, make_alert: Callable[..., Alert], clock: FakeClock, db_path: Path
) -> None:
    alert = make_alert(received_at=T0 - timedelta(seconds=3))
    [intake] = await store.ingest_alerts([alert], "delivery-1")
    assert intake.opened and not intake.all_clear
    incident = intake.incident
    assert incident is not None
    assert incident.state is S.OPEN
    assert incident.alert == alert
    assert incident.fingerprint == alert.group == alert.fingerprint
    assert incident.channel == alert.channel
    assert (incident.alert_count, incident.firing_count) == (1, 1)
    assert incident.first_seen == incident.last_seen == alert.received_at
    assert incident.created_at == incident.updated_at == clock.now()
    assert await store.get_incident(incident.id) == incident
    assert _members(db_path, incident.id) == {alert.fingerprint: ("firing", 1)}

    [entry] = await store.audit_entries(incident.id)
    assert (entry.action, entry.actor) == ("alert.received", "alertmanager")
    assert entry.detail == {
        "source": "alertmanager",
        "source_key": alert.source_key,
        "name": alert.name,
        "status": "firing",
        "fingerprint": alert.fingerprint,
        "group": alert.group,
        "incident_id": incident.id,
        "opened": True,
        "delivery_key": "delivery-1",
    }


async def test_source_identity_and_times_round_trip(
    store: SqliteStore, make_alert: Callable[..., Alert]
) -> None:
    alert = make_alert(
        fingerprint="am-3f2a",
        group="am-group-7",
        starts_at=T0 - timedelta(minutes=5),
        link="https://alertmanager.example/#/alerts?fp=3f2a",
        reporter="U0HUMAN",
    )
    incident = await open_incident(store, alert, "d-1")
    assert incident.fingerprint == "am-group-7"
    stored = await store.get_incident(incident.id)
    assert stored is not None and stored.alert == alert
    [entry] = await store.audit_entries(incident.id)
    assert entry.actor == "U0HUMAN"


async def test_alerts_of_one_group_share_one_incident(
    store: SqliteStore, make_alert: Callable[..., Alert], clock: FakeClock, db_path: Path
) -> None:
    alerts = [
        make_alert(group="disk-db-1", received_at=T0 + timedelta(seconds=n)) for n in range(6)
    ]
    first = await store.ingest_alerts(alerts[:3], "d-1")  # several in one delivery
    clock.advance(10)
    rest = [await store.ingest_alerts([a], f"d-{n}") for n, a in enumerate(alerts[3:], 2)]
    intakes = first + [i for [i] in rest]

    assert [i.opened for i in intakes] == [True] + [False] * 5
    ids = {i.incident.id for i in intakes if i.incident}
    assert len(ids) == 1
    assert [i.incident.alert_count for i in intakes if i.incident] == [1, 2, 3, 4, 5, 6]
    assert not any(i.all_clear for i in intakes)

    incident = await store.get_incident(ids.pop())
    assert incident is not None
    assert incident == intakes[-1].incident, "each Intake shows the incident after its alert"
    assert incident.alert == alerts[0]
    assert (incident.alert_count, incident.firing_count) == (6, 6)
    assert incident.first_seen == T0
    assert incident.last_seen == T0 + timedelta(seconds=5)
    assert incident.updated_at == clock.now() != incident.created_at
    assert _counts(db_path)["incidents"] == 1


async def test_first_and_last_seen_hold_whatever_the_arrival_order(
    store: SqliteStore, make_alert: Callable[..., Alert]
) -> None:
    late, early, middle = (
        make_alert(group="g", received_at=T0 + timedelta(seconds=s)) for s in (10, -10, 0)
    )
    intakes = await store.ingest_alerts([late, early, middle], "d-1")
    incident = intakes[-1].incident
    assert incident is not None
    assert incident.first_seen == T0 - timedelta(seconds=10)
    assert incident.last_seen == T0 + timedelta(seconds=10)


async def test_different_groups_open_different_incidents(
    store: SqliteStore, make_alert: Callable[..., Alert]
) -> None:
    intakes = await store.ingest_alerts(
        [make_alert(group="a"), make_alert(group="b"), make_alert(group="a")], "d-1"
    )
    assert [i.opened for i in intakes] == [True, True, False]
    a1, b, a2 = (i.incident for i in intakes)
    assert a1 is not None and b is not None and a2 is not None
    assert a1.id == a2.id != b.id
    assert (a2.fingerprint, b.fingerprint) == ("a", "b")


async def test_a_finished_incident_absorbs_nothing(
    store: SqliteStore, make_alert: Callable[..., Alert]
) -> None:
    old = await open_incident(store, make_alert(group="g"), "d-1")
    await store.transition(old.id, S.OPEN, S.NEEDS_HUMAN, actor="grace")
    await store.transition(old.id, S.NEEDS_HUMAN, S.AUTO_RESOLVED, actor="grace")
    [intake] = await store.ingest_alerts([make_alert(group="g")], "d-2")
    assert intake.opened and intake.incident is not None
    assert intake.incident.id != old.id
    assert intake.incident.alert_count == 1
    unchanged = await store.get_incident(old.id)
    assert unchanged is not None and unchanged.alert_count == 1
    active = await store.active_incident("g")
    assert active is not None and active.id == intake.incident.id


async def test_an_incident_waiting_on_people_keeps_its_group(
    store: SqliteStore, make_alert: Callable[..., Alert]
) -> None:
    """A storm of alerts no playbook treats must not post a card per repeat."""
    held = await open_incident(store, make_alert(group="g"), "d-1")
    await store.transition(held.id, S.OPEN, S.NEEDS_HUMAN, actor="grace")
    [intake] = await store.ingest_alerts([make_alert(group="g")], "d-2")
    assert not intake.opened and intake.incident is not None
    assert intake.incident.id == held.id and intake.incident.alert_count == 2


async def test_all_clear_only_when_the_last_firing_member_resolves(
    store: SqliteStore, make_alert: Callable[..., Alert], db_path: Path
) -> None:
    """Two member alerts (db-1, db-2) in group g; repeats of one do not double-count it."""

    def alert(instance: str, status: AlertStatus) -> Alert:
        return make_alert(group="g", labels={"instance": instance}, status=status)

    steps: list[tuple[Alert, int, bool]] = [
        (alert("db-1", FIRING), 1, False),
        (alert("db-1", FIRING), 1, False),  # the same member again
        (alert("db-2", FIRING), 2, False),
        (alert("db-1", RESOLVED), 1, False),  # db-2 still fires
        (alert("db-1", RESOLVED), 1, False),
        (alert("db-2", RESOLVED), 0, True),  # the last one: all clear
        (alert("db-2", FIRING), 1, False),  # it came back
        (alert("db-2", RESOLVED), 0, True),
    ]
    incident_id = None
    for n, (a, firing, all_clear) in enumerate(steps):
        [intake] = await store.ingest_alerts([a], f"d-{n}")
        assert intake.incident is not None
        incident_id = incident_id or intake.incident.id
        assert intake.incident.id == incident_id
        assert (intake.incident.firing_count, intake.all_clear) == (firing, all_clear), n
    final = await store.get_incident(incident_id)
    assert final is not None
    assert (final.alert_count, final.firing_count) == (8, 0)
    db1, db2 = steps[0][0].fingerprint, steps[2][0].fingerprint
    assert _members(db_path, incident_id) == {db1: ("resolved", 4), db2: ("resolved", 4)}


async def test_a_resolved_alert_with_nothing_active_is_stored_alone(
    store: SqliteStore, make_alert: Callable[..., Alert], db_path: Path
) -> None:
    before = _counts(db_path)
    resolved = make_alert(group="g", status=RESOLVED)
    assert await store.ingest_alerts([resolved], "d-1") == [Intake(incident=None)]
    after = _counts(db_path)
    assert after["alerts"] == before["alerts"] + 1
    assert after["incidents"] == before["incidents"]
    assert after["deliveries"] == before["deliveries"] + 1
    with sqlite3.connect(db_path) as conn:
        assert conn.execute(
            "SELECT incident_id FROM alerts WHERE source_key = ?", (resolved.source_key,)
        ).fetchone() == (None,)
    [entry] = await store.audit_entries()
    assert entry.incident_id is None
    assert (entry.detail["incident_id"], entry.detail["opened"]) == (None, False)
    # The same delivery again is a repeat.
    assert await store.ingest_alerts([make_alert(group="g")], "d-1") == []


async def test_a_repeated_source_key_is_skipped(
    store: SqliteStore, make_alert: Callable[..., Alert], db_path: Path
) -> None:
    first = await open_incident(store, make_alert(source_key="fp-1"), "d-1")
    before = _counts(db_path)
    again = make_alert(source_key="fp-1", group=first.fingerprint)
    assert await store.ingest_alerts([again, again], "d-2") == [Intake(incident=None)] * 2
    assert _counts(db_path) == before, "nothing stored, not even the delivery key"
    # Within one delivery, the second of two alerts with one key is the repeat.
    twice = make_alert(source_key="fp-2")
    intakes = await store.ingest_alerts([twice, twice], "d-3")
    assert intakes[0].opened and intakes[1] == Intake(incident=None)
    # The same key from another source is another alert.
    [other] = await store.ingest_alerts([make_alert(source="grafana", source_key="fp-1")], "d-4")
    assert other.opened


async def test_a_repeated_delivery_writes_nothing(
    store: SqliteStore, make_alert: Callable[..., Alert], db_path: Path
) -> None:
    assert len(await store.ingest_alerts([make_alert(), make_alert()], "delivery-1")) == 2
    before = _counts(db_path)
    assert await store.ingest_alerts([make_alert()], "delivery-1") == []
    assert _counts(db_path) == before


async def test_a_delivery_is_one_transaction(
    store: SqliteStore, make_alert: Callable[..., Alert], db_path: Path
) -> None:
    """A failure on the third alert leaves none of the delivery behind."""
    with sqlite3.connect(db_path) as conn:
        conn.execute(
            "CREATE TRIGGER boom BEFORE INSERT ON alerts WHEN NEW.name = 'Boom'"
            " BEGIN SELECT RAISE(ABORT, 'boom'); END"
        )
    before = _counts(db_path)
    alerts = [make_alert(group="g"), make_alert(group="h"), make_alert(name="Boom")]
    with pytest.raises(sqlite3.IntegrityError, match="boom"):
        await store.ingest_alerts(alerts, "d-1")
    assert _counts(db_path) == before
    assert await store.active_incident("g") is None

    with sqlite3.connect(db_path) as conn:
        conn.execute("DROP TRIGGER boom")
    intakes = await store.ingest_alerts(alerts, "d-1")
    assert [i.opened for i in intakes] == [True, True, True]


async def test_200_concurrent_deliveries_count_exactly(
    store: SqliteStore, make_alert: Callable[..., Alert], db_path: Path
) -> None:
    groups = [f"group-{g}" for g in range(8)]
    alerts = [make_alert(group=groups[n % 8]) for n in range(200)]
    batches_before = store.writer.batches
    results = await asyncio.gather(
        *(store.ingest_alerts([a], f"d-{n}") for n, a in enumerate(alerts)),
        # Retries of ten of those deliveries, racing the originals.
        *(store.ingest_alerts([alerts[n]], f"d-{n}") for n in range(10)),
    )
    assert store.writer.batches - batches_before < 210, "concurrent calls were grouped"
    intakes = [i for r in results for i in r]
    assert len(intakes) == 200, "each delivery counted once, retries got []"
    assert sum(i.opened for i in intakes) == 8
    by_group = {}
    for group in groups:
        incident = await store.active_incident(group)
        assert incident is not None
        by_group[group] = incident
        assert (incident.alert_count, incident.firing_count) == (25, 25)
    assert _counts(db_path) == {
        "deliveries": 200,
        "alerts": 200,
        "incidents": 8,
        "incident_alerts": 200,  # every make_alert has its own labels: 25 members each
        "audit_log": 200,
    }
    assert (await store.verify_audit()).ok


async def test_two_replicas_open_one_incident_per_group(
    db_path: Path, clock: FakeClock, make_alert: Callable[..., Alert]
) -> None:
    first = await SqliteStore.open(db_path, clock)
    second = await SqliteStore.open(db_path, clock)
    try:
        alerts = [make_alert(group="shared") for _ in range(40)]
        results = await asyncio.gather(
            *(
                (first if n % 2 else second).ingest_alerts([a], f"d-{n}")
                for n, a in enumerate(alerts)
            )
        )
        assert sum(i.opened for [i] in results) == 1
        incident = await first.active_incident("shared")
        assert incident is not None and incident.alert_count == 40
        assert (await second.verify_audit()).ok
    finally:
        await first.close()
        await second.close()


async def test_the_database_refuses_a_second_active_incident(
    store: SqliteStore, make_alert: Callable[..., Alert], db_path: Path
) -> None:
    incident = await open_incident(store, make_alert(group="g"), "d-1")
    insert = (
        "INSERT INTO incidents (state, fingerprint, alert_name, created_at, updated_at)"
        " VALUES (?, 'g', 'x', 'now', 'now')"
    )
    with sqlite3.connect(db_path) as conn:
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(insert, ("diagnosed",))
        conn.execute(insert, ("resolved",))  # ended ones may be many
    await store.transition(incident.id, S.OPEN, S.AUTO_RESOLVED, actor="grace")
    with sqlite3.connect(db_path) as conn:
        conn.execute(insert, ("open",))
