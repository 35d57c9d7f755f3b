"""The incident flows behind one object: an alert comes in, a plan is proposed, people decide.

The Healer wires the flows to the ports and runs their follow-ups after Slack's
answer; each flow is its own module (engine/opening.py, engine/decisions.py,
engine/expiry.py, engine/recovery.py, engine/kill_switch.py, engine/clearing.py,
engine/execution.py). bot/ calls its methods and never reaches through it.

Every entry point is safe to call twice: intake is idempotent by delivery key,
and every state change is a compare-and-set, so a Slack retry, a double click
or a second replica can never run a plan twice.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Coroutine, Mapping, Sequence
from datetime import datetime
from typing import Any

from engine.approval import ApprovalPolicy
from engine.autonomy import Autonomy
from engine.availability import Availabilities, Readiness
from engine.catalog import Catalog, PlaybookSpec
from engine.clearing import clear_target
from engine.decisions import Decisions
from engine.earned import Decided, EarnedAutonomy
from engine.execution import Execution
from engine.expiry import DEFAULT_EXPIRY, Expiry
from engine.kill_switch import KillSwitch
from engine.models import Alert, Decision, Incident, Intake, Pause
from engine.narration import Narrator
from engine.opening import Opening
from engine.planner import Planner
from engine.ports import Clock, Closeable, Directory, Executor, Notifier, Store
from engine.proposal import DryRun, Reading
from engine.recovery import Recovery
from engine.resilience import Resilience

log = logging.getLogger(__name__)


class Healer:
    def __init__(
        self,
        *,
        store: Store,
        notifier: Notifier,
        executors: Mapping[str, Executor],
        catalog: Catalog,
        policy: ApprovalPolicy,
        directory: Directory,
        allowlists: Mapping[str, Sequence[str]],
        clock: Clock,
        admins: frozenset[str] = frozenset(),
        expiry: Mapping[int, float] = DEFAULT_EXPIRY,
        resilience: Resilience | None = None,
        autonomy: Autonomy | None = None,
        replica: str = "local",
        replica_ttl_s: float = 30.0,
    ) -> None:
        """`replica` is this process's name among the GRACEs sharing the store (the
        store records it as the runner of the plans it moves on); a replica whose
        heartbeat is older than `replica_ttl_s` is taken for dead, its runs over."""
        self.store = store
        self.admins = admins
        self.catalog = catalog
        self.executors = executors
        self.clock = clock
        self.availabilities = Availabilities(clock)
        self.narrator = Narrator(notifier)
        self.resilience = resilience or Resilience()
        self.earned = EarnedAutonomy(
            store,
            self.narrator,
            clock,
            autonomy or Autonomy(),
            {p.id: p.tier for p in catalog.playbooks},
            admins,
        )
        """Demotions, and the promotions it proposes and admins decide."""
        self.execution = Execution(
            store, self.narrator, executors, clock, self.earned, self.resilience
        )
        self.kill_switch = KillSwitch(store, self.narrator, clock, admins, self._run)
        self.planner = Planner(store, catalog, executors, allowlists, self.availabilities, clock)
        self.opening = Opening(
            store,
            self.narrator,
            self.planner,
            self.execution,
            self.kill_switch,
            clock,
            expiry,
            self._lock,
            self.spawn,
        )
        self.decisions = Decisions(
            store, self.narrator, policy, directory, clock, self._lock, self._run
        )
        self.expiry = Expiry(store, self.narrator, policy, clock, self._lock, expiry)
        self.recovery = Recovery(
            store=store,
            narrator=self.narrator,
            lock=self._lock,
            open_incident=self.opening.open,
            present=self.opening.present,
            replica=replica,
            ttl_s=replica_ttl_s,
            clock=clock,
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        # Locks live while a follow-up holds or awaits them, then go.
        self._locks: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run work after Slack's ack, keeping a reference so it is neither
        garbage-collected mid-flight nor forgotten at shutdown."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background work failed", exc_info=task.exception())

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _run(self, incident_id: int) -> None:
        """Carry out an approved plan in the background."""
        self.spawn(self.execution.run(incident_id))

    def _lock(self, incident_id: int) -> asyncio.Lock:
        """One follow-up at a time per incident, in arrival order, so an all-clear
        never overtakes the opening it should end."""
        lock = self._locks.get(incident_id)
        if lock is None:
            lock = self._locks[incident_id] = asyncio.Lock()
        return lock

    async def receive(self, alerts: Sequence[Alert], delivery_key: str) -> list[Intake]:
        """Store a delivery's alerts; their incidents follow after (engine/opening.py)."""
        return await self.opening.receive(alerts, delivery_key)

    async def answer_words(self, alert: Alert, delivery_key: str) -> Incident | None:
        """A person's own words: an incident only when they lead to a plan."""
        return await self.opening.answer_words(alert, delivery_key)

    async def request_heal(
        self, playbook_id: str, target: str, *, user: str, channel: str, key: str | None = None
    ) -> Incident | str:
        """A person asks for a playbook by name; a str is why not."""
        return await self.opening.request_heal(
            playbook_id, target, user=user, channel=channel, key=key
        )

    async def read(self, alert: Alert) -> Reading:
        """How GRACE reads an alert and what it would propose, touching nothing."""
        return await self.planner.read(alert)

    async def dry_run_request(self, playbook_id: str, target: str, *, user: str) -> DryRun | str:
        """What `/grace heal` would do, touching nothing and storing nothing."""
        return await self.planner.dry_run_request(playbook_id, target, user=user)

    async def dry_run(self, incident_id: int) -> DryRun | str:
        """What approving this incident's plan would do, touching nothing."""
        return await self.planner.dry_run(incident_id)

    async def decide(
        self,
        *,
        incident_id: int,
        plan_hash: str,
        user: str,
        decision: Decision,
        channel: str,
        reason: str | None = None,
    ) -> Pause | None:
        """One person's Approve or Reject (engine/decisions.py); refusals are answered
        privately, and the pause a counted approval waits behind is returned."""
        return await self.decisions.decide(
            incident_id=incident_id,
            plan_hash=plan_hash,
            user=user,
            decision=decision,
            channel=channel,
            reason=reason,
        )

    async def decide_promotion(self, proposal_id: int, user: str, *, accept: bool) -> Decided:
        """One click on a proposed promotion's Accept or Dismiss (engine/earned.py)."""
        return await self.earned.decide(proposal_id, user, accept=accept)

    async def tick(self) -> None:
        """Remind approvers once, then expire what nobody decided on in time; then end
        the runs of replicas that died (engine/recovery.py `take_over`). One replica
        at a time ticks (the scheduler's lease)."""
        try:
            await self.expiry.tick()
        finally:
            await self.recovery.take_over()

    async def pause(self, user: str, reason: str | None) -> str:
        """The kill switch, admins only (engine/kill_switch.py)."""
        return await self.kill_switch.pause(user, reason)

    async def resume(self, user: str) -> str:
        """Lift the kill switch; the approved plans that waited behind it run."""
        return await self.kill_switch.resume(user)

    async def recover(self) -> list[Incident]:
        """At start-up, every incident goes on from where it was left (engine/recovery.py);
        the runs a stop cut short, which end `interrupted`."""
        interrupted = await self.recovery.run()
        await self.earned.resume()
        return interrupted

    async def clear_target(self, user: str, name: str) -> str:
        """A person vouches for a held target, admins only (engine/clearing.py)."""
        return await clear_target(self.store, self.narrator, self.admins, user, name)

    async def readiness(self) -> Readiness:
        """What can act now. Executors answer from the planner's short-lived cache:
        a burst of `/grace status` must not probe Docker or a file system each time."""
        return Readiness(
            executors=await self.availabilities.survey(self.executors),
            open_breakers=await self.resilience.open_breakers(),
            holds=tuple(await self.store.holds()),
        )

    async def tell_user(self, channel: str, user: str, text: str) -> None:
        """An answer only `user` sees; a failure to send it is logged, never raised."""
        await self.narrator.tell_user(channel, user, text)

    def playbooks(self) -> Sequence[PlaybookSpec]:
        """The catalog's playbooks, at their catalog tier."""
        return self.catalog.playbooks

    def now(self) -> datetime:
        return self.clock.now()

    async def close_executors(self) -> None:
        """At shutdown, after the last run: executors holding connections let them go."""
        for executor in self.executors.values():
            if isinstance(executor, Closeable):
                await executor.aclose()
