"""`grace run` as a real process beside a Slack stand-in in the test process.

The crash and duplicates suites (tests/e2e/test_crash_lives.py,
tests/e2e/test_duplicate_deliveries.py) drive a GRACE that is a process of its
own: started on one settings file and a database that outlive it, known to be
ready once /healthz answers, killed with SIGKILL. Slack is DevSlack in the
test process, so what GRACE posted is there to count after every death;
GRACE's database is read from outside (tests/grace_db.py). `Senders` sends
what Slack, Alertmanager and people send, and sends again what got no answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import secrets
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bot.demo import CHANNEL, MONITOR
from bot.devslack import Delivery, DevSlack, Message
from bot.ids import ActionId
from tests.grace_db import GraceDb

APPROVERS = ("U0ONCALL", "U0SRE1", "U0SRE2", "U0SRE3")
ADMIN = "U0LEAD"
WEBHOOK_TOKEN = "crash-suite-webhook-token"
NO_ANSWER = 0
"""A Delivery's status when GRACE died before it answered: Slack will send it again."""
HELD = -1
"""A Delivery's status when it was built but not sent (see `Slack.held`)."""
SLACK_RETRIES = 3  # Slack sends a delivery it got no answer to three more times

# A tier-1 problem of the suites' own, so an alert of it heals at once.
TIER1_ALERT = "SQLiteCheckpointNow"
TIER1_CATALOG = f"""
patterns:
  - id: sqlite-checkpoint-now
    problem: sqlite_checkpoint_now
    alertname: [{TIER1_ALERT}]
    target: {{db_path: {{labels: [db_path], value: '(/.+)'}}}}
    explanation: The WAL of {{db_path}} is to be checkpointed at once.
playbooks:
  - id: sqlite-checkpoint-now
    title: Checkpoint the WAL at once
    treats: [sqlite_checkpoint_now]
    tier: 1
    target: {{executor: sqlite, from_label: db_path}}
    steps: [{{action: wal_checkpoint, params: {{mode: TRUNCATE}}, timeout: 120}}]
    checks: [{{check: integrity_ok}}]
"""


class Slack(DevSlack):
    """DevSlack as a GRACE that may die sees it: a delivery GRACE never answered
    comes back with status NO_ANSWER (for Slack to send again) instead of raising,
    and deliveries can be built first and sent later, all at once."""

    _holding: list[Delivery] | None = None

    async def signed_post(
        self,
        body: str,
        content_type: str,
        *,
        timestamp: int | None = None,
        secret: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Delivery:
        sent = {"Content-Type": content_type}
        if self._holding is not None:
            self._holding.append(Delivery(HELD, "", {}, body, sent))
            return self._holding[-1]
        try:
            return await super().signed_post(
                body, content_type, timestamp=timestamp, secret=secret, headers=headers
            )
        except (aiohttp.ClientError, OSError) as exc:  # GRACE is dead, or died mid-request
            return Delivery(NO_ANSWER, f"{type(exc).__name__}: {exc}", {}, body, sent)

    @contextlib.contextmanager
    def held(self) -> Iterator[list[Delivery]]:
        """Deliveries made inside are built (signed later, when sent), not sent."""
        self._holding = []
        try:
            yield self._holding
        finally:
            self._holding = None

    async def send(self, delivery: Delivery, retry_num: int = 0) -> Delivery:
        """A held delivery, or Slack's retry (`retry_num` > 0) of any delivery."""
        if retry_num:
            return await self.redeliver(delivery, retry_num)
        content_type = delivery.request_headers["Content-Type"]
        return await self.signed_post(delivery.request_body, content_type)

    def grace_cards(self, channel: str = CHANNEL) -> list[Message]:
        """Every message with blocks GRACE posted: at the top of the channel or in a thread."""
        everywhere = list(self.messages(channel))
        for top in self.messages(channel):
            everywhere += self.thread(channel, top.ts)
        return [m for m in everywhere if m.bot_id == self.bot_id and m.blocks]

    def outbox_id(self, message: Message) -> int | None:
        """The outbox row a message was posted for, from its metadata (bot/outbox.py)."""
        payload = (self._metadata.get((message.channel, message.ts)) or {}).get("event_payload")
        return int(payload["outbox_id"]) if payload and "outbox_id" in payload else None

    def answers_to_lose(self) -> int:
        """How many calls `lose_answer` still waits for."""
        return len(self._lost)


def make_slack() -> Slack:
    return Slack(
        token=f"xoxb-crash-{secrets.token_hex(4)}",
        signing_secret=secrets.token_hex(16),
        channels={CHANNEL: "alerts"},
        users={MONITOR: "monitoring", ADMIN: "lead", **{a: a.lower() for a in APPROVERS}},
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(workdir: Path, slack: DevSlack, app_dir: Path) -> dict[str, str]:
    """One settings file and environment for every life: the same port and database."""
    catalog = workdir / "playbooks"
    catalog.mkdir(exist_ok=True)
    (catalog / "now.yml").write_text(TIER1_CATALOG)
    config = workdir / "grace.yml"
    settings = {
        "targets": {"sqlite": [str(app_dir / "*.db")]},
        "playbook_dirs": [str(catalog)],
        "admins": [ADMIN],
        "approvers": {"tier2": list(APPROVERS)},
        "snapshot_dir": str(workdir / "snapshots"),
        # Slack's pace would make every life wait on the outbox; the stand-in has no limit.
        "slack_rate": 500.0,
        "slack_burst": 50,
        # Nor the sqlite executor's pace (5 calls a second): twenty heals would take 24 s.
        "resilience": {"sqlite": {"rate_per_s": 500, "concurrency": 8}},
    }
    config.write_text(json.dumps(settings))
    return {
        "SLACK_BOT_TOKEN": slack.token,
        "SLACK_SIGNING_SECRET": slack.signing_secret,
        "SLACK_API_URL": slack.api_url,
        "GRACE_DB": str(workdir / "grace.db"),
        "GRACE_PORT": str(free_port()),
        "GRACE_ALERT_CHANNELS": CHANNEL,
        "GRACE_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
        "GRACE_CONFIG": str(config),
    }


@dataclass
class GraceProcess:
    """`grace run` (HTTP mode), one process a life, all on the same settings and database."""

    env: dict[str, str]
    workdir: Path
    proc: asyncio.subprocess.Process | None = None
    session: aiohttp.ClientSession | None = None
    lives: int = 0
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.workdir / "grace-run.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['GRACE_PORT']}"

    async def start(self, within_s: float = 30.0) -> None:
        """Start a new life; return once /healthz answers (recovery is done by then)."""
        await self.spawn()
        async with asyncio.timeout(within_s):
            # Another process: polling its /healthz is all there is to watch.
            while not await self._healthy():  # noqa: ASYNC110
                await asyncio.sleep(0.02)

    async def spawn(self) -> None:
        """Start a new life without waiting for it."""
        assert self.proc is None or self.proc.returncode is not None, "the last life is alive"
        self.lives += 1
        self.session = self.session or aiohttp.ClientSession()
        with self.log.open("ab") as log:
            log.write(f"--- life {self.lives}\n".encode())
            log.flush()
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "run",
                cwd=self.workdir,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=log,
            )

    async def _healthy(self) -> bool:
        assert self.proc is not None and self.session is not None
        if self.proc.returncode is not None:
            raise AssertionError(f"grace run exited {self.proc.returncode}:\n{self.log_tail()}")
        try:
            async with self.session.get(f"{self.url}/healthz") as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def kill(self) -> None:
        """SIGKILL: no clean-up of any kind runs in GRACE."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.kill()
        code = await self.proc.wait()
        assert code == -9, f"grace run ended {code} before it was killed:\n{self.log_tail()}"

    async def close(self) -> None:
        if self.alive():
            await self.kill()
        if self.session is not None:
            await self.session.close()

    async def webhook(self, body: str, source: str = "alertmanager") -> tuple[int, dict[str, Any]]:
        """POST an alert as its sender would; (NO_ANSWER, {}) when GRACE died first."""
        assert self.session is not None
        headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}", "Content-Type": "application/json"}
        try:
            async with self.session.post(
                f"{self.url}/alerts/{source}", data=body, headers=headers
            ) as resp:
                return resp.status, await resp.json()
        except (aiohttp.ClientError, OSError):
            return NO_ANSWER, {}

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def assert_one_card_each(db: GraceDb, slack: Slack) -> None:
    """Every incident has exactly one card in Slack (at the top, or in the thread of a
    person's words), the one GRACE knows as its card; cards are told apart by the
    outbox row their metadata names, and every card must name one of GRACE's."""
    card_rows = dict(db.rows("SELECT id, incident_id FROM outbox WHERE kind = 'post_card'"))
    cards: dict[int, list[str]] = {}
    for card in slack.grace_cards():
        outbox_id = slack.outbox_id(card)
        assert outbox_id in card_rows, f"card {card.ts} names no card row of GRACE's"
        cards.setdefault(card_rows[outbox_id], []).append(card.ts)
    twice = {incident: ts for incident, ts in cards.items() if len(ts) > 1}
    assert twice == {}, f"cards posted twice: {twice}"
    for incident, card_ts in db.rows("SELECT id, card_ts FROM incidents"):
        assert cards.get(incident) == [card_ts], f"incident {incident}: card {card_ts} not shown"


def alertmanager_body(db: Path, marker: str, alertname: str = "SQLiteWALTooLarge") -> str:
    """One firing alert as Alertmanager sends it, grouped by database; `marker`
    (an annotation) finds the alert in GRACE's database afterwards."""
    labels = {"alertname": alertname, "db_path": str(db), "severity": "warning"}
    alert = {
        "status": "firing",
        "labels": labels,
        "annotations": {"summary": marker},
        "startsAt": "2026-11-24T03:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.local/graph",
        "fingerprint": secrets.token_hex(8),
    }
    return json.dumps(
        {
            "version": "4",
            "groupKey": f'{{}}:{{alertname="{alertname}", db_path="{db}"}}',
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "grace",
            "groupLabels": {"alertname": alertname, "db_path": str(db)},
            "commonLabels": labels,
            "commonAnnotations": alert["annotations"],
            "externalURL": "http://alertmanager.local",
            "alerts": [alert],
        }
    )


@dataclass
class Sent:
    """One delivery as its sender keeps it: sent again until GRACE answers 200."""

    what: str  # integration | person | webhook | click
    key: str  # how GRACE's database finds it: source_key, summary marker, inbox key
    delivery: Delivery | None = None  # Slack's request; a webhook keeps its body
    body: str = ""
    answered: bool = False
    tries: int = 0
    unanswered: int = 0


@dataclass
class Senders:
    """Everything the suite sends GRACE, as Slack, Alertmanager and people send it,
    and what they send again: Slack retries a delivery it got no answer to (three
    times), Alertmanager a notification. A sent alert is found in GRACE's database
    afterwards by its Slack message or the marker in its summary."""

    rng: random.Random
    slack: Slack
    grace: GraceProcess
    db: GraceDb
    sent: list[Sent] = field(default_factory=list)
    markers: itertools.count[int] = field(default_factory=itertools.count)

    async def posted(self, target: Path, tier1: bool = False) -> Sent:
        """An alert an integration posts in the alert channel."""
        name = TIER1_ALERT if tier1 else "SQLiteWALTooLarge"
        delivery = await self.slack.post_message_as(
            CHANNEL,
            f"[FIRING:1] {name} db_path={target} severity=warning",
            bot_id="B0ALERTMANAGER",
            username="Alertmanager",
        )
        return self._delivered(Sent("integration", _source_key(delivery)), delivery)

    async def said(self, target: Path) -> Sent:
        """A person's own words: a plan when the target is free, else nothing stored."""
        words = f"the WAL of {target} is huge again"
        delivery = await self.slack.post_message_as(CHANNEL, words, user=MONITOR)
        return self._delivered(Sent("person", _source_key(delivery)), delivery)

    async def webhook(self, target: Path, tier1: bool = False) -> Sent:
        marker = f"crash suite alert {next(self.markers)}"
        body = alertmanager_body(target, marker, TIER1_ALERT if tier1 else "SQLiteWALTooLarge")
        return await self._post(Sent("webhook", marker, body=body))

    async def approve(self, card: Message) -> Sent:
        user = self.rng.choice(APPROVERS)
        delivery = await self.slack.click(CHANNEL, card.ts, ActionId.APPROVE, user=user)
        action_ts = delivery.payload()["actions"][0]["action_ts"]
        return self._delivered(Sent("click", f"action:{action_ts}:{user}"), delivery)

    def _delivered(self, sent: Sent, delivery: Delivery) -> Sent:
        assert delivery.status in (200, NO_ANSWER), (delivery.status, delivery.body)
        sent.delivery = delivery
        return self._tried(sent, delivery.status)

    async def _post(self, sent: Sent) -> Sent:
        status, answer = await self.grace.webhook(sent.body)
        assert status in (200, NO_ANSWER), (status, answer)
        return self._tried(sent, status)

    def _tried(self, sent: Sent, status: int) -> Sent:
        sent.tries += 1
        sent.unanswered += status == NO_ANSWER
        sent.answered = sent.answered or status == 200
        if sent.tries == 1:
            self.sent.append(sent)
        return sent

    async def resend(self) -> None:
        """What senders do in the next life: Slack and Alertmanager send again what got
        no answer; Slack also retries a couple of answered deliveries (answers it found slow)."""
        due = [s for s in self.sent if not s.answered and s.tries <= SLACK_RETRIES]
        answered = [s for s in self.sent if s.answered and s.delivery is not None]
        due += self.rng.sample(answered, min(2, len(answered)))
        await asyncio.gather(*(self._again(s) for s in due))

    async def _again(self, sent: Sent) -> Sent:
        if sent.delivery is None:
            return await self._post(sent)
        return self._delivered(sent, await self.slack.send(sent.delivery, sent.tries))

    def stored(self, sent: Sent) -> bool:
        """A webhook's or an integration's alert is in the alerts table; a person's words
        are too, or were handled (they named a held target); a click was handled."""
        if sent.what == "webhook":
            return bool(self.db.marked(sent.key))
        if sent.what in ("integration", "person") and self.db.has_alert("slack", sent.key):
            return True
        assert sent.delivery is not None
        if sent.what == "person":
            return self.db.handled(f"event:{sent.delivery.payload()['event_id']}")
        return sent.what == "click" and self.db.handled(sent.key)


def _source_key(delivery: Delivery) -> str:
    return f"{CHANNEL}/{delivery.payload()['event']['ts']}"
