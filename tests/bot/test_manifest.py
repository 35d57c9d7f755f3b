"""The manifest must describe the bot this code is: its URL, its events, its scopes."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.ack_first import AckFirst
from bot.ids import CallbackId
from bot.listeners.commands import HELP
from bot.metrics import Metrics
from bot.server import make_web_app
from bot.settings import Settings
from bot.webhooks import build_sources

ROOT = Path(__file__).parents[2]
MANIFEST = yaml.safe_load((ROOT / "manifest.yml").read_text())
SLACK_PATH = "/slack/events"


def _routes() -> set[tuple[str, str]]:
    settings = Settings()
    sources = build_sources(settings)
    app = make_web_app(None, None, None, settings, Metrics(), None, sources, AckFirst())  # type: ignore[arg-type]
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
        "files:write",  # files_upload_v2, for the weekly report's chart
    } <= scopes


def test_the_slash_command_is_grace():
    [command] = MANIFEST["features"]["slash_commands"]
    assert command["command"] == "/grace"


def test_the_heal_this_shortcut_is_the_one_grace_listens_for():
    [shortcut] = MANIFEST["features"]["shortcuts"]
    assert (shortcut["type"], shortcut["callback_id"]) == ("message", CallbackId.HEAL_THIS)


@pytest.mark.parametrize("path", sorted(ROOT.glob("manifest*.yml")), ids=lambda p: p.name)
def test_the_usage_hint_names_exactly_the_commands_help_lists(path):
    """Slack shows the hint as people type: it must offer nothing that answers "unknown"."""
    [command] = yaml.safe_load(path.read_text())["features"]["slash_commands"]
    hinted = [usage.strip() for usage in command["usage_hint"].split(" | ")]
    helped = re.findall(r"^• `/grace ([a-z]+)", HELP, flags=re.MULTILINE)
    assert [usage.split()[0] for usage in hinted] == list(dict.fromkeys(helped))


SOCKET = yaml.safe_load((ROOT / "manifest.socket.yml").read_text())


def _keys(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set(node) | {k for v in node.values() for k in _keys(v)}
    return {k for v in node for k in _keys(v)} if isinstance(node, list) else set()


def test_the_socket_mode_manifest_is_the_http_one_without_its_urls():
    """Both modes grant the same scopes, events, command and shortcut: a team that
    switches modes loses nothing; only where Slack delivers differs."""
    http = copy.deepcopy(MANIFEST)
    del http["settings"]["event_subscriptions"]["request_url"]
    del http["settings"]["interactivity"]["request_url"]
    for command in http["features"]["slash_commands"]:
        del command["url"]
    assert MANIFEST["settings"]["socket_mode_enabled"] is False
    http["settings"]["socket_mode_enabled"] = True
    assert http == SOCKET
    assert not {"url", "request_url"} & _keys(SOCKET)
