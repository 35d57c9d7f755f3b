"""Three `grace run` replicas on one PostgreSQL database, behind a load balancer.

Everything is real but Slack: a PostgreSQL server (tests/pg_server.py), three
`grace run` processes with their own names and ports, a round-robin HTTP
balancer in front of them (what a team puts before several replicas in HTTP
mode), real SQLite targets, and the Slack stand-in in this process. It proves:

- 1,000 concurrent duplicate deliveries and clicks, spread over the replicas
  (every alert delivered again by Slack's retries, every card's Approve
  clicked by several people at once), give one incident, one card and one
  execution each;
- a replica killed with SIGKILL mid-heal is found dead by its heartbeat, and
  another ends its incident `interrupted`, tells it in the incident's thread
  once and holds the target; nothing is run again;
- the weekly report of each period is posted once;
- no Slack message is posted twice, and the audit chain verifies.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web

from bot.demo import CHANNEL, bloat_wal
from bot.devslack import Delivery, Message
from bot.ids import ActionId
from engine.clock import SystemClock
from storage.factory import open_store
from tests.crash_harness import (
    APPROVERS,
    TIER1_ALERT,
    GraceProcess,
    Slack,
    alertmanager_body,
    assert_one_card_each,
    environment,
    free_port,
    make_slack,
)
from tests.grace_db import PgGraceDb
from tests.pg_server import PgServer
from tests.sqlite_processes import reader_in_other_process

T = TypeVar("T")

REPLICAS = 3
ALERTS = 20
COPIES = 25
"""Each alert is delivered this many times and each card clicked this many times:
20 x 25 x 2 = 1,000 requests."""
TTL_S = 3.0
"""The replicas' liveness TTL: a killed replica is found dead within it."""
SETTLE_S = 60.0


class Balancer:
    """Round-robin over the replicas, skipping one that does not answer, as a load
    balancer with health checks does: Slack's requests reach any replica."""

    def __init__(self, backends: list[str]) -> None:
        self.backends = backends
        self._turn = itertools.cycle(range(len(backends)))
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""
        self.served: Counter[int] = Counter()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._forward)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
        }
        for _ in self.backends:
            index = next(self._turn)
            try:
                async with self._session.request(
                    request.method,
                    self.backends[index] + request.path_qs,
                    data=body,
                    headers=headers,
                ) as resp:
                    answer = await resp.read()
                    self.served[index] += 1
                    return web.Response(
                        status=resp.status,
                        body=answer,
                        headers={"Content-Type": resp.headers.get("Content-Type", "text/plain")},
                    )
            except (aiohttp.ClientError, OSError):
                continue  # that replica is down: the next one
        return web.Response(status=502, text="no replica answered")


@dataclass(frozen=True)
class ReplicasDb(PgGraceDb):
    """What the suite asks of GRACE's database beyond rows and values."""

    def runs(self) -> dict[int, int]:
        """Incident -> how many times its plan started executing."""
        return dict(
            self.rows(
                "SELECT incident_id, count(*) FROM audit_log"
                " WHERE action = 'incident.executing' GROUP BY incident_id"
            )
        )

    def unsettled(self) -> dict[str, int]:
        """What GRACE has still to do: deliveries to handle, incidents on their way,
        Slack writes to send, cards to post; all zero when it is done."""
        [row] = self.rows(
            "SELECT (SELECT count(*) FROM inbox WHERE handled_at IS NULL) AS inbox,"
            " (SELECT count(*) FROM incidents WHERE state IN"
            "  ('open', 'diagnosed', 'approved', 'executing', 'verifying')) AS on_the_way,"
            " (SELECT count(*) FROM outbox WHERE state IN ('pending', 'sending')) AS outbox,"
            " (SELECT count(*) FROM incidents WHERE card_ts IS NULL) AS no_card"
        )
        return dict(zip(row.keys(), row, strict=True))

    def settled(self) -> bool:
        return not any(self.unsettled().values())


def replicas_environment(workdir: Path, slack: Slack, app_dir: Path, dsn: str) -> dict[str, str]:
    """The crash suites' settings and environment (tests/crash_harness.py), on `dsn`,
    with what replicas add: short ticks and TTL, and a weekly report a minute."""
    env = environment(workdir, slack, app_dir)
    config = Path(env["GRACE_CONFIG"])
    settings = json.loads(config.read_text())
    settings.update(
        tick_seconds=0.5,
        replica_ttl_s=TTL_S,
        # A period a minute, so the suite sees reports fall due while it runs.
        weekly_report={"channel": CHANNEL, "cron": "* * * * *", "tz": "UTC"},
    )
    config.write_text(json.dumps(settings))
    return {**env, "GRACE_DB": dsn}


@dataclass
class Cluster:
    slack: Slack
    balancer: Balancer
    replicas: list[GraceProcess]
    db: ReplicasDb
    dsn: str
    app_dir: Path

    def replica_named(self, name: str) -> GraceProcess:
        [found] = [r for r in self.replicas if r.env["GRACE_REPLICA"] == name]
        return found

    async def settled(self, within_s: float = SETTLE_S) -> None:
        try:
            await until(self.db.settled, within_s)
        except TimeoutError:
            raise AssertionError(f"not settled: {self.db.unsettled()}\n{_logs(self)}") from None


async def until(check: Callable[[], T], within_s: float) -> T:
    """`check`'s first truthy answer: other processes' database, polled, is all there
    is to watch."""
    async with asyncio.timeout(within_s):
        while not (found := await asyncio.to_thread(check)):  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    return found


@pytest.fixture
async def cluster(tmp_path: Path, pg_server: PgServer) -> AsyncIterator[Cluster]:
    app_dir = tmp_path / "app"
    owners = [bloat_wal(app_dir / f"app{k}.db", rows=300) for k in range(ALERTS + 1)]
    dsn = pg_server.fresh_database()
    slack = make_slack()
    await slack.start()
    shared = replicas_environment(tmp_path, slack, app_dir, dsn)
    replicas = []
    for k in range(REPLICAS):
        workdir = tmp_path / f"replica{k}"
        workdir.mkdir()
        env = {**shared, "GRACE_PORT": str(free_port()), "GRACE_REPLICA": f"replica-{k}"}
        replicas.append(GraceProcess(env, workdir))
    balancer = Balancer([r.url for r in replicas])
    await balancer.start()
    slack.connect(f"{balancer.url}/slack/events")
    try:
        # Started together: they migrate the empty database once, under its lock.
        await asyncio.gather(*(r.start(within_s=60) for r in replicas))
        yield Cluster(slack, balancer, replicas, ReplicasDb(dsn), dsn, app_dir)
    finally:
        for replica in replicas:
            await replica.close()
        await balancer.stop()
        await slack.stop()
        for owner in owners:
            owner.close()


def _logs(cluster: Cluster) -> str:
    return "\n".join(f"--- {r.env['GRACE_REPLICA']}\n{r.log_tail(30)}" for r in cluster.replicas)


async def _concurrently(sends: Iterator[Any]) -> list[Delivery]:
    return list(await asyncio.gather(*sends))


async def test_three_replicas_share_the_work_once(cluster: Cluster) -> None:
    slack, db = cluster.slack, cluster.db
    rng = random.Random(20)

    # -- 500 deliveries: each alert and 24 of Slack's retries of it, at once ----------
    with slack.held() as built:
        for k in range(ALERTS):
            await slack.post_message_as(
                CHANNEL,
                f"[FIRING:1] SQLiteWALTooLarge db_path={cluster.app_dir / f'app{k}.db'}"
                " severity=warning",
                bot_id="B0ALERTMANAGER",
                username="Alertmanager",
            )
    deliveries = [(d, n) for d in built for n in range(COPIES)]
    rng.shuffle(deliveries)
    answered = await _concurrently(slack.send(d, n) for d, n in deliveries)
    assert Counter(a.status for a in answered) == {200: ALERTS * COPIES}, _logs(cluster)
    await cluster.settled()
    incidents = db.rows("SELECT id, state FROM incidents ORDER BY id")
    assert len(incidents) == ALERTS and {s for _, s in incidents} == {"awaiting_approval"}
    assert db.value("SELECT count(*) FROM alerts") == ALERTS
    assert_one_card_each(db, slack)  # type: ignore[arg-type]

    # -- 500 clicks: every card's Approve, by several people at once ------------------
    cards = slack.grace_cards()
    with slack.held() as clicks:
        for card in cards:
            for _ in range(COPIES):
                await slack.click(CHANNEL, card.ts, ActionId.APPROVE, user=rng.choice(APPROVERS))
    rng.shuffle(clicks)
    answered = await _concurrently(slack.send(c) for c in clicks)
    assert Counter(a.status for a in answered) == {200: ALERTS * COPIES}, _logs(cluster)
    await cluster.settled()
    assert db.runs() == {incident: 1 for incident, _ in incidents}, "each plan ran once"
    assert db.value("SELECT count(*) FROM actions") == ALERTS, "each step ran once"
    assert {s for (s,) in db.rows("SELECT state FROM incidents")} == {"resolved"}
    assert_one_card_each(db, slack)  # type: ignore[arg-type]
    assert min(cluster.balancer.served.values()) > 0 and len(cluster.balancer.served) == REPLICAS

    # -- a replica killed with SIGKILL mid-heal ----------------------------------------
    held = cluster.app_dir / f"app{ALERTS}.db"
    with reader_in_other_process(held, "events"):  # the checkpoint waits: the heal hangs
        status, answer = await cluster.replicas[0].webhook(
            alertmanager_body(held, "mid-heal", TIER1_ALERT)
        )
        assert status == 200, answer
        [(incident, runner)] = await until(
            lambda: db.rows(
                "SELECT id, run_by FROM incidents WHERE state = 'executing' AND run_by IS NOT NULL"
            ),
            30,
        )
        victim = cluster.replica_named(runner)
        await victim.kill()
        await until(
            lambda: db.value("SELECT state FROM incidents WHERE id = ?", incident) == "interrupted",
            TTL_S * 5,
        )
    await cluster.settled()
    assert db.runs()[incident] == 1, "the interrupted plan is never run again"
    holds = db.rows(
        "SELECT incident_id FROM target_holds WHERE target_name = ? AND cleared_at IS NULL",
        str(held),
    )
    assert [tuple(hold) for hold in holds] == [(incident,)], "the target is held"
    card_ts = db.value("SELECT card_ts FROM incidents WHERE id = ?", incident)
    told = [m for m in slack.thread(CHANNEL, card_ts) if "Interrupted" in m.text]
    assert len(told) == 1, [m.text for m in slack.thread(CHANNEL, card_ts)]

    # -- the weekly report: each period's once -----------------------------------------
    await until(lambda: db.rows("SELECT message_id FROM weekly_reports"), 75)  # one a minute
    await cluster.settled()
    reports = dict(db.rows("SELECT message_id, period_end FROM weekly_reports"))
    posted = Counter(
        slack.outbox_id(m) for m in slack.messages(CHANNEL) if slack.outbox_id(m) in reports
    )
    assert posted == dict.fromkeys(reports, 1), "each period's report once"

    # -- no message twice; the audit chain holds ----------------------------------------
    everything = list(_all_messages(slack))
    outbox_ids = Counter(slack.outbox_id(m) for m in everything if slack.outbox_id(m) is not None)
    assert [i for i, n in outbox_ids.items() if n > 1] == [], "a message was posted twice"
    store = await open_store(cluster.dsn, SystemClock())
    try:
        report = await store.verify_audit()
    finally:
        await store.close()
    assert report.ok, report.problem


def _all_messages(slack: Slack) -> Iterator[Message]:
    for top in slack.messages(CHANNEL):
        yield top
        yield from slack.thread(CHANNEL, top.ts)
