"""`grace devslack`: the stand-in on its own, so that a team can run `grace run` with
its own config against it before installing the Slack app.

The workspace is made from that config: every channel it names (alert channels,
the default channel, routes) and every approver and admin exist, user groups with
one member each, so that GRACE starts, reads alerts and can be approved exactly as
it would in Slack. It delivers over Socket Mode unless told a request URL.
"""

from __future__ import annotations

import asyncio
import secrets

from bot.devslack.workspace import DevSlack
from bot.settings import ConfigError, Settings

DEFAULT_CHANNEL = "C0ALERTS"
PERSON = ("U0YOU", "you")  # someone who is no approver, to post alerts as


Workspace = tuple[dict[str, str], dict[str, str], dict[str, list[str]]]


def workspace_for(settings: Settings) -> Workspace:
    """Channels, users and user groups (by ID) for the IDs the config names."""
    routed = [r.channel for r in settings.routes]
    report = [settings.weekly_report.channel] if settings.weekly_report else []
    named = [*settings.alert_channels, settings.default_channel, *routed, *report]
    ids = list(dict.fromkeys(c for c in named if c)) or [DEFAULT_CHANNEL]
    channels = {c: "alerts" if i == 0 else c.lower() for i, c in enumerate(ids)}
    people = [*settings.approvers.tier2, *settings.approvers.tier3, *settings.admins]
    users, groups = dict([PERSON]), dict[str, list[str]]()
    for entry in dict.fromkeys(people):
        if entry.startswith("S"):  # a user group: Slack's IDs for them start with S
            member = "U" + entry[1:]
            groups[entry] = [member]
            users[member] = f"{entry.lower()}-member"
        else:
            users[entry] = entry.lower()
    return channels, users, groups


async def serve(
    settings: Settings,
    port: int,
    request_url: str | None,
    stop: asyncio.Event,
) -> int:
    """Serve until `stop`, having said what to put in GRACE's environment."""
    token, secret = f"xoxb-devslack-{secrets.token_hex(12)}", secrets.token_hex(16)
    channels, users, groups = workspace_for(settings)
    slack = DevSlack(
        token=token, signing_secret=secret, channels=channels, users=users, usergroups=groups
    )
    try:
        await slack.start(port=port)
    except OSError as exc:
        await slack.stop()
        raise ConfigError(f"--port {port}: {exc.strerror or exc}") from None
    try:
        app_token = None
        if request_url is None:
            app_token = slack.use_socket_mode()
        else:
            slack.connect(request_url)
        for line in _instructions(slack, settings, app_token):
            print(line, flush=True)  # at once, also into a pipe: someone waits to copy it
        await stop.wait()
    finally:
        await slack.stop()
    return 0


def _instructions(slack: DevSlack, settings: Settings, app_token: str | None) -> list[str]:
    page = slack.api_url.removesuffix("api/")
    channels = ", ".join(f"#{n} ({c})" for c, n in slack.channels.items())
    people = ", ".join(f"{n} ({u})" for u, n in slack.users.items() if u != slack.bot_user_id)
    mode = (
        "Deliveries go over Socket Mode."
        if app_token
        else f"Deliveries are POSTed to {slack.request_url}."
    )
    lines = [
        f"DevSlack, a local Slack stand-in, is on {page} (open it to read and act). {mode}",
        f"Channels: {channels}",
        f"People: {people}",
        "Put these in GRACE's environment, then start it with `grace run`:",
        f"export SLACK_API_URL={slack.api_url}",
        f"export SLACK_BOT_TOKEN={slack.token}",
        f"export SLACK_SIGNING_SECRET={slack.signing_secret}",
    ]
    if app_token:
        lines.append(f"export SLACK_APP_TOKEN={app_token}")
    if not settings.alert_channels:
        lines.append(f"export GRACE_ALERT_CHANNELS={next(iter(slack.channels))}")
    lines.append("Ctrl-C stops DevSlack.")
    return lines
