"""At start-up, every incident goes on from the state GRACE left it in.

GRACE may die anywhere: between storing an alert and diagnosing it, between
moving an incident on and queueing its card, in the middle of a heal. So:

- an incident still `open` is diagnosed and carded, one `diagnosed` is moved
  on to its approval (or its tier-1 run) and carded, as if GRACE had not
  stopped; nothing had been done to a target yet;
- an incident a person must see whose card was never queued gets its card
  now, with the story line it was posted with;
- a run cut short (approved, executing, verifying) ends `interrupted`, never
  re-run silently: the target may be half-changed. The thread lists the
  snapshots taken, and a target that may have been touched is held until a
  person clears it.

Several replicas may share the database, each running its own plans (the
store records the runner of each run). A run is cut short only when its
runner is gone: none is recorded (a run older than replicas), it is this
replica's own name (at start-up: its previous process died), or the
runner's heartbeat is older than the liveness TTL (it was killed). So at
start-up a live replica's heal is left alone, and at each scheduler tick
(`take_over`) the runs of a replica that died are ended the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta

from engine.models import GRACE, RUNNING_STATES, Incident, IncidentState
from engine.narration import Narrator
from engine.ports import Clock, Store
from engine.story import Interrupted, NeedsHuman, Planned, StoryEvent

S = IncidentState

RUNNING = RUNNING_STATES
"""A plan was approved and may have started: a stop cuts it short."""

SHOWN = (S.AWAITING_APPROVAL, S.NEEDS_HUMAN, *RUNNING, S.SAFE_HOLD, S.INTERRUPTED)
"""States a person must see on a card: waiting for them, running, or held."""


@dataclass(frozen=True)
class Recovery:
    store: Store
    narrator: Narrator
    lock: Callable[[int], AbstractAsyncContextManager[object]]
    open_incident: Callable[[Incident], Awaitable[None]]
    present: Callable[[Incident], Awaitable[None]]
    replica: str
    """This replica's name: the runner its own runs are recorded under."""
    ttl_s: float
    """How old a replica's last heartbeat may be before it is taken for dead."""
    clock: Clock

    async def run(self) -> list[Incident]:
        """Resume everything; the runs that ended `interrupted`, for the caller to report."""
        await self._owed_cards()
        stopped = await self._interrupt(
            await self.store.orphaned_runs(self.replica, self.ttl_s, own=True)
        )
        await self._resume_openings()
        return stopped

    async def take_over(self) -> list[Incident]:
        """The runs of replicas that died (no heartbeat within the TTL) end `interrupted`,
        as at a start; this replica's own runs and live replicas' are left alone. An
        incident left open or diagnosed for longer than the TTL (its replica died while
        opening it) is taken on as at a start: its moves are compare-and-set, so one
        still being opened elsewhere is moved on once."""
        orphans = await self.store.orphaned_runs(self.replica, self.ttl_s, own=False)
        for incident in orphans:
            # It may have died before its card was queued: the story needs one to go under.
            await self._card_owed(incident)
        stopped = await self._interrupt(orphans)
        await self._resume_openings(stale_before=self.clock.now() - timedelta(seconds=self.ttl_s))
        return stopped

    async def _owed_cards(self) -> None:
        """First, so the interrupted story below has a card to be told under."""
        for incident in await self.store.incidents_in(SHOWN):
            await self._card_owed(incident)

    async def _card_owed(self, incident: Incident) -> None:
        event = _posted_with(incident)
        if await self.narrator.post_card_once(incident) and event is not None:
            await self.narrator.tell(incident, event)

    async def _interrupt(self, runs: list[Incident]) -> list[Incident]:
        stopped: list[Incident] = []
        # While paused an approved plan is not cut short: it waits for the resume, as planned.
        paused = await self.store.paused() is not None
        for incident in runs:
            if paused and incident.state is S.APPROVED:
                continue
            touched = incident.state is not S.APPROVED
            why = (
                f"GRACE stopped while the plan was {incident.state.value}; "
                "the target may be part-way changed."
                if touched
                else "GRACE stopped after the approval, before anything ran; nothing was changed."
            )
            assert incident.plan is not None, "an approved incident always has a plan"
            event = Interrupted(
                was=incident.state.value,
                target=incident.plan.target.name,
                snapshots=tuple(await self.store.snapshots(incident.id)),
                touched=touched,
            )
            # Told before the move, once: a stop between the two tells it at the next
            # start (the incident is still running then), never not at all.
            await self.narrator.tell_once(incident, event, key=f"interrupted:{incident.id}")
            moved = await self.store.transition(
                incident.id, incident.state, S.INTERRUPTED, actor=GRACE, reason=why
            )
            if moved is None:
                continue
            await self.narrator.show(moved)
            stopped.append(moved)
        return stopped

    async def _resume_openings(self, stale_before: datetime | None = None) -> None:
        """Every open and diagnosed incident, or those unmoved since `stale_before`."""

        def left(incident: Incident) -> bool:
            return stale_before is None or incident.updated_at < stale_before

        for incident in await self.store.incidents_in([S.OPEN]):
            if left(incident):
                async with self.lock(incident.id):
                    await self.open_incident(incident)
        for incident in await self.store.incidents_in([S.DIAGNOSED]):
            if left(incident):
                async with self.lock(incident.id):
                    await self.present(incident)


def _posted_with(incident: Incident) -> StoryEvent | None:
    """The story line a card of this state is first posted with."""
    if incident.state is S.NEEDS_HUMAN:
        return NeedsHuman(reason=incident.reason or "GRACE could not propose a plan.")
    if incident.diagnosis is not None and incident.plan is not None:
        return Planned(diagnosis=incident.diagnosis, plan=incident.plan)
    return None
