"""The one place where GRACE is wired together: settings in, a running bot out."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.ack_first import AckFirst
from bot.directory import SlackDirectory
from bot.heartbeat import Heartbeat
from bot.home_publisher import HomePublisher
from bot.inbox import Inbox
from bot.listeners import promotion as promotion_listeners
from bot.listeners import register_all
from bot.listeners import rollup as rollup_listeners
from bot.metrics import Metrics
from bot.notifier import OutboxNotifier
from bot.outbox import OutboxWorker
from bot.preflight import StoreUnreachable, check_alert_channels, check_bot_token
from bot.scheduler import Chore, Lease, Scheduler
from bot.server import make_web_app
from bot.settings import ConfigError, Settings
from bot.signing import watch_signature_refusals
from bot.webhooks import build_sources
from bot.weekly_report import WeeklyReporter
from engine.api import (
    Catalog,
    Context,
    Healer,
    Resilience,
    SystemClock,
    WebhookSource,
    executor_plugins,
    load_catalog,
)
from engine.models import IncidentState
from engine.ports import Clock, Executor, Quarantining, Store
from engine.records import StoreInfo
from engine.storage_ports import GraceStore, InboxStore
from storage.factory import DatabaseMissing, DatabaseUnavailable, open_store, survey_store

log = logging.getLogger(__name__)


def make_executors(settings: Settings, clock: Clock) -> dict[str, Executor]:
    """Every executor, configured or not: one that cannot act says why, and
    its playbooks still load, so `grace check` validates them."""
    context = Context(clock=clock, snapshots=settings.snapshots)
    return {name: plugin.build(settings, context) for name, plugin in executor_plugins().items()}


def chores(executors: dict[str, Executor], store: Store) -> list[Chore]:
    """Housekeeping of this host (its quarantine) the scheduler runs now and then,
    in every replica."""

    async def purge_quarantine() -> None:
        # What a held incident moved away stays until a person has looked.
        keep = {hold.incident_id for hold in await store.holds()}
        for executor in executors.values():
            if isinstance(executor, Quarantining):
                await executor.purge_quarantine(keep)

    return [purge_quarantine]


def _notice_channels(settings: Settings) -> list[str]:
    """Every alert channel, and the channel webhook alerts go to when no route matches."""
    fallback = [settings.fallback_channel] if settings.fallback_channel else []
    routed = [route.channel for route in settings.routes]
    return [*settings.alert_channels, *fallback, *routed]


INBOX_KEPT = timedelta(days=2)
"""How long a handled delivery's key is kept: Slack retries within minutes."""


def forget_deliveries(store: InboxStore, clock: Clock) -> Chore:
    async def forget() -> None:
        await store.forget_deliveries(clock.now() - INBOX_KEPT)

    return forget


def take_over_deliveries(inbox: Inbox, clock: Clock, ttl_s: float) -> Chore:
    """Each tick, what a replica that died accepted and never handled is handled here."""

    async def tick() -> int:
        return await inbox.take_over(clock.now() - timedelta(seconds=ttl_s))

    return tick


def load_playbooks(settings: Settings, executors: dict[str, Executor]) -> Catalog:
    """The catalog, checked against the config: a playbook may narrow its tier's
    approvers, never name someone the config did not make an approver."""
    catalog = load_catalog(settings.playbook_dirs, {name: e.spec for name, e in executors.items()})
    policy = settings.approval_policy
    for playbook in catalog.playbooks:
        if playbook.approval is None:
            continue
        problems = policy.override_problems(playbook.id, playbook.tier, playbook.approval.approvers)
        if problems:
            where = catalog.sources[f"playbooks:{playbook.id}"]
            raise ConfigError(f"{where}: {'; '.join(problems)}")
    return catalog


async def open_grace_store(
    settings: Settings,
    clock: Clock,
    *,
    on_state: Callable[[IncidentState], None] | None = None,
    create: bool = True,
) -> GraceStore:
    """The one place a store is opened, from GRACE_DB: `grace run` and the CLI's
    reads alike. A database GRACE cannot open is a ConfigError that says why."""
    try:
        return await open_store(
            settings.db, clock, on_state=on_state, create=create, replica=settings.replica
        )
    except DatabaseMissing as exc:
        raise ConfigError(str(exc)) from None
    except DatabaseUnavailable as exc:
        raise StoreUnreachable(str(exc)) from None


async def survey_grace_store(settings: Settings) -> StoreInfo:
    """`grace check`'s look at GRACE_DB: which store, its server, its schema version."""
    try:
        return await survey_store(settings.db)
    except DatabaseUnavailable as exc:
        raise StoreUnreachable(str(exc)) from None


@dataclass
class Grace:
    settings: Settings
    store: GraceStore
    healer: Healer
    bolt: AsyncApp
    web_app: web.Application
    outbox: OutboxWorker
    metrics: Metrics
    scheduler: Scheduler
    sources: dict[str, WebhookSource]
    inbox: Inbox
    home: HomePublisher
    heartbeat: Heartbeat
    reporter: WeeklyReporter | None = None
    runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        assert self.runner is not None, "start() first"
        host, port = self.runner.addresses[0][:2]
        return f"http://{host}:{port}"

    async def start(self) -> None:
        """Ask Slack first: a refused token, a missing channel or an unreachable
        Slack stops GRACE here, before it recovers anything or listens."""
        await check_bot_token(self.bolt.client)
        await check_alert_channels(self.bolt.client, self.settings.alert_channels)
        if self.settings.weekly_report is not None:
            channel = [self.settings.weekly_report.channel]
            await check_alert_channels(self.bolt.client, channel, "weekly_report.channel")
        watch_signature_refusals()
        # Alive before anything runs: other replicas leave the runs of a live one alone.
        await self.heartbeat.start()
        await self.healer.recover()
        self.outbox.start()
        await self.home.start(self.healer.readiness)
        # Deliveries Slack was answered for but GRACE did not finish before it stopped.
        await self.inbox.resume()
        self.scheduler.start()
        self.runner = web.AppRunner(self.web_app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.settings.host, self.settings.port)
        await site.start()
        log.info("GRACE listening on %s", self.url)

    async def stop(self) -> None:
        """Stop taking requests, finish work already started (a heal is never cut
        half-way), give Slack a moment to hear about it, then close."""
        if self.runner is not None:
            await self.runner.cleanup()
        await self.scheduler.stop()
        await self.healer.drain()
        # Only once the heals it ran are finished: until then they are a live replica's.
        await self.heartbeat.stop()
        await self.home.stop()
        await self.healer.close_executors()
        for source in self.sources.values():
            await source.aclose()
        await self.outbox.stop()
        await self.store.close()


async def build(settings: Settings, clock: Clock | None = None) -> Grace:
    settings.require("slack_bot_token", why="for GRACE to talk to Slack")
    if settings.slack_app_token is None:
        settings.require("slack_signing_secret", why="in HTTP mode (without SLACK_APP_TOKEN)")
    clock = clock or SystemClock()
    executors = make_executors(settings, clock)
    catalog = load_playbooks(settings, executors)
    if not settings.alert_channels:
        log.warning("GRACE_ALERT_CHANNELS is empty: no Slack message will be read as an alert")
    metrics = Metrics()
    store = await open_grace_store(settings, clock, on_state=metrics.incident_entered)
    try:
        return _assemble(settings, clock, store, executors, catalog, metrics)
    except BaseException:
        await store.close()  # an open store's thread would keep the process alive
        raise


def _assemble(
    settings: Settings,
    clock: Clock,
    store: GraceStore,
    executors: dict[str, Executor],
    catalog: Catalog,
    metrics: Metrics,
) -> Grace:
    assert settings.slack_bot_token is not None
    client = AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url
    )
    outbox = OutboxWorker(
        store,
        client,
        metrics,
        clock,
        rate=settings.slack_rate,
        burst=settings.slack_burst,
        policy=settings.approval_policy,
        replica=settings.replica,  # its claims name it: its next start takes them back
    )
    directory = SlackDirectory(client)
    # App Home: republished when the notifier says something it shows changed; the
    # engine's private answers to a click on someone's Home are shown on that Home.
    home = HomePublisher(
        store,
        client,
        clock,
        metrics,
        policy=settings.approval_policy,
        directory=directory,
        admins=frozenset(settings.admins),
    )
    notifier = OutboxNotifier(store, outbox, _notice_channels(settings), on_change=home.changed)
    healer = Healer(
        store=store,
        notifier=home.answering(notifier),
        executors=executors,
        catalog=catalog,
        policy=settings.approval_policy,
        directory=directory,
        allowlists=settings.targets,
        clock=clock,
        admins=frozenset(settings.admins),
        expiry=settings.approval_expiry.by_tier(),
        # Breakers in the store: a target one replica left alone, every replica leaves alone.
        resilience=Resilience(settings.resilience, board=store),
        autonomy=settings.autonomy,
        replica=settings.replica,
        replica_ttl_s=settings.replica_ttl_s,
    )
    secret = settings.slack_signing_secret
    bolt = AsyncApp(
        client=client,
        signing_secret=secret.get_secret_value() if secret else None,
        # A listener's work is done before Slack is answered: the listeners commit
        # what Slack delivered to the inbox and leave the rest for after the answer.
        process_before_response=True,
        # bot/server.py checks every request's signature on its raw bytes before Bolt
        # sees it (401 otherwise); Bolt checking the same bytes again only costs time.
        request_verification_enabled=False,
    )
    acks = AckFirst(spawn=healer.spawn)
    inbox = Inbox(store, healer.spawn, acks)
    admins = frozenset(settings.admins)
    channels = frozenset(settings.alert_channels)
    register_all(bolt, healer, inbox, channels, clock, metrics, home, store, admins)
    rollup_listeners.register(bolt, store, notifier)
    promotion_listeners.register(bolt, healer, inbox, notifier, admins)
    sources = build_sources(settings)
    web_app = make_web_app(bolt, store, healer, settings, metrics, clock, sources, acks)
    reporter = None
    if settings.weekly_report is not None:
        reporter = WeeklyReporter(
            store, settings.weekly_report, catalog.playbooks, clock, outbox.wake
        )
    # Ticks and database chores run in one replica at a time (the lease's holder);
    # this host's quarantine is purged by every replica.
    scheduler = Scheduler(
        healer,
        settings.tick_seconds,
        [forget_deliveries(store, clock)],
        ticks=[
            take_over_deliveries(inbox, clock, settings.replica_ttl_s),
            *([reporter.tick] if reporter is not None else []),
        ],
        lease=Lease(store, settings.replica),
        lease_s=settings.replica_ttl_s,
        local_chores=chores(executors, store),
    )
    heartbeat = Heartbeat(store, settings.replica, settings.replica_ttl_s, clock)
    return Grace(
        settings,
        store,
        healer,
        bolt,
        web_app,
        outbox,
        metrics,
        scheduler,
        sources,
        inbox,
        home,
        heartbeat,
        reporter,
    )


__all__ = ["ConfigError", "Grace", "build", "open_grace_store"]
