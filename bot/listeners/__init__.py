"""One module per Slack surface, each with one `register(app, ...)`."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.home_publisher import HomePublisher
from bot.inbox import Inbox
from bot.listeners import actions, alerts, commands, errors, home, modals, shortcuts
from bot.metrics import Metrics
from engine.api import Healer
from engine.ports import Clock
from engine.storage_ports import ReportStore


def register_all(
    app: AsyncApp,
    healer: Healer,
    inbox: Inbox,
    alert_channels: frozenset[str],
    clock: Clock,
    metrics: Metrics,
    home_publisher: HomePublisher,
    reports: ReportStore,
    admins: frozenset[str],
) -> None:
    # Bolt tries listeners in this order and their matchers are disjoint: what a
    # person is waiting on (clicks, commands) is matched first, a few µs sooner each.
    actions.register(app, healer, inbox)
    commands.register(app, healer, inbox, reports)
    alerts.register(app, healer, inbox, alert_channels, clock, metrics)
    modals.register(app, inbox)
    shortcuts.register(app, healer, clock)
    home.register(app, healer, inbox, home_publisher, admins)
    errors.register(app, healer)
