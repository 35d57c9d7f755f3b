"""Slack's side of Socket Mode: app-level tokens, the one-time URLs apps.connections.open
hands out, and the WebSocket over which deliveries reach the app and its acks come back.

As Slack does it: a `hello` when a connection opens; each delivery an envelope with an
`envelope_id`, acknowledged by the app sending that id back within 3 s (with a response
payload where the envelope `accepts_response_payload`), over any of the app's
connections (the SDK acks over its newest). An Events API envelope not acknowledged in
time is sent again with `retry_attempt` counting up, at most three times; an interaction
or a command is not: the person sees an error. A refresh is a `disconnect` warning,
time for the app to open a new connection, then `refresh_requested` and the close.
Deliveries go to the newest open connection; events wait a while for one,
interactions fail at once without one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import secrets
import time
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

ACK_TIMEOUT = 3.0  # seconds Slack waits for an ack
MAX_RETRIES = 3  # Events API retries after the first attempt
REFRESH_GRACE = 10.0  # seconds between the warning and the close, for the app to reconnect
EVENT_PATIENCE = 30.0  # seconds an event waits for a connection before Slack gives up on it
EVENTS = "events_api"


@dataclass
class Exchange:
    """One delivery over the socket: the last envelope sent and what came back."""

    envelope: dict[str, Any]
    ack: dict[str, Any] | None
    elapsed: float  # seconds from sending the last envelope to its ack (or to giving up)
    error: str | None = None  # what the person would see: dispatch_failed, operation_timeout


@dataclass(eq=False)
class Connection:
    """One open WebSocket; sends are one at a time."""

    ws: web.WebSocketResponse
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send(self, message: dict[str, Any]) -> None:
        async with self.lock:
            await self.ws.send_str(json.dumps(message))


class SocketMode:
    """Socket Mode for one app. `sent` and `acks` are every envelope and every ack (in
    order) for tests to read; an ack that arrives for no pending envelope is kept in
    `acks` all the same, so a test can tell that nothing was acknowledged twice."""

    def __init__(self, app_id: str, notify: Callable[[], Awaitable[None]]) -> None:
        self.app_id = app_id
        self.ack_timeout = ACK_TIMEOUT
        self.connections: list[Connection] = []
        self.opened = 0  # connections ever opened
        self.sent: list[dict[str, Any]] = []
        self.acks: list[dict[str, Any]] = []
        self._tokens: list[str] = []
        self._tickets: set[str] = set()
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}  # envelope id -> its ack
        self._lose: list[str] = []  # envelope types whose next ack is lost
        self._losing: set[str] = set()  # envelope ids whose ack will be lost
        self._changes = asyncio.Condition()  # a connection opened or closed
        self._notify = notify

    # ------------------------------------------------------------ tokens and URLs

    def issue_token(self) -> str:
        """An app-level token with connections:write, shaped like Slack's."""
        token = f"xapp-1-{self.app_id}-{int(time.time() * 1000)}-{secrets.token_hex(32)}"
        self._tokens.append(token)
        return token

    def issued(self, token: str) -> bool:
        return any(hmac.compare_digest(token.encode(), t.encode()) for t in self._tokens)

    def open_url(self, base: str) -> str:
        """apps.connections.open's answer: a URL good for one connection."""
        ticket = str(uuid.uuid4())
        self._tickets.add(ticket)
        return f"ws{base.removeprefix('http')}/link/?ticket={ticket}&app_id={self.app_id}"

    # ------------------------------------------------------------ the WebSocket

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """GET /link/: the app's connection, for as long as either side keeps it."""
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            raise web.HTTPUnauthorized(text="unknown or used ticket: call apps.connections.open")
        self._tickets.discard(ticket)
        ws = web.WebSocketResponse(autoping=True)  # answers the SDK's pings
        await ws.prepare(request)
        self.opened += 1
        conn = Connection(ws)
        self.connections.append(conn)
        await conn.send(self._hello())
        await self._changed()
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    await self._received(conn, message.data)
        finally:
            self.connections.remove(conn)
            await self._changed()
        return ws

    async def _changed(self) -> None:
        async with self._changes:
            self._changes.notify_all()
        await self._notify()

    def _hello(self) -> dict[str, Any]:
        return {
            "type": "hello",
            "num_connections": len(self.connections),
            "debug_info": {
                "host": "devslack-applink",
                "build_number": 1,
                "approximate_connection_time": 18060,
            },
            "connection_info": {"app_id": self.app_id},
        }

    async def _received(self, conn: Connection, data: str) -> None:
        """An ack: `{"envelope_id": ..., "payload": ...}`. A lost one never reaches
        Slack: the network broke just then, so the connection goes too."""
        try:
            ack = json.loads(data)
        except ValueError:
            return  # not an ack; Slack ignores what it does not understand
        envelope_id = ack.get("envelope_id") if isinstance(ack, dict) else None
        if not isinstance(envelope_id, str):
            return
        if envelope_id in self._losing:
            self._losing.discard(envelope_id)
            await conn.ws.close()
            return
        self.acks.append(ack)
        waiting = self._pending.pop(envelope_id, None)
        if waiting is not None and not waiting.done():
            waiting.set_result(ack)
        await self._notify()

    # ------------------------------------------------------------ deliveries

    async def deliver(
        self, kind: str, payload: dict[str, Any], retry_attempt: int = 0, retry_reason: str = ""
    ) -> Exchange:
        """Send `payload` in an envelope of `kind` and wait for its ack, retrying an
        event as Slack does; returns the last envelope's exchange."""
        while True:
            conn = await self._connection(EVENT_PATIENCE if kind == EVENTS else 0.0)
            envelope = _envelope(kind, payload, retry_attempt, retry_reason)
            if conn is None:
                return Exchange(envelope, None, 0.0, "dispatch_failed")
            started = time.monotonic()
            ack = await self._exchange(conn, envelope)
            elapsed = time.monotonic() - started
            if ack is not None:
                return Exchange(envelope, ack, elapsed)
            if kind != EVENTS or retry_attempt >= MAX_RETRIES:
                return Exchange(envelope, None, elapsed, "operation_timeout")
            retry_attempt, retry_reason = retry_attempt + 1, "timeout"

    async def _connection(self, patience: float) -> Connection | None:
        """The newest open connection, waiting up to `patience` seconds for one."""

        def newest() -> Connection | None:
            live = [c for c in self.connections if not c.ws.closed]
            return live[-1] if live else None

        async with self._changes:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changes.wait_for(newest), patience)
            return newest()

    async def _exchange(self, conn: Connection, envelope: dict[str, Any]) -> dict[str, Any] | None:
        envelope_id = envelope["envelope_id"]
        waiting: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[envelope_id] = waiting
        if envelope["type"] in self._lose:
            self._lose.remove(envelope["type"])
            self._losing.add(envelope_id)
        self.sent.append(envelope)
        try:
            await conn.send(envelope)
            return await asyncio.wait_for(waiting, self.ack_timeout)
        except (TimeoutError, ConnectionError):  # no ack in time, or the connection was gone
            return None
        finally:
            self._pending.pop(envelope_id, None)
            await self._notify()

    # ------------------------------------------------------------ test controls

    def lose_ack(self, kind: str = EVENTS) -> None:
        """The app's ack of the next envelope of `kind` never reaches Slack: the
        connection breaks as it is sent. An event is sent again once its wait is over."""
        self._lose.append(kind)

    async def refresh(self, grace: float = REFRESH_GRACE) -> None:
        """Slack recycling the newest connection: a `warning`, up to `grace` seconds for
        the app to open another, then `refresh_requested` and the close."""
        old = await self._connection(0.0)
        if old is None:
            raise RuntimeError("no Socket Mode connection to refresh")
        await old.send(_disconnect("warning"))

        def moved_on() -> bool:
            return old.ws.closed or self.connections[-1] is not old

        async with self._changes:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changes.wait_for(moved_on), grace)
        if not old.ws.closed:
            with contextlib.suppress(ConnectionError):
                await old.send(_disconnect("refresh_requested"))
            await old.ws.close()

    async def drop(self) -> None:
        """Every connection closes at once, with no warning (Slack restarting, the network)."""
        for conn in list(self.connections):
            await conn.ws.close()


def enveloped(body: str, content_type: str) -> tuple[str, dict[str, Any]]:
    """The envelope type and payload Socket Mode carries for what HTTP mode POSTs: the
    event_callback, an interaction's `payload` field, or a command's whole form."""
    if content_type == "application/json":
        return "events_api", json.loads(body)
    form = dict(urllib.parse.parse_qsl(body, keep_blank_values=True))
    if "payload" in form:
        return "interactive", json.loads(form["payload"])
    return "slash_commands", form


def _envelope(
    kind: str, payload: dict[str, Any], retry_attempt: int, retry_reason: str
) -> dict[str, Any]:
    envelope = {
        "envelope_id": str(uuid.uuid4()),
        "payload": payload,
        "type": kind,
        "accepts_response_payload": _accepts_response(kind, payload),
    }
    if kind == EVENTS:
        envelope.update(retry_attempt=retry_attempt, retry_reason=retry_reason)
    return envelope


def _accepts_response(kind: str, payload: dict[str, Any]) -> bool:
    """Where Slack reads the ack's payload: a command's answer, a submission's
    response_action, a menu's options. Elsewhere the ack only acknowledges."""
    if kind == "slash_commands":
        return True
    return kind == "interactive" and payload.get("type") in ("view_submission", "block_suggestion")


def _disconnect(reason: str) -> dict[str, Any]:
    return {"type": "disconnect", "reason": reason, "debug_info": {"host": "devslack-applink"}}
