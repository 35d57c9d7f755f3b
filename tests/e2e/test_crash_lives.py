"""The crash suite: `grace run` killed with SIGKILL at seeded random points, life after life.

One database, one settings file, six real SQLite targets with bloated WALs,
and the Slack stand-in in this process. Each life starts `grace run`, waits
until it has nothing left to do, checks what it kept, sends it traffic
(alerts posted by integrations and by people, webhook alerts, Approve clicks,
Slack's retries) and kills it: right after a 200, in a burst, after an
Approve click, mid-heal, while the outbox is sending, during start-up, or at
a random moment. After every restart:

- no alert lost: every delivery GRACE answered 200 is stored (a person's
  words that lead to no plan, and a click: handled), no approval left
  waiting, and every incident has exactly one card in Slack, the one GRACE
  knows as its card;
- no plan ran twice, and none ran again after an interruption;
- every interrupted incident is told so in its thread, once;
- GRACE's database and every target pass `PRAGMA integrity_check`, and the
  audit chain verifies (and `grace audit verify` at the end).
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bot.demo import APPROVER, CHANNEL, bloat_wal
from bot.devslack import Message
from bot.ids import ActionId
from engine.models import Approval, Decision, IncidentState
from tests.crash_harness import (
    ADMIN,
    TIER1_ALERT,
    GraceProcess,
    Senders,
    Sent,
    assert_one_card_each,
    environment,
    make_slack,
)
from tests.e2e.test_durable_deliveries import dies_after_answering, restart
from tests.grace_db import GraceDb, integrity
from tests.sqlite_processes import reader_in_other_process

SEED = 16
TARGETS = 6
KILLS = ("event", "webhook", "burst", "approve", "mid_heal", "sending", "starting", "random")
SCHEDULE = [*KILLS * 4, "burst", "random"]  # 34 lives, each way of dying at least 4 times
SETTLE_S = 30.0
LIVE = "NOT IN ('auto_resolved', 'cleared', 'expired', 'rejected', 'resolved', 'rolled_back')"


@dataclass
class Suite(Senders):
    """The senders, the targets with their applications, and the kills so far."""

    owners: dict[Path, sqlite3.Connection] = field(default_factory=dict)
    """Each target, and the application's connection that keeps its WAL."""
    kills: Counter[str] = field(default_factory=Counter)

    @property
    def targets(self) -> list[Path]:
        return list(self.owners)

    # -- traffic ------------------------------------------------------------------

    def traffic(self, alerts: int, clicks: int) -> list[asyncio.Future[Sent]]:
        """Alerts of every kind on random targets, and Approve clicks on waiting cards."""
        sending: list[Awaitable[Sent]] = []
        for _ in range(alerts):
            target, tier1 = self.rng.choice(self.targets), self.rng.random() < 0.3
            kind = self.rng.choice(("posted", "said", "webhook"))
            if kind == "said":
                sending.append(self.said(target))
            else:
                sending.append((self.posted if kind == "posted" else self.webhook)(target, tier1))
        cards = self.awaiting_cards()
        sending += [self.approve(card) for card in self.rng.sample(cards, min(clicks, len(cards)))]
        return [asyncio.ensure_future(s) for s in sending]

    def awaiting_cards(self) -> list[Message]:
        waiting = (
            "SELECT card_ts FROM incidents"
            " WHERE state = 'awaiting_approval' AND card_ts IS NOT NULL"
        )
        cards = [self.slack.message(CHANNEL, ts) for (ts,) in self.db.rows(waiting)]
        return [card for card in cards if _has_button(card, ActionId.APPROVE)]

    def free_for_tier1(self) -> list[Path]:
        """Targets no live incident of the tier-1 alert is about: its next alert heals."""
        about = (
            "SELECT json_extract(a.labels, '$.db_path') FROM alerts a JOIN incidents i"
            f" ON i.id = a.incident_id WHERE i.alert_name = ? AND i.state {LIVE}"
        )
        busy = {name for (name,) in self.db.rows(about, TIER1_ALERT)}
        return [t for t in self.targets if str(t) not in busy]

    # -- lives ----------------------------------------------------------------------------

    async def kill(self, way: str) -> None:
        await self.grace.kill()
        self.kills[way] += 1

    async def settled(self) -> None:
        await self.slack.wait_for(self.db.settled, timeout=SETTLE_S)

    async def restart(self) -> None:
        """A new life: started, settled, checked; what a kill left held, cleared."""
        await self.grace.start()
        self.slack.connect(f"{self.grace.url}/slack/events")
        await self.settled()
        await check(self)
        await self.clear_holds()

    async def clear_holds(self) -> None:
        """An admin vouches for what a kill left held, so later lives can heal it again."""
        held = self.db.rows(
            "SELECT target_name FROM target_holds WHERE cleared_at IS NULL UNION"
            " SELECT json_extract(plan, '$.target.name') FROM incidents WHERE state = 'interrupted'"
        )
        for (name,) in held:
            typed = await self.slack.slash_command(f"clear {name}", user=ADMIN, channel=CHANNEL)
            assert typed.status == 200, typed.body
        still = (
            "SELECT (SELECT count(*) FROM incidents WHERE state = 'interrupted')"
            " + (SELECT count(*) FROM target_holds WHERE cleared_at IS NULL)"
        )
        await self.slack.wait_for(lambda: self.db.value(still) == 0, SETTLE_S)
        await self.settled()

    async def waiting_card(self) -> Message | None:
        """A card awaiting approval, opening one when there is none."""
        for target in self.rng.sample(self.targets, len(self.targets)):
            cards = self.awaiting_cards()
            if cards:
                return self.rng.choice(cards)
            await self.webhook(target)
            await self.settled()
        return None

    def refill(self, target: Path) -> None:
        """The application writes again: the target's WAL (an earlier heal may have
        truncated it) holds frames a checkpoint must wait for a reader to let go of."""
        with self.owners[target] as conn:
            conn.executemany("INSERT INTO events (body) VALUES (?)", [("y" * 180,)] * 500)


def _has_button(message: Message, action_id: str) -> bool:
    return any(
        isinstance(element, dict) and element.get("action_id") == action_id
        for block in message.blocks
        for element in [*block.get("elements", []), block.get("accessory")]
    )


# -- the ways GRACE dies -------------------------------------------------------------------


async def after_event(s: Suite) -> None:
    """Right after GRACE answered 200 to an alert posted in Slack."""
    target = s.rng.choice(s.targets)
    await (s.said(target) if s.rng.random() < 0.4 else s.posted(target, s.rng.random() < 0.3))
    await s.kill("event")


async def after_webhook(s: Suite) -> None:
    await s.webhook(s.rng.choice(s.targets), tier1=s.rng.random() < 0.4)
    await s.kill("webhook")


async def in_burst(s: Suite) -> None:
    """Alerts and clicks at once, killed when a random number of them were answered."""
    burst = s.traffic(alerts=s.rng.randint(6, 16), clicks=2)
    after, answered = s.rng.randint(1, len(burst)), 0
    for next_done in asyncio.as_completed(burst):
        answered += (await next_done).answered
        if answered >= after:
            break
    await s.kill("burst")
    await asyncio.gather(*burst)  # the rest were answered before the kill, or not at all


async def after_approve(s: Suite) -> None:
    """Right after the click's 200, or once the decision is made and the heal spawned."""
    card = await s.waiting_card()
    if card is None:
        return await in_burst(s)
    click = await s.approve(card)
    if s.rng.random() < 0.5:
        await s.slack.wait_for(lambda: s.db.handled(click.key), SETTLE_S)
    await s.kill("approve")


async def mid_heal(s: Suite) -> None:
    """While a tier-1 heal waits on a reader another process holds: once it is
    executing, or once its snapshot is taken."""
    free = s.free_for_tier1()
    if not free:
        return await at_random(s)
    target = s.rng.choice(free)
    stage = s.rng.choice(("executing", "snapshot"))
    s.refill(target)
    with reader_in_other_process(target, "events"):
        [incident] = s.db.marked((await s.webhook(target, tier1=True)).key)
        reached = {
            "snapshot": "SELECT count(*) FROM snapshots WHERE incident_id = ?",
            "executing": "SELECT state = 'executing' FROM incidents WHERE id = ?",
        }[stage]
        await s.slack.wait_for(lambda: s.db.value(reached, incident), SETTLE_S)
        await s.kill("mid_heal")


async def while_sending(s: Suite) -> None:
    """Slack carried a post out and GRACE is killed before its answer comes back."""
    free = s.free_for_tier1()
    if not free:
        return await at_random(s)
    cards_only = s.rng.random() < 0.5
    s.slack.lose_answer(
        "chat.postMessage", hang=5.0, match=(lambda args: "blocks" in args) if cards_only else None
    )
    await s.webhook(s.rng.choice(free), tier1=True)  # a new incident: a card and its story
    await s.slack.wait_for(lambda: s.slack.answers_to_lose() == 0, SETTLE_S)
    await s.kill("sending")


async def while_starting(s: Suite) -> None:
    """A burst is cut short, then the next GRACE is killed once Slack answered its
    start-up checks: while it recovers, resumes deliveries, sends its first writes."""
    await in_burst(s)
    asked = len(s.slack.calls)
    await s.grace.spawn()
    await s.slack.wait_for(
        lambda: any(c.method == "conversations.info" for c in s.slack.calls[asked:]), SETTLE_S
    )
    await asyncio.sleep(s.rng.uniform(0.0, 0.05))  # the kill's moment, not a wait for anything
    await s.kill("starting")


async def at_random(s: Suite) -> None:
    """Alerts and clicks in flight, killed a random moment after they start."""
    running = s.traffic(alerts=s.rng.randint(2, 8), clicks=2)
    await asyncio.sleep(s.rng.uniform(0.0, 0.4))  # the kill's moment, not a wait for anything
    await s.kill("random")
    await asyncio.gather(*running)


KILL: dict[str, Callable[[Suite], Awaitable[None]]] = {
    "event": after_event,
    "webhook": after_webhook,
    "burst": in_burst,
    "approve": after_approve,
    "mid_heal": mid_heal,
    "sending": while_sending,
    "starting": while_starting,
    "random": at_random,
}


# -- what holds after every restart -----------------------------------------------------


async def check(s: Suite) -> None:
    lost = [f"{x.what} {x.key}" for x in s.sent if x.answered and not s.stored(x)]
    assert lost == [], f"answered 200, not stored: {lost}"
    assert s.db.approved_but_waiting() == [], "approved, and still waiting"
    assert_one_card_each(s.db, s.slack)
    runs = {incident: n for incident, n in s.db.runs().items() if n > 1}
    assert runs == {} and s.db.steps_twice() == [], f"plans run twice: {runs}"
    assert s.db.run_after_interruption() == [], "run again after an interruption"
    told = interruptions_told(s)
    assert set(told.values()) <= {1}, f"interruptions told other than once: {told}"
    assert integrity(s.db.path) == "ok"
    for target in s.targets:
        assert integrity(target) == "ok", target
    report = await s.db.audit()
    assert report.ok, f"audit chain broken at {report.first_bad_seq}: {report.problem}"


def interruptions_told(s: Suite) -> dict[int, int]:
    """Every incident a kill interrupted: how many lines of its thread say so."""
    told: dict[int, int] = {}
    for incident, card_ts in s.db.interrupted():
        card = s.slack.message(CHANNEL, card_ts)
        story = s.slack.thread(CHANNEL, card.thread_ts or card.ts)
        told[incident] = sum("*Interrupted:*" in m.text for m in story)
    return told


# -- the suites ----------------------------------------------------------------------------


async def test_kill_9_at_random_points_loses_no_alert_and_runs_no_plan_twice(tmp_path):
    rng = random.Random(SEED)
    slack = make_slack()
    await slack.start()
    app = tmp_path / "app"
    targets = [app / f"app{n}.db" for n in range(TARGETS)]
    owners = {target: bloat_wal(target, rows=2000) for target in targets}
    env = environment(tmp_path, slack, app)
    grace = GraceProcess(env, tmp_path)
    s = Suite(rng, slack, grace, GraceDb(Path(env["GRACE_DB"])), owners=owners)
    started = time.monotonic()
    try:
        for way in rng.sample(SCHEDULE, len(SCHEDULE)):
            await s.restart()
            await s.resend()
            await KILL[way](s)
        await s.restart()
        await s.resend()
        await s.settled()
        await check(s)
        assert [x.key for x in s.sent if not x.answered] == [], "Slack gave up on these"
    finally:
        await grace.close()
        await slack.stop()
        for owner in owners.values():
            owner.close()
    verify = [sys.executable, "-m", "bot", "audit", "verify"]
    verified = await asyncio.to_thread(
        subprocess.run, verify, env={**os.environ, **env}, capture_output=True, text=True
    )
    assert verified.returncode == 0 and "audit chain ok" in verified.stdout, verified.stdout
    report(s, time.monotonic() - started)


def report(s: Suite, seconds: float) -> None:
    """The figures of bench/RESULTS.md's reliability table (`pytest -s` shows them)."""
    alerts = [x for x in s.sent if x.what != "click"]
    lookups = sum(c.method.startswith("conversations.") for c in s.slack.calls)
    print(
        f"\ncrash suite: {s.grace.lives} lives, {sum(s.kills.values())} kills "
        f"{dict(sorted(s.kills.items()))}; alerts sent {len(alerts)}, stored "
        f"{sum(s.stored(x) for x in alerts)}, lost 0; clicks {len(s.sent) - len(alerts)}; "
        f"unanswered (sent again) {sum(x.unanswered for x in s.sent)}; incidents "
        f"{s.db.value('SELECT count(*) FROM incidents')}, executions {sum(s.db.runs().values())}"
        f", interrupted {len(interruptions_told(s))}; writes looked up in Slack {lookups}; "
        f"plans run twice 0, duplicate cards 0; {seconds:.0f} s"
    )


async def test_a_click_cut_short_after_its_approval_is_carried_out_at_the_next_start(
    make_harness,
):
    """Killed between recording a click's approval and moving the incident, GRACE is
    handed the click again by its inbox at the next start: the approval it had
    recorded is carried out (not refused as a second decision) and runs once."""
    h = await make_harness()
    await h.alert()
    card = await h.card()
    await h.grace.healer.drain()
    [incident] = await h.incidents()
    dies_after_answering(h)
    assert (await h.click(card)).status == 200
    # How far the click's handling got before the kill: its approval, nothing after it.
    await h.grace.store.add_approval(
        Approval(
            incident_id=incident.id,
            user=APPROVER,
            plan_hash=incident.plan.hash,
            decision=Decision.APPROVE,
            at=datetime.now(UTC),
        )
    )

    await restart(h)

    assert (await h.finished(card)).state is IncidentState.RESOLVED
    assert sum("Approved by" in t for t in h.thread(card)) == 1
    assert h.slack.ephemerals(APPROVER) == [], "nobody is told they decided twice"
