"""`grace run` starting and stopping against a Slack that refuses, fails or is not there.

Each case runs the real `grace run` (a subprocess, as an operator runs it) or the
real Grace in process, against DevSlack or a loopback server that answers as a
proxy in front of a failing Slack does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import preflight
from bot.app import build
from bot.cli import EXIT_CONFIG, EXIT_UNAVAILABLE
from bot.devslack import DevSlack
from bot.preflight import SlackUnreachable, check_bot_token
from bot.settings import ConfigError, Settings
from bot.signing import watch_signature_refusals
from bot.socket_mode import SocketModeLink

ROOT = Path(__file__).parents[2]
WAIT = re.compile(r"failure (\d+) in a row: .*; next attempt in ([\d.]+) s")


def closed_port() -> int:
    """A loopback port nothing listens on: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def grace_env(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "GRACE_"))}
    return {**env, "GRACE_PORT": "0", **variables}


async def grace_run(cwd: Path, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        cwd=cwd,
        env={**env, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def finished(proc: asyncio.subprocess.Process) -> tuple[int, str]:
    """Exit code and stderr of a `grace run` expected to stop by itself."""
    try:
        async with asyncio.timeout(60):
            _, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, err.decode()


@pytest.fixture
async def proxy() -> AsyncIterator[str]:
    """A proxy in front of a Slack that is down: under /html/ every call gets an HTML
    502 page, under /broken/ a 200 that says JSON and is not."""

    async def page(request: web.Request) -> web.Response:
        if request.path.startswith("/broken/"):
            return web.Response(text='{"ok": tr', content_type="application/json")
        html = "<html><body><h1>502 Bad Gateway</h1></body></html>"
        return web.Response(status=502, text=html, content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}"
    await runner.cleanup()


def settings_for(slack: DevSlack, tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "slack_bot_token": slack.token,
        "slack_signing_secret": slack.signing_secret,
        "slack_api_url": slack.api_url,
        "db": tmp_path / "grace.db",
        "port": 0,
        "snapshot_dir": tmp_path / "snapshots",
        "playbook_dirs": [],
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


async def test_a_refused_bot_token_is_named_before_anything_listens(devslack, tmp_path):
    port = closed_port()
    # No alert channel: auth.test is what finds the bad token, not a channel lookup.
    settings = settings_for(devslack, tmp_path, slack_bot_token="xoxb-revoked", port=port)
    grace = await build(settings)
    try:
        with pytest.raises(ConfigError) as refused:
            await grace.start()
    finally:
        await grace.stop()
    assert str(refused.value).startswith(
        "SLACK_BOT_TOKEN: Slack refused it (auth.test: invalid_auth)"
    )
    assert grace.runner is None
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
    assert [c.method for c in devslack.calls] == ["auth.test"]


async def test_grace_run_exits_2_on_a_refused_token(devslack, tmp_path):
    env = grace_env(
        SLACK_BOT_TOKEN="xoxb-revoked",
        SLACK_SIGNING_SECRET=devslack.signing_secret,
        SLACK_API_URL=devslack.api_url,
    )
    code, err = await finished(await grace_run(tmp_path, env))
    assert code == EXIT_CONFIG
    assert "grace: SLACK_BOT_TOKEN: Slack refused it (auth.test: invalid_auth)" in err
    assert "Traceback" not in err and "GRACE listening" not in err


async def test_grace_run_exits_2_when_slack_refuses_the_app_token(devslack, tmp_path):
    env = grace_env(
        SLACK_BOT_TOKEN=devslack.token,
        SLACK_APP_TOKEN="xapp-1-not-this-app",
        SLACK_API_URL=devslack.api_url,
    )
    code, err = await finished(await grace_run(tmp_path, env))
    assert code == EXIT_CONFIG
    assert "grace: SLACK_APP_TOKEN: Slack refused it (apps.connections.open: invalid_auth)" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        ("closed port", r"cannot connect to 127\.0\.0\.1:\d+ \(connection refused\)"),
        ("/html/", r"HTTP 502 with text/html, not Slack's JSON"),
        ("/broken/", r"HTTP 200 with application/json, not Slack's JSON"),
    ],
)
async def test_a_slack_that_cannot_be_asked_is_one_line_and_exit_75(where, reason, proxy, tmp_path):
    api = f"http://127.0.0.1:{closed_port()}/api/" if where == "closed port" else proxy + where
    env = grace_env(SLACK_BOT_TOKEN="xoxb-1", SLACK_SIGNING_SECRET="s", SLACK_API_URL=api)
    code, err = await finished(await grace_run(tmp_path, env))
    assert code == EXIT_UNAVAILABLE
    assert "Traceback" not in err
    [line] = [line for line in err.splitlines() if "auth.test" in line]
    assert re.fullmatch(
        rf"grace: Slack did not answer auth\.test at {re.escape(api)}: {reason}; "
        "check SLACK_API_URL and the network",
        line,
    ), line


async def test_a_slack_that_never_answers_is_given_up_on(monkeypatch):
    hung = asyncio.Event()

    async def silent(request: web.Request) -> web.Response:
        await hung.wait()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", silent)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    monkeypatch.setattr(preflight, "CALL_TIMEOUT", 0.2)
    host, port = runner.addresses[0][:2]
    try:
        client = AsyncWebClient(token="xoxb-1", base_url=f"http://{host}:{port}/api/")
        with pytest.raises(SlackUnreachable, match=r"auth\.test .*: no answer within 0\.2 s"):
            await check_bot_token(client)
    finally:
        hung.set()
        await runner.cleanup()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_socket_mode_retries_with_growing_waits_and_stops_on_a_signal(
    sig, devslack, tmp_path
):
    # Slack is up for the Web API but cannot open Socket Mode connections.
    devslack.fail_next("apps.connections.open", "internal_error", status=500, times=1000)
    env = grace_env(
        SLACK_BOT_TOKEN=devslack.token,
        SLACK_APP_TOKEN="xapp-1-grace",
        SLACK_API_URL=devslack.api_url,
        GRACE_ALERT_CHANNELS="C0ALERTS",
    )
    proc = await grace_run(tmp_path, env)
    assert proc.stderr is not None and proc.stdout is not None
    try:
        retries: list[tuple[int, float]] = []
        async with asyncio.timeout(30):
            while len(retries) < 3:
                line = (await proc.stderr.readline()).decode()
                assert line, "grace run ended before it retried"
                assert "Traceback" not in line
                if found := WAIT.search(line):
                    assert "WARNING bot.socket_mode" in line
                    assert "apps.connections.open: HTTP 500, internal_error" in line
                    retries.append((int(found[1]), float(found[2])))
        proc.send_signal(sig)
        async with asyncio.timeout(5):  # the "within a few seconds"
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0
    assert "Traceback" not in err.decode()
    assert out.decode().startswith("GRACE is running on http://127.0.0.1:")
    assert [n for n, _ in retries] == [1, 2, 3]
    waits = [wait for _, wait in retries]
    assert waits == sorted(waits) and waits[0] < waits[2], waits
    assert 0.5 <= waits[0] <= 1.0 and 2.0 <= waits[2] <= 4.0, waits


class SocketModeSlack:
    """apps.connections.open and its WebSocket, as Slack serves them to an app token.

    The first connection is closed at once, the second gets Slack's `disconnect`
    message, the third stays up: each drop must bring a reconnection.
    """

    def __init__(self) -> None:
        self.connections = 0
        self.changed = asyncio.Condition()
        self.runner: web.AppRunner | None = None
        self.base = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/apps.connections.open", self.open)
        app.router.add_get("/link", self.link)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        host, port = self.runner.addresses[0][:2]
        self.base = f"{host}:{port}"

    async def open(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer xapp-1-grace":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        return web.json_response({"ok": True, "url": f"ws://{self.base}/link"})

    async def link(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async with self.changed:
            self.connections += 1
            number = self.connections
            self.changed.notify_all()
        if number == 1:
            await ws.close()
            return ws
        await ws.send_json({"type": "hello", "num_connections": 1})
        if number == 2:
            await ws.send_json({"type": "disconnect", "reason": "refresh_requested"})
        async for _ in ws:  # until the app (or the test's end) closes it
            pass
        return ws

    async def reached(self, count: int) -> None:
        async with asyncio.timeout(15), self.changed:
            await self.changed.wait_for(lambda: self.connections >= count)


async def test_a_dropped_socket_is_reconnected_with_backoff(caplog):
    caplog.set_level(logging.INFO, logger="bot.socket_mode")
    slack = SocketModeSlack()
    await slack.start()
    client = AsyncWebClient(token="xoxb-1", base_url=f"http://{slack.base}/api/")
    link = SocketModeLink(AsyncApp(client=client, signing_secret="s"), "xapp-1-grace")
    running = asyncio.ensure_future(link.run())
    try:
        await slack.reached(3)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await link.close()
        assert slack.runner is not None
        await slack.runner.cleanup()
    drops = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(drops) == 2, drops
    # Connections that did not hold count as failures: the waits grow as for any failure.
    waits = [float(re.search(r"reconnecting in ([\d.]+) s", d)[1]) for d in drops]  # type: ignore[index]
    assert 0.5 <= waits[0] <= 1.0 and 1.0 <= waits[1] <= 2.0, waits
    assert not any(r.exc_info for r in caplog.records)


async def test_signature_refusals_are_one_warning_a_minute_without_the_body(
    devslack, tmp_path, caplog
):
    caplog.set_level(logging.INFO)
    grace = await build(settings_for(devslack, tmp_path))
    await grace.start()
    now = [1000.0]
    watch_signature_refusals(clock=lambda: now[0])  # the same watch, on a clock the test moves
    devslack.connect(f"{grace.url}/slack/events")
    body = '{"type": "event_callback", "event": {"text": "SECRET-PAYLOAD"}}'
    try:
        answers = []
        for advance in (0.0, 30.0, 31.0, 1.0):
            now[0] += advance
            delivery = await devslack.signed_post(body, "application/json", secret="not-it")
            answers.append(delivery.status)
    finally:
        await grace.stop()
    assert answers == [401, 401, 401, 401]
    warnings = [r for r in caplog.records if r.name == "bot.signing"]
    assert [r.levelno for r in warnings] == [logging.WARNING, logging.WARNING]
    first, second = (r.getMessage() for r in warnings)
    assert first.startswith("refused 1 request(s) to /slack/events") and second.startswith(
        "refused 2 request(s)"
    )
    assert "check SLACK_SIGNING_SECRET" in first
    assert not any("SECRET-PAYLOAD" in r.getMessage() for r in caplog.records)


async def test_devslack_opens_socket_mode_for_no_token_of_its_own(devslack):
    # An unknown token is invalid_auth (above); the bot token is the wrong kind, as in Slack.
    client = AsyncWebClient(base_url=devslack.api_url)
    with pytest.raises(SlackApiError) as refused:
        await client.apps_connections_open(app_token=devslack.token)
    assert refused.value.response["error"] == "not_allowed_token_type"
