"""The contract of the shared circuit breakers: what one replica opens every replica
sees open, with the same retry time; what one closes is closed for all; and the
trial call after a cool-down is claimed by one replica only."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

from engine.storage_ports import GraceStore

CIRCUIT = "sqlite:/srv/app.db"
RETRY_AT = datetime(2026, 11, 24, 3, 5, 0, 123_456, tzinfo=UTC)


async def test_opened_by_one_replica_is_open_for_the_other_until_the_same_time(
    store: GraceStore, replica: GraceStore
) -> None:
    assert await replica.breaker_open_until(CIRCUIT) is None

    await store.breaker_opened(CIRCUIT, RETRY_AT, "ValueError: disk on fire")

    assert await replica.breaker_open_until(CIRCUIT) == RETRY_AT
    assert await replica.open_breakers() == {CIRCUIT: RETRY_AT}
    assert await store.breaker_open_until("sqlite:/srv/other.db") is None


async def test_closed_by_the_other_replica_is_closed_for_both(
    store: GraceStore, replica: GraceStore
) -> None:
    await store.breaker_opened(CIRCUIT, RETRY_AT, "ValueError: disk on fire")
    await store.breaker_opened("k8s:web", RETRY_AT, "TimeoutError")

    await replica.breaker_closed(CIRCUIT)
    await replica.breaker_closed(CIRCUIT)  # closing a closed one changes nothing

    for seen_by in (store, replica):
        assert await seen_by.breaker_open_until(CIRCUIT) is None
        assert await seen_by.open_breakers() == {"k8s:web": RETRY_AT}


async def test_reopening_moves_the_retry_time(store: GraceStore, replica: GraceStore) -> None:
    later = RETRY_AT + timedelta(minutes=5)
    await store.breaker_opened(CIRCUIT, RETRY_AT, "ValueError: disk on fire")

    await replica.breaker_opened(CIRCUIT, later, "ValueError: still on fire")

    assert await store.breaker_open_until(CIRCUIT) == later
    assert await store.open_breakers() == {CIRCUIT: later}


async def test_one_replica_claims_the_trial_call(store: GraceStore, replica: GraceStore) -> None:
    await store.breaker_opened(CIRCUIT, RETRY_AT, "ValueError: disk on fire")
    until = RETRY_AT + timedelta(minutes=5)

    claims = await asyncio.gather(
        store.claim_breaker_trial(CIRCUIT, RETRY_AT, until),
        replica.claim_breaker_trial(CIRCUIT, RETRY_AT, until + timedelta(seconds=1)),
    )

    assert sorted(claims) == [False, True]
    claimed = until if claims[0] else until + timedelta(seconds=1)
    assert await replica.breaker_open_until(CIRCUIT) == claimed
    # A time read before the claim, or a closed circuit, claims nothing.
    assert not await store.claim_breaker_trial(CIRCUIT, RETRY_AT, until)
    await replica.breaker_closed(CIRCUIT)
    assert not await store.claim_breaker_trial(CIRCUIT, claimed, until)
    assert await store.open_breakers() == {}


async def test_a_retry_time_in_another_zone_is_the_same_instant(store: GraceStore) -> None:
    eastern = RETRY_AT.astimezone(timezone(timedelta(hours=-5)))
    await store.breaker_opened(CIRCUIT, eastern, "TimeoutError")

    assert await store.breaker_open_until(CIRCUIT) == RETRY_AT
    assert await store.claim_breaker_trial(CIRCUIT, RETRY_AT, RETRY_AT + timedelta(minutes=5))
