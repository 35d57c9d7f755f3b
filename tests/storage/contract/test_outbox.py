"""The contract of the Slack outbox: each stream in the order it was queued,
lanes that never wait on each other, marks that settle a row once, coalescing,
the card an incident's delivered post becomes, and all of it durable."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import pytest

from engine.models import Alert
from engine.records import Card, OutboxItem
from engine.storage_ports import GraceStore
from tests.storage.contract.conftest import (
    CLAIMER,
    ContractClock,
    Database,
    claim_all,
    open_incident,
)


async def heads(store: GraceStore, clock: ContractClock) -> list[int]:
    return [item.id for item in await store.outbox_heads(clock.now())]


async def test_heads_are_each_lanes_oldest_and_a_lane_keeps_its_order(
    store: GraceStore, clock: ContractClock
) -> None:
    assert await store.outbox_next_due(clock.now()) is None, "an empty outbox has nothing due"
    assert await store.outbox_pending() == 0
    a1 = await store.enqueue("C1", "thread", {"text": "one"})
    b1 = await store.enqueue("C2", "ephemeral", {"text": "hi"}, user_id="U1")
    a2 = await store.enqueue("C1", "thread", {"text": "two"})
    assert a1 is not None and b1 is not None and a2 is not None
    assert a1 < b1 < a2
    assert await store.outbox_heads(clock.now()) == [
        OutboxItem(
            id=a1,
            channel="C1",
            lane="C1",
            kind="thread",
            incident_id=None,
            user_id=None,
            payload={"text": "one"},
            coalesce_key=None,
            attempts=0,
            not_before=clock.now(),
            created_at=clock.now(),
            sending=False,
        ),
        OutboxItem(
            id=b1,
            channel="C2",
            lane="@U1",
            kind="ephemeral",
            incident_id=None,
            user_id="U1",
            payload={"text": "hi"},
            coalesce_key=None,
            attempts=0,
            not_before=clock.now(),
            created_at=clock.now(),
            sending=False,
        ),
    ]
    assert await store.outbox_pending() == 3
    await store.mark_sent(a1, "1.1")
    assert await heads(store, clock) == [b1, a2]
    assert await store.outbox_pending() == 2


async def test_an_incidents_stream_keeps_its_card_first_and_its_thread_in_order(
    store: GraceStore, clock: ContractClock, make_alert: Callable[..., Alert]
) -> None:
    incident = await open_incident(store, make_alert(channel="C1"), "d-1")
    card = await store.enqueue("C1", "post_card", {}, incident_id=incident.id, priority=11)
    lines = [
        await store.enqueue("C1", "thread", {"text": str(n)}, incident_id=incident.id, priority=p)
        for n, p in enumerate((21, 20, 22))
    ]
    notice = await store.enqueue("C1", "notice", {"text": "paused"}, priority=0)
    assert await heads(store, clock) == [notice, card], "the most urgent head first"
    assert await store.card_queued(incident.id)
    await store.mark_sent(card, "1.1")
    told = []
    while (head := [i for i in await store.outbox_heads(clock.now()) if i.kind == "thread"]) != []:
        told.append(head[0].id)
        await store.mark_sent(head[0].id, None)
    assert told == lines, "in the order told, whatever their priority"


async def test_a_retried_head_holds_back_only_its_own_stream(
    store: GraceStore, clock: ContractClock
) -> None:
    a1 = await store.enqueue("C1", "thread", {"text": "one"})
    a2 = await store.enqueue("C1", "thread", {"text": "two"})
    b1 = await store.enqueue("C2", "thread", {"text": "other"})
    assert a1 is not None
    later = clock.now() + timedelta(seconds=30)
    await store.retry_later(a1, later, "ratelimited")
    assert await heads(store, clock) == [b1]
    assert await store.outbox_next_due(clock.now()) == later
    await store.mark_sent(b1 or 0, None)
    assert await heads(store, clock) == []
    assert await store.outbox_next_due(clock.now()) == later
    clock.advance(30)
    [head] = await store.outbox_heads(clock.now())
    assert (head.id, head.attempts, head.not_before) == (a1, 1, later)
    await store.retry_later(a1, clock.now(), "HTTP 503")
    assert (await store.outbox_heads(clock.now()))[0].attempts == 2
    await store.mark_sent(a1, None)
    assert await heads(store, clock) == [a2]
    assert await store.outbox_next_due(clock.now()) is None


async def test_a_row_is_settled_once_and_late_reports_change_nothing(
    store: GraceStore, replica: GraceStore, clock: ContractClock
) -> None:
    item = await store.enqueue("C1", "thread", {"text": "x"})
    assert item is not None
    await asyncio.gather(store.mark_sent(item, "1.1"), replica.mark_sent(item, "2.2"))
    settled = await store.sent_ts(item)
    assert settled in ("1.1", "2.2")
    await replica.retry_later(item, clock.now(), "late")
    await replica.drop(item, "late")
    assert await claim_all(store, clock.now()) == [], "a settled row is nobody's to claim"
    await store.mark_sent(item, "3.3")
    assert await replica.sent_ts(item) == settled
    assert await store.outbox_pending() == 0 and await heads(store, clock) == []
    with pytest.raises(LookupError):
        await store.mark_sent(10_000, None)


async def test_sending_stays_the_head_until_slack_says_and_survives_a_restart(
    database: Database, clock: ContractClock
) -> None:
    store = await database.open()
    first = await store.enqueue("C1", "thread", {"text": "one"})
    later = await store.enqueue("C1", "thread", {"text": "two"})
    assert first is not None
    [claimed] = await claim_all(store, clock.now())
    assert (claimed.id, claimed.sending) == (first, False), "claimed: 'sending' from here on"
    await database.close_all()
    store = await database.open()
    [head] = await store.outbox_heads(clock.now())
    assert (head.id, head.sending) == (first, True), "the next start looks it up"
    await store.retry_later(first, clock.now(), "HTTP 503", maybe_delivered=True, claimer=CLAIMER)
    [head] = await store.outbox_heads(clock.now())
    assert (head.id, head.sending, head.attempts) == (first, True, 1)
    await store.retry_later(first, clock.now(), "ratelimited")
    [head] = await store.outbox_heads(clock.now())
    assert (head.id, head.sending) == (first, False), "Slack said no: nothing to look up"
    await store.mark_sent(first, "1.1")
    assert await heads(store, clock) == [later]


async def test_a_dropped_row_is_out_of_line(store: GraceStore, clock: ContractClock) -> None:
    bad = await store.enqueue("C1", "thread", {"text": "too long"})
    good = await store.enqueue("C1", "thread", {"text": "fine"})
    await store.drop(bad or 0, "invalid_blocks")
    assert await heads(store, clock) == [good]
    assert await store.outbox_pending() == 1
    assert await store.sent_ts(bad or 0) is None


async def test_coalescing_folds_into_a_waiting_row_never_into_a_head(
    store: GraceStore, clock: ContractClock
) -> None:
    head = await store.enqueue("C1", "update_card", {"v": 1}, coalesce_key="card:1")
    second = await store.enqueue("C1", "update_card", {"v": 2}, coalesce_key="card:1")
    third = await store.enqueue("C1", "update_card", {"v": 3}, coalesce_key="card:1")
    assert head != second == third
    await store.mark_sent(head or 0, None)
    fourth = await store.enqueue("C1", "update_card", {"v": 4}, coalesce_key="card:1")
    assert fourth is not None and second is not None and fourth > second
    assert await store.enqueue("C1", "update_card", {"v": 5}, coalesce_key="card:1") == fourth
    assert [i.payload for i in await store.outbox_heads(clock.now())] == [{"v": 3}]
    await store.mark_sent(second, None)
    assert [i.payload for i in await store.outbox_heads(clock.now())] == [{"v": 5}]


async def test_once_means_one_write_for_a_key_ever(store: GraceStore, clock: ContractClock) -> None:
    first = await store.enqueue("C1", "notice", {"text": "a"}, coalesce_key="p:1", once=True)
    await store.mark_sent(first or 0, "1.1")
    again = await store.enqueue("C1", "notice", {"text": "b"}, coalesce_key="p:1", once=True)
    assert again == first and await store.outbox_pending() == 0


async def test_a_burst_of_one_answer_to_one_person_is_one_write(
    store: GraceStore, clock: ContractClock
) -> None:
    async def refuse(
        text: str = "Someone else decided first.", user: str = "U1", channel: str = "C1"
    ) -> int | None:
        return await store.enqueue(channel, "ephemeral", {"text": text}, user_id=user)

    first = await refuse()
    assert first is not None
    assert {await refuse() for _ in range(50)} == {first}
    assert await store.outbox_pending() == 1
    [claimed] = await claim_all(store, clock.now())
    assert claimed.id == first
    assert await refuse() == first, "one on its way answers this click too"
    different = {await refuse("other"), await refuse(user="U2"), await refuse(channel="C2")}
    assert first not in different and len(different) == 3
    assert await store.outbox_pending() == 4
    await store.mark_sent(first, None, claimer=CLAIMER)
    again = await refuse()
    assert again not in (first, *different), "a later click, after the answer, gets its own"


async def test_a_delivered_card_is_the_incidents_card(
    store: GraceStore, replica: GraceStore, make_alert: Callable[..., Alert]
) -> None:
    incident = await open_incident(store, make_alert(channel="C0ALERTS"), "d-1")
    assert incident.card_ts is None and not await store.card_queued(incident.id)
    post = await store.enqueue("C0ALERTS", "post_card", {}, incident_id=incident.id)
    thread = await store.enqueue("C0ALERTS", "thread", {"text": "x"}, incident_id=incident.id)
    assert await replica.card_queued(incident.id) and await store.card_of(incident.id) is None
    await store.mark_sent(post or 0, "1700000000.000100")
    card = Card("C0ALERTS", "1700000000.000100")
    assert await replica.card_of(incident.id) == card and card.story_ts == card.ts
    found = await replica.incident_for_card("C0ALERTS", "1700000000.000100")
    assert found is not None and found.id == incident.id
    assert found.card_ts == "1700000000.000100"
    assert await replica.incident_for_card("C0OTHER", "1700000000.000100") is None
    await store.mark_sent(thread or 0, "1700000000.000200")
    assert await store.card_of(incident.id) == card, "a thread reply is not a card"


async def test_a_payload_that_is_not_json_is_refused_and_nothing_stored(
    store: GraceStore,
) -> None:
    with pytest.raises(TypeError):
        await store.enqueue("C1", "thread", {"text": object()})
    assert await store.outbox_pending() == 0


async def test_the_outbox_survives_a_restart(
    database: Database, clock: ContractClock, make_alert: Callable[..., Alert]
) -> None:
    store = await database.open()
    incident = await open_incident(store, make_alert(), "d-1")
    post = await store.enqueue("C1", "post_card", {}, incident_id=incident.id)
    update = await store.enqueue(
        "C1", "update_card", {"v": 1}, incident_id=incident.id, coalesce_key="k"
    )
    other = await store.enqueue("C2", "thread", {"text": "x"})
    await store.retry_later(post or 0, clock.now() + timedelta(seconds=5), "HTTP 500")
    before = await store.outbox_heads(clock.now() + timedelta(seconds=5))
    assert before[0].attempts == 1
    await database.close_all()
    store = await database.open()
    assert await store.outbox_pending() == 3
    assert await heads(store, clock) == [other]
    assert await store.outbox_heads(clock.now() + timedelta(seconds=5)) == before
    await store.mark_sent(post or 0, "9.9")
    assert await store.card_of(incident.id) == Card("C1", "9.9")
    assert await heads(store, clock) == [update, other], "then the card's update"
