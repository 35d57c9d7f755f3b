"""The aws executor's operations, declared into one table by the service modules
(asg, ec2, rds), and what each of them gives the executor besides: how it
snapshots and restores its kind of target.

Handlers are uniform per table: an action is
`(aws, ref, params, snapshot, deadline) -> (ok, detail)`, a check
`(aws, ref, params, deadline) -> (ok, detail)`; `deadline` is `time.monotonic()`'s.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from pydantic import Field

from engine.executors.aws.api import Aws
from engine.executors.aws.targets import EXECUTOR_NAME, Ref
from engine.executors.plugin import Operations
from engine.ports import WaitingParams

OPS = Operations(EXECUTOR_NAME)


class Within(WaitingParams):
    """A check that keeps reading its target until it holds or time is up."""

    KIND: ClassVar[str]
    within_s: float = Field(default=0, ge=0, le=3600, description="keep polling this long")


def require_kind(ref: Ref, what: str, name: str, params: Any) -> None:
    """A playbook whose action does not fit its target's kind is a playbook bug."""
    kind = type(params).KIND
    if ref.kind != kind:
        raise ValueError(f"aws {what} {name!r} acts on {kind} targets, not on {ref}")


@dataclass(frozen=True)
class Service:
    """One kind of target's snapshot: what it is, taking it, putting it back."""

    describe: Callable[[Ref], str]
    snapshot: Callable[[Aws, Ref, int, datetime], Awaitable[tuple[dict[str, Any], str]]]
    """(state, location) of the target, for an incident, at a time."""
    restore: Callable[[Aws, Ref, dict[str, Any], float], Awaitable[None]]
    """Put the target back as `state` says, by the deadline, or raise saying why not."""


async def state_is(
    aws: Aws,
    ref: Ref,
    what: str,
    read: Callable[[], Awaitable[str]],
    wanted: str,
    deadline: float,
) -> tuple[bool, str]:
    """A check that `read` (the target's `what`) says `wanted`, polled until the deadline."""
    found, waited = await aws.poll(read, lambda s: s == wanted, deadline)
    if found == wanted:
        return True, f"{ref} is {found}"
    return False, f"{ref} is {found} after {waited:.0f} s, not {wanted} ({what})"
