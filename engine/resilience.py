"""One way to call the outside world: breaker, retries, deadline, rate and concurrency.

Every executor call goes through `Resilience.call`, so a target that keeps
failing is left alone for a while (the breaker), a lock held for a moment is
waited out (retries, transient errors only), a hung call cannot hold an
incident forever (the deadline), and a storm of incidents cannot hammer one
platform (rate limit and concurrency bound per executor).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, TypeVar

from aiolimiter import AsyncLimiter
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import Context, OpenedState
from pydantic import BaseModel, ConfigDict, Field
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from engine.models import Target
from engine.ports import BreakerBoard, TransientError

T = TypeVar("T")

BreakerState = Literal["open", "closed"]


class Policy(BaseModel):
    """How hard GRACE tries one executor's calls, and how gently."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attempts: int = Field(default=4, ge=1, le=20, description="tries per call, transient only")
    backoff_s: float = Field(default=0.5, gt=0, description="first retry wait, doubling, jittered")
    backoff_max_s: float = Field(default=10.0, gt=0)
    deadline_s: float = Field(default=120.0, gt=0, description="per call, unless the step says")
    restore_deadline_s: float = Field(
        default=1800.0, gt=0, description="per restore: waiting for a rebooted database is slow"
    )
    breaker_failures: int = Field(default=3, ge=1, description="failed calls that open it")
    breaker_cooldown_s: float = Field(default=300.0, gt=0, description="open this long")
    rate_per_s: float = Field(default=5.0, gt=0, description="calls started per second")
    concurrency: int = Field(default=4, ge=1, description="calls in flight at once")


@dataclass(frozen=True)
class BreakerChange:
    """A target's breaker opened or closed, as the call that caused it saw it."""

    circuit: str
    state: BreakerState
    retry_at: datetime | None = None
    cause: str | None = None


ChangeHook = Callable[[BreakerChange], Awaitable[None]]


class CircuitOpen(Exception):
    """Failing fast: the target failed too often lately and is left alone."""

    def __init__(self, circuit: str, retry_at: datetime, why: str = "") -> None:
        self.circuit = circuit
        self.retry_at = retry_at
        when = retry_at.strftime("%Y-%m-%d %H:%M:%S UTC")
        super().__init__(
            f"circuit breaker for {circuit} is open{why}: not calling it; "
            f"GRACE will try it again after {when}"
        )


class DeadlineExceeded(Exception):
    """A call gave no answer in time and was cut off."""


def circuit_of(target: Target) -> str:
    return f"{target.executor}:{target.name}"


class Resilience:
    """Breakers per target; rate limit, concurrency bound and policy per executor.

    With a `board` (the store, when several GRACEs share one database) a
    target's breaker is one for all of them: opened by one, every one refuses
    its calls until the cool-down ends; then one of them makes the trial call,
    and its success closes the breaker for all. Without one (tests, a lone
    GRACE) each breaker lives in this process only.
    """

    def __init__(
        self,
        policies: Mapping[str, Policy] | None = None,
        *,
        default: Policy | None = None,
        wall: Callable[[], float] = time.time,
        board: BreakerBoard | None = None,
    ) -> None:
        self._policies = dict(policies or {})
        self._default = default or Policy()
        # purgatory reads time.time(); `wall` must be the same clock, so open
        # breakers report the time purgatory will really let a call through.
        # The board's times are instants on this clock too: each replica compares
        # them with its own `wall`, so replicas' clocks must agree (NTP does).
        self._wall = wall
        self._board = board
        # Board writes of this process per circuit: in flight, and done. While one
        # is in flight, or one ended during a board read, the local breaker is
        # newer than what was read, and is kept as it is.
        self._recording: collections.Counter[str] = collections.Counter()
        self._recorded: collections.Counter[str] = collections.Counter()
        self._guards: dict[str, _Guards] = {}
        self._trials: collections.defaultdict[str, asyncio.Lock] = collections.defaultdict(
            asyncio.Lock
        )
        self._circuits: dict[str, str] = {}  # circuit -> executor, for status

    def policy(self, executor: str) -> Policy:
        return self._policies.get(executor, self._default)

    async def call(
        self,
        target: Target,
        fn: Callable[[], Awaitable[T]],
        *,
        deadline_s: float | None = None,
        on_change: ChangeHook | None = None,
        breaker: bool = True,
    ) -> T:
        """Call `fn` for `target`: retried on TransientError, each try under the deadline.

        The breaker counts whole calls, retries included: a lock held for a
        moment is waited out, a target that fails call after call is left alone.
        `breaker=False` is for restoring a snapshot: the one call that must be
        tried even when the target has been failing.
        """
        policy = self.policy(target.executor)
        deadline = deadline_s if deadline_s is not None else policy.deadline_s

        async def retried() -> T:
            retrying = AsyncRetrying(
                stop=stop_after_attempt(policy.attempts),
                wait=wait_random_exponential(multiplier=policy.backoff_s, max=policy.backoff_max_s),
                retry=retry_if_exception_type(TransientError),
                reraise=True,
            )
            async for attempt in retrying:
                with attempt:
                    return await self._attempt(target, fn, deadline)
            raise AssertionError("unreachable: tenacity reraises the last error")

        if not breaker:
            return await retried()
        return await self._guarded(target, retried, on_change)

    async def _attempt(self, target: Target, fn: Callable[[], Awaitable[T]], deadline: float) -> T:
        guards = self._guards_of(target.executor)
        await guards.limiter.acquire()
        async with guards.slots:
            return await _within(deadline, fn, target)

    async def _guarded(
        self, target: Target, call: Callable[[], Awaitable[T]], on_change: ChangeHook | None
    ) -> T:
        name = circuit_of(target)
        policy = self.policy(target.executor)
        guards = self._guards_of(target.executor)
        self._circuits[name] = target.executor
        trial = self._trials[name]
        shared = await self._follow_board(guards, name, policy)
        brk = await guards.breakers.get_breaker(name)
        context = brk.context
        was_open = context.state != "closed"
        if was_open and self._cooling(context.opened_at, policy):
            retry_at = shared if shared is not None else self._retry_at(context.opened_at, policy)
            raise CircuitOpen(name, retry_at)
        in_progress = " and a trial call is in progress"
        if was_open and trial.locked():
            # purgatory lets every caller through once the cool-down ends; only one may try.
            raise CircuitOpen(name, self._retry_at(self._wall(), policy), in_progress)
        async with trial if was_open else contextlib.nullcontext():
            if was_open and shared is not None and self._board is not None:
                # Only one replica may try too: the one whose compare-and-set moves the
                # board's retry time on by a cool-down. The others refuse until then;
                # should this one die mid-trial, another tries once that time passes.
                until = self._retry_at(self._wall(), policy)
                if not await self._board.claim_breaker_trial(name, shared, until):
                    raise CircuitOpen(name, until, in_progress)
            try:
                async with brk:
                    result = await call()
            except OpenedState:  # opened by another caller between our check and entry
                raise CircuitOpen(name, self._retry_at(context.opened_at, policy)) from None
            except BaseException as exc:
                if context.state == "opened":
                    cause = f"{type(exc).__name__}: {exc}"
                    retry_at = self._retry_at(context.opened_at, policy)
                    if self._board is not None:
                        await self._record(name, self._board.breaker_opened(name, retry_at, cause))
                    if on_change is not None:
                        await on_change(BreakerChange(name, "open", retry_at, cause))
                raise
        if was_open and self._board is not None:
            await self._record(name, self._board.breaker_closed(name))
        if was_open and on_change is not None:
            await on_change(BreakerChange(name, "closed"))
        return result

    async def _follow_board(self, guards: _Guards, name: str, policy: Policy) -> datetime | None:
        """Read the board (once a call, not once a try) and make the local breaker say
        what it says: open until its time, or closed by another replica's trial call.
        Its retry time for `name` when the local breaker now follows it, else None."""
        if self._board is None:
            return None
        recorded = self._recorded[name]
        shared = await self._board.breaker_open_until(name)
        if self._trials[name].locked() or self._recording[name] or self._recorded[name] != recorded:
            return None  # this process's own trial or board write is newer than the read
        context = (await guards.breakers.get_breaker(name)).context
        if shared is None:
            if context.state != "closed":
                await guards.breakers.uow.contexts.register(
                    Context(name, policy.breaker_failures, policy.breaker_cooldown_s)
                )
            return None
        if context.state == "closed" or self._retry_at(context.opened_at, policy) != shared:
            opened_at = shared.timestamp() - policy.breaker_cooldown_s
            await guards.breakers.uow.contexts.register(
                Context(
                    name,
                    policy.breaker_failures,
                    policy.breaker_cooldown_s,
                    state="opened",
                    opened_at=opened_at,
                )
            )
        return shared

    async def _record(self, name: str, write: Awaitable[None]) -> None:
        self._recording[name] += 1
        try:
            await write
        finally:
            self._recording[name] -= 1
            self._recorded[name] += 1

    async def open_breakers(self) -> dict[str, datetime]:
        """Each open breaker's circuit and when it lets a trial call through; with a
        board, the board's (every replica's), which is what the next call follows."""
        if self._board is not None:
            return await self._board.open_breakers()
        found: dict[str, datetime] = {}
        for name, executor in self._circuits.items():
            context = (await self._guards_of(executor).breakers.get_breaker(name)).context
            if context.state != "closed":
                found[name] = self._retry_at(context.opened_at, self.policy(executor))
        return found

    def _cooling(self, opened_at: float | None, policy: Policy) -> bool:
        return opened_at is not None and self._wall() <= opened_at + policy.breaker_cooldown_s

    def _retry_at(self, opened_at: float | None, policy: Policy) -> datetime:
        start = opened_at if opened_at is not None else self._wall()
        return datetime.fromtimestamp(start + policy.breaker_cooldown_s, UTC)

    def _guards_of(self, executor: str) -> _Guards:
        guards = self._guards.get(executor)
        if guards is None:
            guards = self._guards[executor] = _Guards.for_policy(self.policy(executor))
        return guards


@dataclass(frozen=True)
class _Guards:
    """What one executor's calls share: its targets' breakers, its rate and its slots."""

    breakers: AsyncCircuitBreakerFactory
    limiter: AsyncLimiter
    slots: asyncio.Semaphore

    @classmethod
    def for_policy(cls, policy: Policy) -> _Guards:
        # A bucket of one second's calls (at least one call): short bursts
        # pass, a flood is spread out.
        rate = policy.rate_per_s
        return cls(
            breakers=AsyncCircuitBreakerFactory(
                default_threshold=policy.breaker_failures, default_ttl=policy.breaker_cooldown_s
            ),
            limiter=AsyncLimiter(rate, 1.0) if rate >= 1 else AsyncLimiter(1, 1 / rate),
            slots=asyncio.Semaphore(policy.concurrency),
        )


async def _within(deadline: float, fn: Callable[[], Awaitable[T]], target: Target) -> T:
    try:
        async with asyncio.timeout(deadline):
            return await fn()
    except TimeoutError:
        raise DeadlineExceeded(
            f"{circuit_of(target)} gave no answer within {deadline:g} s; the call was cut off"
        ) from None
