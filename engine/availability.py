"""Which executors can act here, and why not: asked of all at once, never trusted to answer.

An executor whose platform is missing (no credentials, no daemon, no
kubeconfig) must say so plainly; one whose check hangs or crashes is reported
unavailable with what happened, so a survey never fails as a whole.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from engine.models import Availability, TargetHold
from engine.ports import Clock, Executor

log = logging.getLogger(__name__)

SURVEY_TIMEOUT_S = 5.0
ANSWER_TTL = timedelta(seconds=10)


@dataclass(frozen=True)
class Readiness:
    """What GRACE can touch right now: `/grace cloud` shows it."""

    executors: Mapping[str, Availability]
    open_breakers: Mapping[str, datetime]  # circuit -> when it lets a trial call through
    holds: tuple[TargetHold, ...]


async def survey(
    executors: Mapping[str, Executor], timeout_s: float = SURVEY_TIMEOUT_S
) -> dict[str, Availability]:
    """Each executor's answer, by name, in name order."""
    names = sorted(executors)
    answers = await asyncio.gather(*(_ask(executors[n], timeout_s) for n in names))
    return dict(zip(names, answers, strict=True))


async def _ask(executor: Executor, timeout_s: float) -> Availability:
    try:
        async with asyncio.timeout(timeout_s):
            return await executor.available()
    except TimeoutError:
        why = f"did not say within {timeout_s:g} s whether it can act"
        return Availability(ok=False, reason=why)
    except Exception as exc:
        log.exception("the %s executor's availability check failed", executor.name)
        return Availability(ok=False, reason=f"its check failed: {type(exc).__name__}: {exc}")


class Availabilities:
    """Each executor's answer for planning: asked at most once per `ttl`, with a deadline.

    A storm of new incidents would otherwise ask once per incident (a probe
    file, an API call each), and a check that hung or raised would hold up or
    lose the incident it was asked for. Asks that overlap share one check.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        ttl: timedelta = ANSWER_TTL,
        timeout_s: float = SURVEY_TIMEOUT_S,
    ) -> None:
        self._clock = clock
        self._ttl = ttl
        self._timeout_s = timeout_s
        self._answers: dict[str, tuple[datetime, Availability]] = {}
        self._asking: dict[str, asyncio.Future[Availability]] = {}

    async def survey(self, executors: Mapping[str, Executor]) -> dict[str, Availability]:
        """Every executor's answer, by name in name order, from the same cache."""
        names = sorted(executors)
        answers = await asyncio.gather(*(self.of(executors[n]) for n in names))
        return dict(zip(names, answers, strict=True))

    async def of(self, executor: Executor) -> Availability:
        cached = self._answers.get(executor.name)
        if cached is not None and self._clock.now() - cached[0] < self._ttl:
            return cached[1]
        asking = self._asking.get(executor.name)
        if asking is None or asking.done():
            asking = self._asking[executor.name] = asyncio.ensure_future(self._ask(executor))
        # Shielded: one caller giving up must not cancel the check the others wait on.
        return await asyncio.shield(asking)

    async def _ask(self, executor: Executor) -> Availability:
        asked_at = self._clock.now()
        answer = await _ask(executor, self._timeout_s)
        self._answers[executor.name] = (asked_at, answer)
        return answer
