"""`grace report --now [--channel C]`: the report of the last seven days, posted at once.

On demand, not on schedule: no period is claimed (the scheduled report still
comes when it is due), and it is posted straight to Slack rather than through
the outbox, so the command says whether it worked before it exits.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError
from slack_sdk.web.async_client import AsyncWebClient

from bot import uploads
from bot.settings import ConfigError, Settings
from bot.weekly_report import WeeklyReporter
from engine.api import PlaybookSpec, ReportSchedule, last_days
from engine.ports import Clock
from engine.storage_ports import WeeklyStore

DAYS = 7


def on_demand_schedule(settings: Settings, channel: str | None) -> ReportSchedule:
    """The configured schedule's time zone, posted to `channel` or its own channel."""
    configured = settings.weekly_report
    channel = channel or (configured.channel if configured else settings.fallback_channel)
    if channel is None:
        raise ConfigError(
            "--channel is needed: neither weekly_report.channel nor GRACE_DEFAULT_CHANNEL is set"
        )
    try:
        return ReportSchedule(channel=channel, tz=configured.tz if configured else "UTC")
    except ValidationError as exc:
        raise ConfigError(f"--channel: {exc.errors()[0]['msg']}") from None


async def post_now(
    settings: Settings,
    schedule: ReportSchedule,
    store: WeeklyStore,
    playbooks: Sequence[PlaybookSpec],
    clock: Clock,
) -> str:
    """Post the report; returns the posted message's ts."""
    assert settings.slack_bot_token is not None
    reporter = WeeklyReporter(store, schedule, playbooks, clock, wake=lambda: None)
    period = last_days(clock.now(), DAYS, schedule.zone)
    message, chart = await reporter.compose(period, scheduled=False)
    client = AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url
    )
    posted = await client.chat_postMessage(channel=schedule.channel, **message)
    await uploads.upload(client, schedule.channel, str(posted["ts"]), chart)
    return str(posted["ts"])
