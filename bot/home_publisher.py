"""App Home kept current: each viewer's Home, published again when what it shows changes.

Slack keeps one Home view a person and shows the last one published. GRACE
publishes it when the person opens it (app_home_opened), when GRACE answers
a click they made on it, and when something it shows changes: the notifier
calls `changed()` whenever a card is posted or updated or a notice announced.
Changes are coalesced: a burst of them (one approval moves a card several
times) becomes one publish a viewer after DEBOUNCE_S, built from one read of
the store shared by every viewer. A view equal to the one last published is
not sent again.

views.publish is Tier 4 (100+ a minute per app and workspace, Slack's docs):
a token bucket whose burst plus a minute's refill is 100 keeps GRACE within
it in every minute, a 429 is waited out (Retry-After), and the person who
just opened their Home or clicked on it goes first, then the others, the
latest to open first.

Who opened the Home is stored (storage/home.py), so a restart republishes
the Homes opened within VIEWER_WINDOW (anything may have changed meanwhile);
older ones are published when next opened. Executors' availability can take
seconds to learn: a Home shows the last answer, asked again in the background
when older than READINESS_TTL, never waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.models.views import View
from slack_sdk.web.async_client import AsyncWebClient

from bot.home import OPEN_SHOWN, HomeFacts, Notice, Reader, home_view
from bot.ids import slack_id
from bot.metrics import Metrics
from engine.api import ApprovalPolicy, PromotionProposed, Readiness, StoryEvent
from engine.models import Incident
from engine.ports import Clock, Directory, Notifier
from engine.records import Pending, Viewer
from engine.storage_ports import HomeStore

log = logging.getLogger(__name__)

RATE, BURST = 1.5, 10
"""Publishes a second, and the burst: 10 + 60 x 1.5 = 100 in any minute, Tier 4's floor."""
DEBOUNCE_S = 0.25
VIEWER_WINDOW = timedelta(days=1)
READINESS_TTL_S = 60.0
PENDING_LIMIT = 500  # approvals waiting, read for everyone; each Home shows its reader's
MAX_BACKOFF_S = 60.0
PUBLISH = "views.publish"

Ask = Callable[[], Awaitable[Readiness]]


def week_of(now: datetime) -> tuple[datetime, datetime]:
    """The ISO week holding `now`, in UTC: Monday 00:00 to the next Monday 00:00."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = day - timedelta(days=day.weekday())
    return start, start + timedelta(days=7)


class HomePublisher:
    """Keeps every recent viewer's Home current; `start` it with how to learn the
    executors' availability (the healer's), `stop` it before the store closes."""

    def __init__(
        self,
        store: HomeStore,
        client: AsyncWebClient,
        clock: Clock,
        metrics: Metrics,
        *,
        policy: ApprovalPolicy,
        directory: Directory,
        admins: frozenset[str],
        rate: float = RATE,
        burst: int = BURST,
        debounce: float = DEBOUNCE_S,
    ) -> None:
        self._store, self._client, self._clock, self._metrics = store, client, clock, metrics
        self._policy, self._directory, self._admins = policy, directory, admins
        self._rate, self._burst, self._debounce = rate, burst, debounce
        self._viewers: dict[str, Viewer] = {}
        self._first: dict[str, None] = {}
        """Served before the rest, in order: just opened, or just answered."""
        self._due: set[str] = set()
        self._stale = True
        self._wake = asyncio.Event()
        self._published: dict[str, str] = {}  # user -> digest of the view last published
        self._tokens, self._at = float(burst), time.monotonic()
        self._ask: Ask | None = None
        self._readiness: Readiness | None = None
        self._asked_at: float | None = None
        self._survey: asyncio.Task[None] | None = None
        self._team_domain: str | None = None
        self._task: asyncio.Task[None] | None = None

    # -- what the rest of GRACE calls ------------------------------------------

    def changed(self) -> None:
        """Something a Home shows changed: every recent viewer's is due, coalesced."""
        self._stale = True
        since = self._clock.now() - VIEWER_WINDOW
        self._due.update(u for u, v in self._viewers.items() if v.opened_at >= since)
        self._wake.set()

    async def opened(self, user: str, channel: str) -> None:
        """`user` opened their Home: stored (the caller answers Slack after), then theirs first."""
        await self._store.home_opened(user, channel)
        old = self._viewers.get(user)
        now = self._clock.now()
        self._viewers[user] = (
            replace(old, channel=channel, opened_at=now) if old else Viewer(user, channel, now)
        )
        self._serve_first(user)

    async def tell(self, user: str, text: str) -> None:
        """Answer `user` on their Home, at its top, until they next open it."""
        if not await self._store.home_notice(user, text):
            log.warning("no Home to answer %s on: they never opened it", user)
            return
        viewer = self._viewers.get(user)
        if viewer is not None:
            self._viewers[user] = replace(viewer, notice=text, notice_at=self._clock.now())
        self._serve_first(user)

    def home_channel(self, user: str) -> str | None:
        viewer = self._viewers.get(user)
        return viewer.channel if viewer else None

    def answering(self, notifier: Notifier) -> Notifier:
        """`notifier`, with answers told in someone's App Home channel shown on their Home."""
        return HomeAnswers(notifier, self)

    async def start(self, readiness: Ask) -> None:
        """Who opened their Home is read first: the inbox may hand over a click on a
        Home at start-up, and its answer must find the Home. The recent viewers' Homes
        are then published again (anything may have changed while GRACE was down)."""
        self._ask = readiness
        for viewer in await self._store.home_viewers():
            self._viewers.setdefault(viewer.user, viewer)
        self.changed()
        self._task = asyncio.create_task(self._run(), name="grace-home")

    async def stop(self) -> None:
        for task in (self._task, self._survey):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # -- the loop ----------------------------------------------------------------

    def _serve_first(self, user: str) -> None:
        self._first.pop(user, None)
        self._first[user] = None
        self._wake.set()

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self._wake.wait()
                await self._clock.sleep(self._debounce)  # the rest of a burst joins this round
                self._wake.clear()
                await self._round()
                failures = 0
            except Exception:
                failures += 1
                log.exception("publishing App Home failed; trying again")
                self._wake.set()
                await self._clock.sleep(min(2.0**failures, MAX_BACKOFF_S))

    def _next(self) -> str | None:
        if self._first:
            user = next(iter(self._first))
            del self._first[user]
        elif self._due:
            user = max(self._due, key=lambda u: self._viewers[u].opened_at)
        else:
            return None
        self._due.discard(user)
        return user

    async def _round(self) -> None:
        facts: HomeFacts | None = None
        while (user := self._next()) is not None:
            if facts is None or self._stale:
                self._stale = False  # before the read: a change during it makes it stale
                facts = await self._facts()
            view = await self._view(user, facts)
            if view is None:
                continue
            digest = hashlib.sha256(json.dumps(view.to_dict(), sort_keys=True).encode())
            if self._published.get(user) == digest.hexdigest():
                continue
            await self._take_token()
            if await self._publish(user, view):
                self._published[user] = digest.hexdigest()

    async def _publish(self, user: str, view: View) -> bool:
        """True when done with this view: Slack took it, or refused it for good (it is
        sent again once it changes). A 429 or no answer puts the viewer back in front."""
        try:
            await self._client.views_publish(user_id=user, view=view)
        except SlackApiError as exc:
            if exc.response.status_code == 429:
                self._metrics.slack_request(PUBLISH, "ratelimited")
                self._first = {user: None, **self._first}
                await self._clock.sleep(_retry_after(exc))
                return False
            self._metrics.slack_request(PUBLISH, "refused")
            error = exc.response.get("error", "unknown error")
            off = error == "not_enabled"
            hint = " (turn the app's Home tab on: the manifest's app_home)" if off else ""
            log.error("Slack refused %s's Home: %s%s", user, error, hint)
            return True
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._metrics.slack_request(PUBLISH, "error")
            log.warning("views.publish for %s got no answer (%s); trying again", user, exc)
            self._first = {user: None, **self._first}
            await self._clock.sleep(1.0)
            return False
        self._metrics.slack_request(PUBLISH, "ok")
        return True

    async def _take_token(self) -> None:
        while True:
            now = time.monotonic()
            self._tokens = min(float(self._burst), self._tokens + (now - self._at) * self._rate)
            self._at = now
            if self._tokens >= 1:
                self._tokens -= 1
                return
            await self._clock.sleep((1 - self._tokens) / self._rate)

    # -- what a Home shows ----------------------------------------------------------

    async def _facts(self) -> HomeFacts:
        rows = await self._store.home_rows(
            week_of(self._clock.now()), pending_limit=PENDING_LIMIT, open_limit=OPEN_SHOWN
        )
        self._refresh_readiness()
        return HomeFacts(rows, self._readiness, await self._domain())

    async def _view(self, user: str, facts: HomeFacts) -> View | None:
        viewer = self._viewers.get(user)
        if viewer is None:
            return None
        waiting = tuple([p for p in facts.rows.pending.items if await self._may_approve(user, p)])
        notice = None
        if viewer.notice and viewer.notice_at and viewer.notice_at > viewer.opened_at:
            notice = Notice(viewer.notice, viewer.notice_at)
        reader = Reader(user, viewer.channel, user in self._admins, waiting, notice)
        return home_view(facts, reader)

    async def _may_approve(self, user: str, pending: Pending) -> bool:
        """Whether Approve would count for `user` now: the engine's own rule decides."""
        incident = pending.incident
        plan = incident.plan
        if plan is None or plan.tier < 2 or user in pending.approved_by:
            return False
        refusal = await self._policy.refusal(plan, user, incident.alert.reporter, self._directory)
        return refusal is None

    def _refresh_readiness(self) -> None:
        if self._ask is None or (self._survey is not None and not self._survey.done()):
            return
        now = time.monotonic()
        if self._asked_at is not None and now - self._asked_at < READINESS_TTL_S:
            return
        self._asked_at = now
        self._survey = asyncio.create_task(self._learn(self._ask), name="grace-home-readiness")

    async def _learn(self, ask: Ask) -> None:
        try:
            readiness = await ask()
        except Exception:
            log.exception("could not learn which executors can act, for App Home")
            return
        if readiness != self._readiness:
            self._readiness = readiness
            self.changed()

    async def _domain(self) -> str:
        """The workspace's domain, for links to cards (auth.test, asked once)."""
        if self._team_domain is None:
            try:
                url = str((await self._client.auth_test()).get("url") or "")
            except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
                log.warning("auth.test failed (%s): App Home links no cards for now", exc)
                return ""
            host = urlparse(url).hostname or ""
            self._team_domain = slack_id("team domain", host.split(".")[0]) or ""
        return self._team_domain


def _retry_after(exc: SlackApiError) -> float:
    try:
        return max(float(exc.response.headers.get("Retry-After", 1)), 1.0)
    except (TypeError, ValueError):
        return 1.0


class HomeAnswers:
    """The engine's Notifier, whose private answers to a click on App Home are shown
    on the Home: the engine answers in the click's channel, and a Home click's
    channel is the person's App Home channel (the view carries it, bot/ids.py)."""

    def __init__(self, inner: Notifier, home: HomePublisher) -> None:
        self._inner, self._home = inner, home

    async def tell_user(self, channel: str, user: str, text: str) -> None:
        if self._home.home_channel(user) == channel:
            await self._home.tell(user, text)
        else:
            await self._inner.tell_user(channel, user, text)

    async def post_card(self, incident: Incident) -> None:
        await self._inner.post_card(incident)

    async def post_card_once(self, incident: Incident) -> bool:
        return await self._inner.post_card_once(incident)

    async def update_card(self, incident: Incident) -> None:
        await self._inner.update_card(incident)

    async def tell_thread(self, incident: Incident, event: StoryEvent) -> None:
        await self._inner.tell_thread(incident, event)

    async def tell_once(self, incident: Incident, event: StoryEvent, key: str) -> None:
        await self._inner.tell_once(incident, event, key)

    async def announce(self, event: StoryEvent) -> None:
        await self._inner.announce(event)

    async def propose_promotion(self, event: PromotionProposed) -> None:
        await self._inner.propose_promotion(event)
