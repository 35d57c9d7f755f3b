"""Work after an ack waits for Slack's requests to be answered, and never for ever."""

from __future__ import annotations

import asyncio

from bot.ack_first import AckFirst


async def _turns(n: int = 10) -> None:
    """Let the loop run a few times: whatever is ready by then has run."""
    for _ in range(n):
        await asyncio.sleep(0)


class Started(list):
    """What started, in order; `until` waits, woken at each start, for a condition."""

    def __init__(self) -> None:
        super().__init__()
        self._event = asyncio.Event()

    def append(self, name: str) -> None:
        super().append(name)
        self._event.set()

    async def until(self, condition, within_s: float = 5.0) -> None:
        async with asyncio.timeout(within_s):
            while not condition():
                self._event.clear()
                await self._event.wait()


async def test_work_starts_at_once_when_no_request_is_being_answered():
    acks, started = AckFirst(quiet_s=0), Started()
    acks.defer(lambda: started.append("now"))
    assert started == ["now"] and acks.waiting == 0


async def test_work_waits_while_a_request_is_answered_then_starts_in_order():
    acks, started = AckFirst(quiet_s=0, max_wait_s=3600), Started()
    with acks.answer():
        for name in ("first", "second", "third"):
            acks.defer(lambda name=name: started.append(name))
        await _turns()
        assert started == [] and acks.waiting == 3
    await started.until(lambda: acks.waiting == 0)
    assert started == ["first", "second", "third"]


async def test_work_waits_for_a_quiet_moment_not_for_a_gap_between_requests():
    now, started = [0.0], Started()
    acks = AckFirst(quiet_s=0.05, max_wait_s=3600, clock=lambda: now[0])
    with acks.answer():
        acks.defer(lambda: started.append("work"))
    now[0] = 0.04  # answered, but the next request may be a moment away
    await _turns()
    assert started == []
    now[0] = 0.06
    await started.until(lambda: started == ["work"])


async def test_under_load_that_never_pauses_work_starts_after_its_longest_wait():
    now, started = [0.0], Started()
    acks = AckFirst(quiet_s=0, max_wait_s=2.0, clock=lambda: now[0])
    with acks.answer():
        acks.defer(lambda: started.append("early"))
        now[0] = 1.0
        acks.defer(lambda: started.append("late"))
        now[0] = 2.5  # the first has waited 2.5 s, the second 1.5 s
        await started.until(lambda: started == ["early"])
        await _turns()
        assert started == ["early"]
        now[0] = 3.0
        await started.until(lambda: started == ["early", "late"])


async def test_work_queued_behind_waiting_work_keeps_its_place_once_quiet():
    acks, started = AckFirst(quiet_s=0, max_wait_s=3600), Started()
    with acks.answer():
        acks.defer(lambda: started.append("first"))
    acks.defer(lambda: started.append("second"))  # quiet now, but the first still waits
    await started.until(lambda: acks.waiting == 0)
    assert started == ["first", "second"]


async def test_a_start_that_raises_is_logged_and_the_rest_still_start(caplog):
    acks, started = AckFirst(quiet_s=0, max_wait_s=3600), Started()

    def broken() -> None:
        raise RuntimeError("could not start")

    with acks.answer():
        acks.defer(broken)
        acks.defer(lambda: started.append("next"))
    await started.until(lambda: started == ["next"])
    assert "deferred work failed to start" in caplog.text


async def test_a_request_that_fails_still_ends_its_answering():
    acks, started = AckFirst(quiet_s=0), Started()
    try:
        with acks.answer():
            raise RuntimeError("the listener failed")
    except RuntimeError:
        pass
    acks.defer(lambda: started.append("work"))
    assert started == ["work"]
