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
import logging
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

QUIET_S = 0.1
"""A gap this long between Slack's requests is the end of a burst, not a pause inside
one: with 20 ms, stalls of the sender let a burst's work in among its acks."""

log = logging.getLogger(__name__)

MAX_WAIT_S = 2.0
"""How long post-ack work defers to acks at most: far inside anyone's patience
for a private answer, longer than a burst of clicks lasts."""


class AckFirst:
    """Counts the Slack requests being answered; `defer()` holds work for a quiet moment."""

    def __init__(
        self,
        *,
        quiet_s: float = QUIET_S,
        max_wait_s: float = MAX_WAIT_S,
        clock: Callable[[], float] = time.monotonic,
        spawn: Callable[[Coroutine[Any, Any, None]], object] | None = None,
    ) -> None:
        """`spawn` runs the releasing task: the healer's, so draining it drains this."""
        self._quiet_s = quiet_s
        self._max_wait_s = max_wait_s
        self._clock = clock
        self._answering = 0
        self._last_answered = float("-inf")
        self._waiting: collections.deque[tuple[float, Callable[[], object]]] = collections.deque()
        self._spawn = spawn or self._own_task
        self._task: asyncio.Task[None] | None = None
        self._releasing = False

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

    def defer(self, start: Callable[[], object]) -> None:
        """Call `start` (which spawns the work) once Slack's requests have been quiet
        for `quiet_s`, or after `max_wait_s` at most; at once when they are quiet
        already. Nothing of the work exists until then: a burst costs a list entry
        per piece, not a waiting task."""
        now = self._clock()
        if self._quiet(now) and not self._waiting:
            start()
            return
        self._waiting.append((now + self._max_wait_s, start))
        if not self._releasing:
            self._releasing = True
            self._spawn(self._release())

    def _own_task(self, work: Coroutine[Any, Any, None]) -> None:
        self._task = asyncio.ensure_future(work)

    def _quiet(self, now: float) -> bool:
        return self._answering == 0 and now - self._last_answered >= self._quiet_s

    async def _release(self) -> None:
        """Start work in the order it came: all of it when quiet, else as its wait ends."""
        try:
            while self._waiting:
                now = self._clock()
                quiet = self._quiet(now)
                while self._waiting and (quiet or self._waiting[0][0] <= now):
                    _, start = self._waiting.popleft()
                    try:
                        start()
                    except Exception:
                        log.exception("deferred work failed to start")
                if self._waiting:
                    # Checked again every quiet_s, or when the oldest piece's wait ends.
                    await asyncio.sleep(max(0.0, min(self._quiet_s, self._waiting[0][0] - now)))
        finally:
            self._releasing = False
