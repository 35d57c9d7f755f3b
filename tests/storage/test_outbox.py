"""The Slack outbox: per-lane order, head-of-line retries, coalescing, durability, the
'sending' state that makes a lost answer a lookup, and one answer to a burst of clicks."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from engine.models import Alert
from storage.db import connect, load_migrations, migrate
from storage.store import SqliteStore
from tests.storage.conftest import FakeClock, open_incident
from tests.storage.contract.conftest import CLAIMER, claim_all


def _row(db_path: Path, item_id: int) -> dict[str, object]:
    with sqlite3.connect(db_path) as conn:
        conn.row_factory = sqlite3.Row
        return dict(conn.execute("SELECT * FROM outbox WHERE id = ?", (item_id,)).fetchone())


async def _head_ids(store: SqliteStore, clock: FakeClock) -> list[int]:
    return [item.id for item in await store.outbox_heads(clock.now())]


async def test_a_retried_head_blocks_only_its_own_channel(
    store: SqliteStore, clock: FakeClock, db_path: Path
) -> None:
    a1 = await store.enqueue("C1", "thread", {"text": "one"})
    a2 = await store.enqueue("C1", "thread", {"text": "two"})
    b1 = await store.enqueue("C2", "thread", {"text": "other"})
    later = clock.now() + timedelta(seconds=30)
    await store.retry_later(a1, later, "ratelimited")

    assert await _head_ids(store, clock) == [b1], "C1's second row must not overtake its first"
    assert await store.outbox_next_due(clock.now()) == later, "C2's head is due already"
    await store.mark_sent(b1, None)
    assert await _head_ids(store, clock) == []
    assert await store.outbox_next_due(clock.now()) == later

    clock.advance(30)
    [head] = await store.outbox_heads(clock.now())
    assert (head.id, head.attempts, head.not_before) == (a1, 1, later)
    assert _row(db_path, a1)["last_error"] == "ratelimited"
    await store.retry_later(a1, clock.now(), "HTTP 503")
    assert (await store.outbox_heads(clock.now()))[0].attempts == 2
    await store.mark_sent(a1, None)
    assert await _head_ids(store, clock) == [a2]


async def test_coalescing_replaces_a_waiting_row_in_place(
    store: SqliteStore, clock: FakeClock, make_alert: Callable[..., Alert]
) -> None:
    inc = await open_incident(store, make_alert(), "d-1")
    post = await store.enqueue("C1", "post_card", {}, incident_id=inc.id)
    update = await store.enqueue(
        "C1", "update_card", {"v": 1}, incident_id=inc.id, coalesce_key="card:1"
    )
    thread = await store.enqueue("C1", "thread", {"text": "t"}, incident_id=inc.id)
    # The first update heads its stream (it may be sent any moment): the next queues.
    later = await store.enqueue(
        "C1", "update_card", {"v": 2}, incident_id=inc.id, coalesce_key="card:1"
    )
    again = await store.enqueue(
        "C1", "update_card", {"v": 3}, incident_id=inc.id, coalesce_key="card:1"
    )
    assert update < thread < later == again, "same row, same place in line"
    assert await store.outbox_pending() == 4

    assert await _head_ids(store, clock) == [post], "an update and a story wait for the card"
    await store.mark_sent(post, "1.1")
    assert await _head_ids(store, clock) == [update, thread]
    await store.mark_sent(update, None)
    heads = await store.outbox_heads(clock.now())
    assert [(h.id, h.payload) for h in heads] == [(thread, {"text": "t"}), (later, {"v": 3})]


async def test_mark_sent_of_a_card_sets_the_incidents_card(
    store: SqliteStore, make_alert: Callable[..., Alert], db_path: Path, clock: FakeClock
) -> None:
    inc = await open_incident(store, make_alert(channel="C0ALERTS"), "d-1")
    post = await store.enqueue("C0ALERTS", "post_card", {}, incident_id=inc.id)
    thread = await store.enqueue("C0ALERTS", "thread", {"text": "x"}, incident_id=inc.id)
    assert await store.card_of(inc.id) is None
    clock.advance(2)
    await store.mark_sent(post, "1700000000.000100")
    assert await store.card_of(inc.id) == ("C0ALERTS", "1700000000.000100", None)
    carded = await store.incident_for_card("C0ALERTS", "1700000000.000100")
    assert carded is not None and carded.id == inc.id
    row = _row(db_path, post)
    assert (row["state"], row["slack_ts"], row["sent_at"]) == (
        "sent",
        "1700000000.000100",
        clock.now().isoformat(timespec="microseconds"),
    )
    # A thread reply's ts is not a card.
    await store.mark_sent(thread, "1700000000.000200")
    assert await store.card_of(inc.id) == ("C0ALERTS", "1700000000.000100", None)


async def test_drop_keeps_the_row_and_frees_the_channel(
    store: SqliteStore, clock: FakeClock, db_path: Path
) -> None:
    bad = await store.enqueue("C1", "thread", {"text": "too long"})
    good = await store.enqueue("C1", "thread", {"text": "fine"})
    await store.drop(bad, "invalid_blocks")
    assert await _head_ids(store, clock) == [good]
    assert await store.outbox_pending() == 1
    row = _row(db_path, bad)
    assert (row["state"], row["last_error"], row["attempts"]) == ("dropped", "invalid_blocks", 1)


async def test_settled_rows_ignore_late_reports(
    store: SqliteStore, clock: FakeClock, db_path: Path
) -> None:
    item = await store.enqueue("C1", "thread", {"text": "x"})
    await store.mark_sent(item, "1.1")
    await store.retry_later(item, clock.now(), "late")
    await store.drop(item, "late")
    await store.mark_sent(item, "2.2")
    row = _row(db_path, item)
    assert (row["state"], row["slack_ts"], row["attempts"]) == ("sent", "1.1", 0)
    with pytest.raises(LookupError):
        await store.mark_sent(999, None)


async def test_ephemerals_queue_per_person_not_behind_the_channel(
    store: SqliteStore, clock: FakeClock
) -> None:
    story = await store.enqueue("C1", "thread", {"text": "one"})
    await store.enqueue("C1", "thread", {"text": "two"})
    refusal = await store.enqueue("C1", "ephemeral", {"text": "no"}, user_id="U1")
    other = await store.enqueue("C1", "ephemeral", {"text": "no"}, user_id="U2")
    await store.retry_later(story, clock.now() + timedelta(seconds=30), "ratelimited")
    assert await _head_ids(store, clock) == [refusal, other], "a stuck story holds no answer"
    assert [item.lane for item in await store.outbox_heads(clock.now())] == ["@U1", "@U2"]


async def test_sending_stays_the_head_until_settled_and_survives_a_restart(
    db_path: Path, clock: FakeClock
) -> None:
    async with await SqliteStore.open(db_path, clock) as store:
        card = await store.enqueue("C1", "thread", {"text": "one"})
        later = await store.enqueue("C1", "thread", {"text": "two"})
        assert [item.id for item in await claim_all(store, clock.now())] == [card]
        row = _row(db_path, card)
        assert (row["state"], row["claimed_by"]) == ("sending", CLAIMER)
    async with await SqliteStore.open(db_path, clock) as store:
        [head] = await store.outbox_heads(clock.now())
        assert (head.id, head.sending) == (card, True), "the next start looks it up"
        assert await store.outbox_pending() == 2
        await store.retry_later(
            card, clock.now(), "HTTP 503", maybe_delivered=True, claimer=CLAIMER
        )
        [head] = await store.outbox_heads(clock.now())
        assert (head.id, head.sending, head.attempts) == (card, True, 1)
        assert _row(db_path, card)["claimed_by"] is None, "a retried row is nobody's"
        await store.retry_later(card, clock.now(), "ratelimited")
        [head] = await store.outbox_heads(clock.now())
        assert (head.id, head.sending) == (card, False), "Slack said no: nothing to look up"
        [claimed] = await claim_all(store, clock.now())
        assert (claimed.id, claimed.sending) == (card, False)
        await store.mark_sent(card, "1.1", claimer=CLAIMER)
        assert await _head_ids(store, clock) == [later]
        await store.retry_later(card, clock.now(), "late", claimer=CLAIMER)  # changes nothing
        assert _row(db_path, card)["state"] == "sent"


async def test_a_card_found_in_slack_becomes_the_incidents_card(
    store: SqliteStore, clock: FakeClock, make_alert: Callable[..., Alert]
) -> None:
    inc = await open_incident(store, make_alert(channel="C0ALERTS"), "d-1")
    post = await store.enqueue("C0ALERTS", "post_card", {}, incident_id=inc.id)
    await claim_all(store, clock.now())
    await store.retry_later(
        post, clock.now(), "ServerDisconnectedError", maybe_delivered=True, claimer=CLAIMER
    )
    await store.mark_sent(post, "1700000000.000100")
    assert await store.card_of(inc.id) == ("C0ALERTS", "1700000000.000100", None)


async def test_migration_10_keeps_every_row_and_gives_it_its_lane(db_path: Path) -> None:
    before = [m for m in load_migrations() if m.version < 10]
    conn = await connect(db_path)
    try:
        assert await migrate(conn, before) == 9
        rows = [
            ("C1", "thread", None, "pending"),
            ("C1", "ephemeral", "U7", "pending"),
            ("C2", "post_card", None, "sent"),
        ]
        for channel, kind, user, state in rows:
            await conn.execute(
                "INSERT INTO outbox (channel, kind, user_id, payload, state, not_before,"
                " created_at) VALUES (?, ?, ?, '{}', ?, 't', 't')",
                (channel, kind, user, state),
            )
        assert await migrate(conn) >= 10
        async with conn.execute("SELECT id, lane, state FROM outbox ORDER BY id") as cursor:
            migrated = [tuple(row) for row in await cursor.fetchall()]
        assert migrated == [(1, "C1", "pending"), (2, "@U7", "pending"), (3, "C2", "sent")]
        with pytest.raises(sqlite3.IntegrityError):
            await conn.execute("UPDATE outbox SET state = 'lost' WHERE id = 1")
    finally:
        await conn.close()
