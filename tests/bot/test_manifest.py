"""The manifest must describe the bot this code is: its URL, its events, its scopes."""

from __future__ import annotations

from pathlib import Path

import yaml

from bot.ids import CallbackId
from bot.metrics import Metrics
from bot.server import make_web_app
from bot.settings import Settings
from bot.webhooks import build_sources

MANIFEST = yaml.safe_load((Path(__file__).parents[2] / "manifest.yml").read_text())
SLACK_PATH = "/slack/events"


def _routes() -> set[tuple[str, str]]:
    settings = Settings()
    sources = build_sources(settings)
    app = make_web_app(None, None, None, settings, Metrics(), None, sources)  # type: ignore[arg-type]
    return {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource}


def test_every_slack_url_is_the_route_bolt_serves():
    urls = [
        MANIFEST["settings"]["event_subscriptions"]["request_url"],
        MANIFEST["settings"]["interactivity"]["request_url"],
        *(c["url"] for c in MANIFEST["features"]["slash_commands"]),
    ]
    assert all(u.startswith("https://") and u.endswith(SLACK_PATH) for u in urls)
    assert ("POST", SLACK_PATH) in _routes()


def test_the_bot_reads_alert_channels_and_can_answer():
    assert MANIFEST["features"]["bot_user"]["display_name"] == "grace"
    assert MANIFEST["settings"]["interactivity"]["is_enabled"] is True
    assert {"message.channels", "message.groups"} <= set(
        MANIFEST["settings"]["event_subscriptions"]["bot_events"]
    )
    scopes = set(MANIFEST["oauth_config"]["scopes"]["bot"])
    assert {
        "channels:history",
        "groups:history",
        "chat:write",
        "commands",
        "channels:read",
    } <= scopes


def test_the_slash_command_is_grace():
    [command] = MANIFEST["features"]["slash_commands"]
    assert command["command"] == "/grace"


def test_the_heal_this_shortcut_is_the_one_grace_listens_for():
    [shortcut] = MANIFEST["features"]["shortcuts"]
    assert (shortcut["type"], shortcut["callback_id"]) == ("message", CallbackId.HEAL_THIS)
