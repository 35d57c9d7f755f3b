"""Socket Mode: GRACE's one WebSocket to Slack, kept up with backoff, dropped on stop.

slack_sdk's client retries a failed connection for ever by itself, every ten
seconds, with a full traceback each time, and nothing outside it can stop the
loop but closing the client. Here the SDK's client does one attempt at a time
(`_Client.connect`) and never reconnects on its own; `SocketModeLink` decides
when to try: at once after a connection that held, after a growing, jittered
wait after a failure, and never again once cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from slack_bolt.adapter.socket_mode.async_internals import run_async_bolt_app, send_async_response
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest

from bot.preflight import TOKEN_REFUSED, SlackUnreachable, ask, describe, refusal
from bot.settings import ConfigError

log = logging.getLogger(__name__)

FIRST_WAIT = 1.0
MAX_WAIT = 60.0
ATTEMPT_TIMEOUT = 15.0  # apps.connections.open and the WebSocket handshake together
HELD = 60.0  # a connection that lasted this long was not a flap: reconnect at once
PING_INTERVAL = 10.0  # the SDK's ping: a silent socket is stale after 4 of them


def backoff(failures: int, rand: Callable[[], float] = random.random) -> float:
    """The wait before the next attempt: doubling from FIRST_WAIT up to MAX_WAIT, and
    jittered down to half of that so that many GRACEs do not retry in step."""
    ceiling = min(MAX_WAIT, FIRST_WAIT * 2.0 ** (failures - 1))
    return ceiling * (0.5 + rand() / 2)


class _Client(SocketModeClient):
    """The SDK's client with one attempt per `connect`, which never reconnects itself:
    where it would (a closed or stale socket, Slack's `disconnect` message), it sets
    `dropped` and leaves the reconnecting to the link."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dropped = asyncio.Event()

    async def connect(self) -> None:
        """A fresh URL from apps.connections.open, then the WebSocket; raises on failure."""
        self.auto_reconnect_enabled = False  # the SDK's loops keep quiet until connected
        old, self.current_session = self.current_session, None
        if old is not None:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                await old.close()  # a broken socket may not close cleanly: it is gone anyway
        if self.aiohttp_client_session.closed:
            self.aiohttp_client_session = aiohttp.ClientSession()
        web = self.web_client
        opening = web.apps_connections_open(app_token=self.app_token)
        self.wss_uri = (await ask(web, "apps.connections.open", opening))["url"]
        try:
            session = await self.aiohttp_client_session.ws_connect(
                self.wss_uri,
                autoping=False,
                heartbeat=self.ping_interval,
                proxy=self.proxy,
                ssl=web.ssl if web.ssl is not None else True,
            )
        except (aiohttp.ClientError, OSError) as exc:
            raise SlackUnreachable("the WebSocket", self.wss_uri, describe(exc)) from None
        self.current_session, self.stale, self.last_ping_pong_time = session, False, None
        for task in (self.current_session_monitor, self.message_receiver):
            if task is not None:
                task.cancel()
        # The SDK's own loops receive messages, ping, and notice a closed or stale socket.
        self.current_session_monitor = asyncio.ensure_future(self.monitor_current_session())
        self.message_receiver = asyncio.ensure_future(self.receive_messages())
        self.dropped.clear()
        self.auto_reconnect_enabled = True

    async def disconnect(self) -> None:
        """The SDK's, without its INFO line about abandoning a session never made."""
        if self.current_session is not None:
            await self.current_session.close()

    async def connect_to_new_endpoint(self, force: bool = False) -> None:
        """Where the SDK would reconnect with its own endless retry loop."""
        self.auto_reconnect_enabled = False  # said once: the link takes it from here
        self.dropped.set()


class SocketModeLink:
    """Keeps the Socket Mode connection up until cancelled; `close` frees it."""

    def __init__(self, bolt: AsyncApp, app_token: str) -> None:
        self.bolt = bolt
        self.client = _Client(
            app_token=app_token,
            web_client=bolt.client,
            ping_interval=PING_INTERVAL,
        )
        self.client.socket_mode_request_listeners.append(self._handle)
        self.connected_once = False

    async def _handle(self, client: AsyncBaseSocketModeClient, req: SocketModeRequest) -> None:
        started = time.time()
        response = await run_async_bolt_app(self.bolt, req)
        await send_async_response(client, req, response, started)

    async def run(self) -> None:
        """Connect, wait for the connection to drop, reconnect: until cancelled.

        Raises ConfigError when Slack refuses SLACK_APP_TOKEN before the first
        connection: no retry will fix that. Later, a refusal is retried like an outage.
        """
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            try:
                async with asyncio.timeout(ATTEMPT_TIMEOUT):
                    await self.client.connect()
            except (SlackUnreachable, SlackApiError, TimeoutError) as exc:
                self._refuse_bad_token(exc)
                failures += 1
                wait = backoff(failures)
                log.warning(
                    "Socket Mode: cannot connect to Slack (failure %d in a row: %s); "
                    "next attempt in %.1f s",
                    failures,
                    _reason(exc),
                    wait,
                )
                await asyncio.sleep(wait)
                continue
            log.info("Socket Mode: connected to Slack")
            self.connected_once = True
            since = loop.time()
            await self.client.dropped.wait()
            held = loop.time() - since
            # A connection that held resets the backoff; one that flaps counts as a failure.
            failures = 0 if held >= HELD else failures + 1
            wait = backoff(failures) if failures else 0.0
            log.warning(
                "Socket Mode: the connection to Slack dropped after %.0f s; reconnecting in %.1f s",
                held,
                wait,
            )
            await asyncio.sleep(wait)

    def _refuse_bad_token(self, exc: Exception) -> None:
        """Slack refusing SLACK_APP_TOKEN before GRACE ever connected is a config
        mistake no retry fixes; later it may be a revocation being undone: retry."""
        if self.connected_once or not isinstance(exc, SlackApiError):
            return
        error = refusal(exc)
        if error in TOKEN_REFUSED:
            raise ConfigError(
                f"SLACK_APP_TOKEN: Slack refused it (apps.connections.open: {error}); use an "
                "app-level token (xapp-…) with the connections:write scope"
            ) from None

    async def close(self) -> None:
        await self.client.close()


def _reason(exc: SlackUnreachable | SlackApiError | TimeoutError) -> str:
    if isinstance(exc, TimeoutError):
        return f"no connection within {ATTEMPT_TIMEOUT:g} s"
    if isinstance(exc, SlackUnreachable):
        return f"{exc.method}: {exc.reason}"
    return f"apps.connections.open refused: {refusal(exc)}"
