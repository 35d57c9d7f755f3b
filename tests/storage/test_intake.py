"""Alert intake with dedupe: one active incident per group, one transaction per delivery."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from engine.models import Alert, AlertStatus, IncidentState, Intake
from storage.alert_digests import ALERTS_OF_DELIVERY, alerts_digest
from storage.db import time_text
from storage.store import SqliteStore
from tests.storage.conftest import T0, FakeClock, open_incident

S = IncidentState
FIRING, RESOLVED = AlertStatus.FIRING, AlertStatus.RESOLVED

TABLES = ("deliveries", "alerts", "incidents", "incident_alerts", "audit_log")


def _counts(db_path: Path) -> dict[str, int]:
    with sqlite3.connect(db_path) as conn:
        return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}


def _alert_id(db_path: Path, alert: Alert) -> int:
    with sqlite3.connect(db_path) as conn:
        row = conn.execute(
            "SELECT id FROM alerts WHERE source = ? AND source_key = ?",
            (alert.source, alert.source_key),
        ).fetchone()
        return int(row[0])


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
    assert (entry.action, entry.actor) == ("alerts.received", "alertmanager")
    alert_id = _alert_id(db_path, alert)
    assert entry.detail == {
        "delivery_key": "delivery-1",
        "count": 1,
        "sources": ["alertmanager"],
        "alert_ids": {"first": alert_id, "last": alert_id},
        "incidents": [incident.id],
        "opened": [incident.id],
        "digest_algorithm": "sha256-json-v1",
        "digest": alerts_digest([("alertmanager", alert.source_key, alert.fingerprint, "firing")]),
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
    # Each Intake shows the incident as its whole delivery left it.
    assert [i.incident.alert_count for i in intakes if i.incident] == [3, 3, 3, 4, 5, 6]
    assert first[0].incident is first[1].incident is first[2].incident
    assert not any(i.all_clear for i in intakes)

    incident = await store.get_incident(ids.pop())
    assert incident is not None
    assert incident == intakes[-1].incident
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
    assert (entry.detail["count"], entry.detail["incidents"], entry.detail["opened"]) == (1, [], [])
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


# -- one delivery, many alerts: what each alert and the delivery's audit row say


async def test_a_delivery_shares_one_incident_model_per_incident(
    store: SqliteStore, make_alert: Callable[..., Alert], clock: FakeClock
) -> None:
    """Intake.incident is the incident as the whole delivery left it, one object
    per incident; opened and all_clear stay per alert."""
    held = await open_incident(store, make_alert(group="old"), "d-0")
    clock.advance(5)
    alerts = [
        make_alert(group="new", received_at=T0 + timedelta(seconds=1)),
        make_alert(group="old", received_at=T0 + timedelta(seconds=2)),
        make_alert(group="new", received_at=T0 - timedelta(seconds=1)),
        make_alert(group="old", received_at=T0 + timedelta(seconds=3)),
    ]
    intakes = await store.ingest_alerts(alerts, "d-1")
    assert [i.opened for i in intakes] == [True, False, False, False]
    new, old = intakes[0].incident, intakes[1].incident
    assert new is not None and old is not None
    assert intakes[2].incident is new and intakes[3].incident is old
    assert old.id == held.id != new.id
    assert (new.alert_count, new.firing_count) == (2, 2)
    assert (old.alert_count, old.firing_count) == (3, 3)
    assert new.alert == alerts[0], "the first alert of the group opened it"
    assert new.first_seen == T0 - timedelta(seconds=1)
    assert new.last_seen == T0 + timedelta(seconds=1)
    assert old.last_seen == T0 + timedelta(seconds=3)
    assert old.updated_at == new.updated_at == clock.now()
    assert await store.get_incident(new.id) == new
    assert await store.get_incident(old.id) == old


async def test_all_clear_is_per_alert_within_a_delivery(
    store: SqliteStore, make_alert: Callable[..., Alert], db_path: Path
) -> None:
    def alert(instance: str, status: AlertStatus, second: int) -> Alert:
        return make_alert(
            group="g",
            labels={"instance": instance},
            status=status,
            received_at=T0 + timedelta(seconds=second),
        )

    alerts = [
        alert("db-1", FIRING, 0),  # opens
        alert("db-1", RESOLVED, 1),  # the only member resolves: all clear
        alert("db-2", FIRING, 2),
        alert("db-1", FIRING, 3),
        alert("db-2", RESOLVED, 4),  # db-1 fires again: not all clear
        alert("db-1", RESOLVED, 5),  # the last one: all clear
    ]
    intakes = await store.ingest_alerts(alerts, "d-1")
    assert [i.all_clear for i in intakes] == [False, True, False, False, False, True]
    assert [i.opened for i in intakes] == [True] + [False] * 5
    incident = intakes[0].incident
    assert incident is not None
    assert all(i.incident is incident for i in intakes)
    assert (incident.alert_count, incident.firing_count) == (6, 0)
    db1, db2 = alerts[0].fingerprint, alerts[2].fingerprint
    assert _members(db_path, incident.id) == {db1: ("resolved", 4), db2: ("resolved", 2)}
    with sqlite3.connect(db_path) as conn:
        times = conn.execute(
            "SELECT fingerprint, first_seen, last_seen FROM incident_alerts WHERE incident_id = ?",
            (incident.id,),
        ).fetchall()
    assert {fp: (first, last) for fp, first, last in times} == {
        db1: (time_text(T0), time_text(T0 + timedelta(seconds=5))),
        db2: (time_text(T0 + timedelta(seconds=2)), time_text(T0 + timedelta(seconds=4))),
    }

    # The next delivery counts on from the stored members, once per member.
    later = [alert("db-2", FIRING, 6), alert("db-2", FIRING, 7), alert("db-1", RESOLVED, 8)]
    intakes = await store.ingest_alerts(later, "d-2")
    assert [i.all_clear for i in intakes] == [False, False, False]
    incident = intakes[0].incident
    assert incident is not None and (incident.alert_count, incident.firing_count) == (9, 1)
    assert _members(db_path, incident.id) == {db1: ("resolved", 5), db2: ("firing", 4)}
    assert await store.get_incident(incident.id) == incident


async def test_a_repeated_source_key_within_a_delivery_is_stored_once(
    store: SqliteStore, make_alert: Callable[..., Alert], db_path: Path
) -> None:
    """The second alert with a (source, source_key) already in the delivery is a
    repeat, even when its content differs: the first one wins."""
    before = await open_incident(store, make_alert(source_key="old"), "d-0")
    first = make_alert(source_key="k", group="g")
    again = make_alert(source_key="k", group="g", status=RESOLVED)
    stale = make_alert(source_key="old", group=before.fingerprint)
    other = make_alert(source_key="k2", group="g")
    intakes = await store.ingest_alerts([first, stale, again, other], "d-1")
    assert intakes[1] == intakes[2] == Intake(incident=None)
    assert intakes[0].opened and not intakes[3].opened
    incident = intakes[0].incident
    assert incident is not None and intakes[3].incident is incident
    assert (incident.alert_count, incident.firing_count) == (2, 2)
    with sqlite3.connect(db_path) as conn:
        stored = conn.execute("SELECT status FROM alerts WHERE source_key = 'k'").fetchall()
    assert stored == [("firing",)]
    [entry] = [e for e in await store.audit_entries() if e.detail.get("delivery_key") == "d-1"]
    assert entry.detail["count"] == 2
    first_id, other_id = _alert_id(db_path, first), _alert_id(db_path, other)
    assert entry.detail["alert_ids"] == {"first": first_id, "last": other_id}
    assert other_id == first_id + 1, "a delivery's stored alerts have contiguous ids"


async def test_one_audit_row_per_delivery_attests_every_stored_alert(
    store: SqliteStore, make_alert: Callable[..., Alert], db_path: Path
) -> None:
    held = await open_incident(store, make_alert(group="held"), "d-0")
    alerts = [make_alert(group=f"g{n % 3}") for n in range(9)]
    alerts += [make_alert(group="held", reporter="U0HUMAN")]
    alerts += [make_alert(group="quiet", status=RESOLVED, source="grafana")]
    audit_before = len(await store.audit_entries())
    intakes = await store.ingest_alerts(alerts, "d-1")
    entries = await store.audit_entries()
    assert len(entries) == audit_before + 1
    entry = entries[-1]
    assert (entry.action, entry.incident_id) == ("alerts.received", None)  # several incidents
    assert entry.actor == "U0HUMAN,alertmanager,grafana"
    opened = sorted({i.incident.id for i in intakes if i.opened and i.incident})
    assert len(opened) == 3
    detail = entry.detail
    assert detail["count"] == 11
    assert detail["sources"] == ["alertmanager", "grafana"]
    assert detail["opened"] == opened
    assert detail["incidents"] == sorted([*opened, held.id])
    first, last = detail["alert_ids"]["first"], detail["alert_ids"]["last"]
    assert last - first + 1 == 11
    assert [_alert_id(db_path, a) for a in alerts] == list(range(first, last + 1))
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute(ALERTS_OF_DELIVERY, (first, last)).fetchall()
    assert detail["digest"] == alerts_digest(rows)
    assert detail["digest"] == alerts_digest(
        (a.source, a.source_key, a.fingerprint, a.status.value) for a in alerts
    )
    assert (await store.verify_audit()).ok
    report = await store.verify_alert_digests()
    assert report.ok and report.rows == 2


@pytest.mark.parametrize(
    "tamper",
    [
        "UPDATE alerts SET status = 'resolved' WHERE source_key = ?",
        "UPDATE alerts SET fingerprint = 'forged' WHERE source_key = ?",
        "DELETE FROM alerts WHERE source_key = ?",
    ],
)
async def test_a_tampered_alert_row_no_longer_matches_its_digest(
    store: SqliteStore, make_alert: Callable[..., Alert], db_path: Path, tamper: str
) -> None:
    alerts = [make_alert(group="g") for _ in range(5)]
    await store.ingest_alerts(alerts, "d-1")
    await store.ingest_alerts([make_alert(group="h")], "d-2")
    assert (await store.verify_alert_digests()).ok
    with sqlite3.connect(db_path) as conn:
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute(tamper, (alerts[2].source_key,))
    report = await store.verify_alert_digests()
    assert not report.ok and report.rows == 2
    [problem] = report.problems
    assert problem.startswith("seq 1:")
    assert (await store.verify_audit()).ok, "the chain itself is intact: the digest catches it"


async def test_a_large_delivery_reads_in_chunks(
    store: SqliteStore, make_alert: Callable[..., Alert], db_path: Path
) -> None:
    """More keys, groups and members than one IN list holds."""
    seen = [make_alert(group=f"g{n}") for n in range(300)]
    await store.ingest_alerts(seen[:150] + seen[200:], "d-0")  # 250 groups open
    big = [make_alert(group="big", labels={"n": str(n)}) for n in range(600)]
    await store.ingest_alerts(big[:400], "d-1")
    redelivered = [*seen, *big, *(make_alert(group=f"g{n}") for n in range(300))]
    intakes = await store.ingest_alerts(redelivered, "d-2")
    stored = intakes[:300]
    assert [i.incident is not None for i in stored] == [False] * 150 + [True] * 50 + [False] * 100
    assert all(i.opened for i in stored[150:200])
    assert all(i == Intake(incident=None) for i in intakes[300:700])
    assert all(i.incident is not None and not i.opened for i in intakes[700:])
    for n in range(300):  # the new alert of each group joined its (maybe just opened) incident
        incident = intakes[900 + n].incident
        assert incident is not None and incident.fingerprint == f"g{n}"
        assert incident.alert_count == 2
        if 150 <= n < 200:
            assert intakes[n].incident is incident
    big_incident = intakes[700].incident
    assert big_incident is not None and big_incident.fingerprint == "big"
    assert (big_incident.alert_count, big_incident.firing_count) == (600, 600)
    assert len(_members(db_path, big_incident.id)) == 600
    assert (await store.verify_alert_digests()).ok
