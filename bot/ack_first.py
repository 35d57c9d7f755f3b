"""Acks first: work that follows an ack waits while Slack's requests are being answered.

Slack shows the person an error when an ack takes longer than 3 s; the work
after it (refusing a click privately, showing a dry run, answering a report)
has no such deadline and is durable in the inbox. Both share one event loop,
so under a burst of clicks every handler that runs beside the acks slows them
all (bench/ack_latency.py). So a piece of post-ack work starts once no Slack
request has been in flight for `quiet_s`, or once it has waited `max_wait_s`,
whichever is first: in a burst the work runs after it, and under load that
never pauses it still runs, each piece `max_wait_s` late, at the rate it came.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable, Iterator

QUIET_S = 0.1
"""A gap this long between Slack's requests is the end of a burst, not a pause inside
one: with 20 ms, stalls of the sender let a burst's work in among its acks."""

MAX_WAIT_S = 2.0
"""How long post-ack work defers to acks at most: far inside anyone's patience
for a private answer, longer than a burst of clicks lasts."""


class AckFirst:
    """Counts the Slack requests being answered; `turn()` waits for a quiet moment."""

    def __init__(
        self,
        *,
        quiet_s: float = QUIET_S,
        max_wait_s: float = MAX_WAIT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._quiet_s = quiet_s
        self._max_wait_s = max_wait_s
        self._clock = clock
        self._answering = 0
        self._last_answered = float("-inf")
        self._waiting: collections.deque[tuple[float, asyncio.Future[None]]] = collections.deque()
        self._releasing: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        """Pieces of work held back now."""
        return len(self._waiting)

    @contextlib.contextmanager
    def answer(self) -> Iterator[None]:
        """Around the answering of one Slack request, from its arrival to its ack."""
        self._answering += 1
        try:
            yield
        finally:
            self._answering -= 1
            self._last_answered = self._clock()

    async def turn(self) -> None:
        """Return when Slack's requests have been quiet for `quiet_s`, or after
        `max_wait_s` at most; at once when they are quiet already."""
        if self._quiet(self._clock()):
            return
        turn = asyncio.get_running_loop().create_future()
        self._waiting.append((self._clock() + self._max_wait_s, turn))
        if self._releasing is None or self._releasing.done():
            self._releasing = asyncio.create_task(self._release(), name="grace-acks-first")
        await turn

    def _quiet(self, now: float) -> bool:
        return self._answering == 0 and now - self._last_answered >= self._quiet_s

    async def _release(self) -> None:
        """Let work go in the order it came: all of it when quiet, else as its wait ends."""
        while self._waiting:
            now = self._clock()
            quiet = self._quiet(now)
            while self._waiting and (quiet or self._waiting[0][0] <= now):
                _, turn = self._waiting.popleft()
                if not turn.done():
                    turn.set_result(None)
            if self._waiting:
                # Checked again every quiet_s, or when the oldest piece's wait ends.
                await asyncio.sleep(max(0.0, min(self._quiet_s, self._waiting[0][0] - now)))
