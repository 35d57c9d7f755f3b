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
from datetime import datetime

from engine.models import Availability, TargetHold
from engine.ports import Executor

log = logging.getLogger(__name__)

SURVEY_TIMEOUT_S = 5.0


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
