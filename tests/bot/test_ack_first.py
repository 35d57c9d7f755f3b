"""Work after an ack waits for Slack's requests to be answered, and never for ever."""

from __future__ import annotations

import asyncio

from bot.ack_first import AckFirst


async def _turns(n: int = 10) -> None:
    """Let the loop run a few times: whatever is ready by then has run."""
    for _ in range(n):
        await asyncio.sleep(0)


async def test_work_goes_at_once_when_no_request_is_being_answered():
    acks = AckFirst(quiet_s=0)
    await asyncio.wait_for(acks.turn(), timeout=1)
    assert acks.waiting == 0


async def test_work_waits_while_a_request_is_answered_then_goes_in_order():
    acks, done = AckFirst(quiet_s=0, max_wait_s=3600), []

    async def work(name: str) -> None:
        await acks.turn()
        done.append(name)

    with acks.answer():
        tasks = [asyncio.ensure_future(work(n)) for n in ("first", "second", "third")]
        await _turns()
        assert done == [] and acks.waiting == 3
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=1)
    assert done == ["first", "second", "third"] and acks.waiting == 0


async def test_work_waits_for_a_quiet_moment_not_for_a_gap_between_requests():
    now = [0.0]
    acks = AckFirst(quiet_s=0.5, max_wait_s=3600, clock=lambda: now[0])
    with acks.answer():
        waiting = asyncio.ensure_future(acks.turn())
        await _turns()
    now[0] = 0.4  # answered, but the next request may be a moment away
    await _turns()
    assert not waiting.done()
    now[0] = 0.6
    await asyncio.wait_for(waiting, timeout=5)


async def test_under_load_that_never_pauses_work_goes_after_its_longest_wait():
    now = [0.0]
    acks = AckFirst(quiet_s=0, max_wait_s=2.0, clock=lambda: now[0])
    with acks.answer():
        early = asyncio.ensure_future(acks.turn())
        await _turns()
        now[0] = 1.0
        late = asyncio.ensure_future(acks.turn())
        await _turns()
        now[0] = 2.5  # the first waited 2.5 s, the second 1.5 s
        await asyncio.wait_for(early, timeout=1)
        await _turns()
        assert not late.done()
        now[0] = 3.0
        await asyncio.wait_for(late, timeout=1)


async def test_a_request_that_fails_still_ends_its_answering():
    acks = AckFirst(quiet_s=0)
    try:
        with acks.answer():
            raise RuntimeError("the listener failed")
    except RuntimeError:
        pass
    await asyncio.wait_for(acks.turn(), timeout=1)
