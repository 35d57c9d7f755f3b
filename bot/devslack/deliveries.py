"""How Slack's requests reach the app: signed and POSTed to its request URL (Events
API and interactivity over HTTP), or, once Socket Mode is on, as envelopes over
the WebSocket the app opened with its app-level token."""

from __future__ import annotations

import json
import secrets
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from slack_sdk.signature import SignatureVerifier

from bot.devslack.calls import SlackError
from bot.devslack.socket import Exchange, SocketMode, enveloped
from bot.devslack.web_api import WebApi


@dataclass
class Delivery:
    """One Slack -> app delivery and the app's answer.

    Over HTTP, the request and the response. In Socket Mode, the same: `request_body`
    is what HTTP mode would POST, `status` 200 and `body` the ack's payload as JSON
    once acknowledged; with no ack, status 0 and `body` what the person would see
    (dispatch_failed, operation_timeout). `envelope` is the last one sent.
    """

    status: int
    body: str
    headers: dict[str, str]
    request_body: str
    request_headers: dict[str, str]
    elapsed: float = 0.0  # seconds until the app answered; Slack gives up after 3
    envelope: dict[str, Any] | None = None

    def payload(self) -> dict[str, Any]:
        """The delivered document: the JSON event, the ``payload`` form field, or the form."""
        if self.request_body.startswith("{"):
            document: dict[str, Any] = json.loads(self.request_body)
            return document
        form = dict(urllib.parse.parse_qsl(self.request_body, keep_blank_values=True))
        return json.loads(form["payload"]) if "payload" in form else form


class DeliveringApi(WebApi):
    """The Web API, and the way from Slack to the app: HTTP or Socket Mode."""

    request_url: str | None = None
    socket_mode = False
    _session: aiohttp.ClientSession | None = None

    def __init__(self, **workspace: Any) -> None:
        """The workspace is the Web API's (see WebApi); Socket Mode is off until asked for."""
        super().__init__(**workspace)
        self.socket = SocketMode(self.app_id, self._notify)

    # ------------------------------------------------------------ lifecycle

    def _add_routes(self, app: web.Application) -> None:
        super()._add_routes(app)
        app.router.add_get("/link/", self.socket.handle)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        await super().start(host, port)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    async def stop(self) -> None:
        await self.socket.drop()  # open WebSockets would hold the server's shutdown up
        if self._session is not None:
            await self._session.close()
        self._session = None
        await super().stop()

    def connect(self, request_url: str) -> None:
        """Tell the stand-in where the app receives Slack's requests (its /slack/events)."""
        self.request_url = request_url

    def use_socket_mode(self) -> str:
        """Deliver over Socket Mode from now on (the app's toggle turned on); returns the
        app-level token the app opens its connections with."""
        self.socket_mode = True
        return self.socket.issue_token()

    def _dispatch(self, method: str, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        """An app-level token opens Socket Mode connections and nothing else, as on Slack;
        any other token is the Web API's to judge (the bot token is refused there)."""
        if not (token and self.socket.issued(token)):
            return super()._dispatch(method, args, token)
        if method not in self._methods():
            raise SlackError("unknown_method", 404, req_method=method)
        if self._failures.get(method):
            raise self._failures[method].pop(0)
        if method != "apps.connections.open":
            raise SlackError("not_allowed_token_type")
        return {"ok": True, "url": self.socket.open_url(self._base)}

    # ------------------------------------------------------------ Slack -> app deliveries

    async def signed_post(
        self,
        body: str,
        content_type: str,
        *,
        timestamp: int | None = None,
        secret: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Delivery:
        """POST ``body`` to the app signed with Slack's v0 scheme (tests may pass a bad one)."""
        if self.request_url is None or self._session is None:
            raise RuntimeError("DevSlack.start() and connect(request_url) come first")
        ts = str(int(time.time()) if timestamp is None else timestamp)
        signature = SignatureVerifier(secret or self.signing_secret).generate_signature(
            timestamp=ts, body=body
        )
        sent = {
            "Content-Type": content_type,
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": signature or "",
            **(headers or {}),
        }
        started = time.monotonic()
        async with self._session.post(self.request_url, data=body.encode(), headers=sent) as resp:
            text = await resp.text()
            delivery = Delivery(
                resp.status, text, dict(resp.headers), body, sent, time.monotonic() - started
            )
        await self._notify()
        return delivery

    async def redeliver(self, delivery: Delivery, retry_num: int = 1) -> Delivery:
        """Send the same body again with a fresh signature and Slack's retry headers
        (in Socket Mode: in a new envelope with that retry_attempt)."""
        headers = {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"}
        return await self._deliver(
            delivery.request_body, delivery.request_headers["Content-Type"], headers
        )

    async def _deliver(
        self, body: str, content_type: str, headers: Mapping[str, str] | None = None
    ) -> Delivery:
        """What HTTP mode POSTs, signed; in Socket Mode the same document in an envelope."""
        if not self.socket_mode:
            return await self.signed_post(body, content_type, headers=headers)
        sent = {"Content-Type": content_type, **(headers or {})}
        kind, payload = enveloped(body, content_type)
        retry = int(sent.get("X-Slack-Retry-Num", 0))
        reason = sent.get("X-Slack-Retry-Reason", "")
        exchange = await self.socket.deliver(kind, payload, retry, reason)
        await self._notify()
        return _socket_delivery(exchange, body, sent)

    async def deliver_event(self, event: Mapping[str, Any]) -> Delivery:
        """Wrap any Events API event (app_home_opened, ...) in an event_callback and deliver it."""
        now = time.time()
        envelope = {
            "token": self.verification_token,
            "team_id": self.team_id,
            "context_team_id": self.team_id,
            "context_enterprise_id": None,
            "api_app_id": self.app_id,
            "event": dict(event),
            "type": "event_callback",
            "event_id": "Ev" + secrets.token_hex(5).upper(),
            "event_time": int(now),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": self.team_id,
                    "user_id": self.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
            "event_context": "4-" + secrets.token_urlsafe(24),
        }
        return await self._deliver(json.dumps(envelope), "application/json")

    async def _post_form(self, fields: Mapping[str, str]) -> Delivery:
        body = urllib.parse.urlencode(fields)
        return await self._deliver(body, "application/x-www-form-urlencoded")


def _socket_delivery(exchange: Exchange, body: str, sent: dict[str, str]) -> Delivery:
    ack, took, envelope = exchange.ack, exchange.elapsed, exchange.envelope
    if ack is None:
        return Delivery(0, exchange.error or "operation_timeout", {}, body, sent, took, envelope)
    answer = ack.get("payload")
    if not answer:
        return Delivery(200, "", {}, body, sent, took, envelope)
    headers = {"Content-Type": "application/json"}
    return Delivery(200, json.dumps(answer), headers, body, sent, took, envelope)
