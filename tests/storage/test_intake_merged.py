"""Deliveries queued together share one intake pass, and each gets what it would alone.

Each test runs the same deliveries twice, on two fresh databases: one after
another (a pass each), and all queued behind a held writer (one pass, one
transaction). The answers and every stored row must be the same.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.models import Alert, AlertStatus, IncidentState, Intake
from storage.store import SqliteStore
from tests.storage.conftest import T0, FakeClock, open_incident
from tests.storage.test_writer import Gate

TABLES = {  # each by its primary key: rowids are SQLite's own business
    "alerts": "id",
    "incidents": "id",
    "incident_alerts": "incident_id, fingerprint",
    "audit_log": "seq",
    "deliveries": "delivery_key",
}

Delivery = tuple[list[Alert], str]
Outcome = list[Intake] | BaseException


def _dump(db_path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(db_path) as conn:
        return {
            t: conn.execute(f"SELECT * FROM {t} ORDER BY {key}").fetchall()
            for t, key in TABLES.items()
        }


async def _one_by_one(
    store: SqliteStore, clock: FakeClock, deliveries: Sequence[Delivery]
) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for alerts, key in deliveries:
        try:
            outcomes.append(await store.ingest_alerts(alerts, key))
        except Exception as exc:  # compared with the merged run's
            outcomes.append(exc)
        clock.advance(1)
    return outcomes


async def _together(
    store: SqliteStore, clock: FakeClock, deliveries: Sequence[Delivery]
) -> list[Outcome]:
    """All deliveries in one writer batch: queued while the writer is held."""
    gate = Gate()
    held = await gate.close_on(store.writer)
    batches = store.writer.batches
    tasks = []
    for alerts, key in deliveries:
        tasks.append(asyncio.ensure_future(store.ingest_alerts(alerts, key)))
        await asyncio.sleep(0)  # one loop turn: the task reads the clock and queues its write
        clock.advance(1)
    gate.release.set()
    assert await held == "gate"
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert store.writer.batches == batches + 1, "the deliveries were meant to share one batch"
    return list(outcomes)


async def _both_ways(
    tmp_path: Path,
    setup: Callable[[SqliteStore], Any],
    deliveries: Sequence[Delivery],
    trigger: str | None = None,
) -> tuple[list[Outcome], list[Outcome], SqliteStore]:
    """Run `deliveries` one by one and together on two databases set up alike;
    assert they stored the same rows. Returns both outcomes and the second store, open."""
    results = []
    for name, run in (("alone", _one_by_one), ("together", _together)):
        db_path = tmp_path / f"{name}.db"
        clock = FakeClock()
        store = await SqliteStore.open(db_path, clock)
        await setup(store)
        if trigger:
            with sqlite3.connect(db_path) as conn:
                conn.execute(trigger)
        results.append((await run(store, clock, deliveries), _dump(db_path), store))
        if name == "alone":
            await store.close()
    (alone, alone_rows, _), (together, together_rows, store) = results
    assert together_rows == alone_rows
    return alone, together, store


async def _nothing(store: SqliteStore) -> None:
    return None


async def test_a_pass_gives_each_delivery_what_it_would_get_alone(
    tmp_path: Path, make_alert: Callable[..., Alert]
) -> None:
    held = make_alert(group="held")

    async def setup(store: SqliteStore) -> None:
        await open_incident(store, held, "d-0")

    first = make_alert(group="g", received_at=T0 + timedelta(seconds=1))
    deliveries: list[Delivery] = [
        ([first], "d-1"),  # opens g
        ([make_alert(group="g"), make_alert(group="held")], "d-2"),  # joins g and held
        ([make_alert(group="g")], "d-1"),  # d-1's key again: nothing
        ([make_alert(source_key=first.source_key, group="g")], "d-3"),  # a repeat: nothing
        ([make_alert(group="h", status=AlertStatus.RESOLVED)], "d-4"),  # nothing active: alone
        ([make_alert(group="h"), make_alert(group="h")], "d-3"),  # d-3 stored nothing: it counts
        ([make_alert(group="h", status=AlertStatus.RESOLVED, labels=held.labels)], "d-5"),
        ([make_alert(group="held", received_at=T0 - timedelta(seconds=9))], "d-6"),
    ]
    alone, together, store = await _both_ways(tmp_path, setup, deliveries)
    try:
        assert together == alone
        assert [len(o) for o in together if isinstance(o, list)] == [1, 2, 0, 1, 1, 2, 1, 1]
        g1, g2 = together[0][0].incident, together[1][0].incident  # type: ignore[index]
        assert g1 is not None and g2 is not None and g1.id == g2.id
        # Each delivery sees its incident as it left it, not as the pass did.
        assert (g1.alert_count, g2.alert_count) == (1, 2)
        assert g2.updated_at == g1.updated_at + timedelta(seconds=1)
        assert together[1][1].incident is not None  # type: ignore[index]
        assert together[1][1].incident.alert_count == 2  # type: ignore[index]
        assert together[3] == [Intake(incident=None)]
        assert together[5][0].opened and not together[5][1].opened  # type: ignore[index]
        last_held = together[7][0].incident  # type: ignore[index]
        assert last_held is not None and last_held.alert_count == 3
        assert last_held.first_seen == T0 - timedelta(seconds=9)
        assert await store.get_incident(last_held.id) == last_held
        assert (await store.verify_audit()).ok
        assert (await store.verify_alert_digests()).ok
    finally:
        await store.close()


async def test_a_failing_delivery_in_a_pass_fails_alone(
    tmp_path: Path, make_alert: Callable[..., Alert]
) -> None:
    """The pass fails on it, so each delivery runs again alone: the others are stored."""
    deliveries: list[Delivery] = [
        ([make_alert(group="g")], "d-1"),
        ([make_alert(group="g"), make_alert(name="Boom")], "d-2"),
        ([make_alert(group="g")], "d-3"),
    ]
    boom = (
        "CREATE TRIGGER boom BEFORE INSERT ON alerts WHEN NEW.name = 'Boom'"
        " BEGIN SELECT RAISE(ABORT, 'boom'); END"
    )
    alone, together, store = await _both_ways(tmp_path, _nothing, deliveries, trigger=boom)
    try:
        assert isinstance(together[1], sqlite3.IntegrityError) and "boom" in str(together[1])
        assert together[0] == alone[0] and together[2] == alone[2]
        incident = together[2][0].incident  # type: ignore[index]
        assert incident is not None and incident.alert_count == 2
        assert (await store.verify_audit()).ok
    finally:
        await store.close()


async def test_a_join_shows_the_incident_as_it_is_now(
    store: SqliteStore, make_alert: Callable[..., Alert]
) -> None:
    """Intake reuses an incident's model while its row is unchanged but for its
    counts; a change of anything else (here its state) shows at once."""
    incident = await open_incident(store, make_alert(group="g"), "d-1")
    [joined] = await store.ingest_alerts([make_alert(group="g")], "d-2")
    assert joined.incident is not None and joined.incident.state is IncidentState.OPEN
    moved = await store.transition(
        incident.id, IncidentState.OPEN, IncidentState.NEEDS_HUMAN, actor="grace"
    )
    assert moved is not None
    [again] = await store.ingest_alerts([make_alert(group="g")], "d-3")
    assert again.incident is not None
    assert again.incident.state is IncidentState.NEEDS_HUMAN
    assert again.incident.alert_count == 3
    assert again.incident == await store.get_incident(incident.id)


@pytest.mark.parametrize("count", [1, 40])
async def test_many_deliveries_of_one_group_in_one_pass(
    tmp_path: Path, make_alert: Callable[..., Alert], count: int
) -> None:
    """A storm's shape: single-alert deliveries, all of one group, in one pass."""
    deliveries: list[Delivery] = [([make_alert(group="storm")], f"d-{n}") for n in range(count)]
    alone, together, store = await _both_ways(tmp_path, _nothing, deliveries)
    try:
        assert together == alone
        counts = [o[0].incident.alert_count for o in together]  # type: ignore[index,union-attr]
        assert counts == list(range(1, count + 1))
    finally:
        await store.close()
