"""DevSlack: the Web API stand-in plus the workspace around it, the people whose messages,
clicks, modal submissions and slash commands reach the app as Slack's signed requests,
or in Socket Mode as envelopes over the app's WebSocket."""

from __future__ import annotations

import copy
import json
import secrets
import time
import urllib.parse
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from slack_sdk.signature import SignatureVerifier

from bot.devslack.blockkit import buttons
from bot.devslack.home import HomeTabs
from bot.devslack.message import Message
from bot.devslack.page import Page
from bot.devslack.socket import Exchange, SocketMode, enveloped
from bot.devslack.web_api import SlackError, WebApi


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
            return json.loads(self.request_body)
        form = dict(urllib.parse.parse_qsl(self.request_body, keep_blank_values=True))
        return json.loads(form["payload"]) if "payload" in form else form


class DevSlack(WebApi):
    """Slack Web API + Events/Interactivity delivery, in process, for demos and tests.

    A subclass, not a wrapper: what people post lands in the Web API's store, nothing forwarded.
    """

    request_url: str | None = None
    socket_mode = False
    _session: aiohttp.ClientSession | None = None

    def __init__(self, **workspace: Any) -> None:
        """The workspace is the Web API's (see WebApi); Socket Mode is off until asked for."""
        super().__init__(**workspace)
        self.home = HomeTabs(self)
        self.socket = SocketMode(self.app_id, self._notify)
        self.page = Page(self)

    # ------------------------------------------------------------ lifecycle

    def _add_routes(self, app: web.Application) -> None:
        super()._add_routes(app)
        app.router.add_get("/link/", self.socket.handle)
        self.page.add_routes(app)

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

    def _methods(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {**super()._methods(), "views.publish": self._views_publish}

    def _views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.home.publish(args)

    @property
    def homes(self) -> dict[str, dict[str, Any]]:
        """Each person's App Home as Slack shows it: user id -> the view last published."""
        return self.home.homes

    def issue_trigger_id(self) -> str:
        """A trigger_id as Slack hands out with an interaction; valid for 3 s, once."""
        self._seq += 1
        trigger = f"{self._seq}.{int(time.time())}.{secrets.token_hex(16)}"
        self._triggers[trigger] = (self._clock(), False)
        return trigger

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

    async def post_message_as(
        self,
        channel: str,
        text: str = "",
        *,
        user: str | None = None,
        bot_id: str | None = None,
        username: str | None = None,
        blocks: list[dict[str, Any]] | None = None,
        attachments: list[dict[str, Any]] | None = None,
        subtype: str | None = None,
        thread_ts: str | None = None,
    ) -> Delivery:
        """A person or an integration posts in a channel: stored, then delivered as an event."""
        if channel not in self.channels:
            raise LookupError(f"unknown channel {channel!r}; known: {sorted(self.channels)}")
        if user is None and bot_id is None:
            raise ValueError("post_message_as needs user= or bot_id=")
        if thread_ts is not None and (channel, thread_ts) not in self._by_ts:
            raise LookupError(f"no message {thread_ts} in {channel} to reply to")
        if bot_id is not None and user is None and subtype is None:
            subtype = "bot_message"  # integrations (webhooks) post without a user
        msg = self._store(
            Message(
                channel,
                self._next_ts(),
                text,
                list(blocks or []),
                list(attachments or []),
                user,
                bot_id,
                username,
                subtype,
                thread_ts,
            )
        )
        event: dict[str, Any] = {"type": "message", **({"subtype": subtype} if subtype else {})}
        if user is not None:
            event["user"] = user
        if bot_id is not None:
            event["bot_id"] = bot_id
        if username is not None:
            event["username"] = username
        event.update(
            text=text,
            ts=msg.ts,
            channel=channel,
            event_ts=msg.ts,
            channel_type="channel",
            team=self.team_id,
        )
        if user is not None and bot_id is None:
            event["client_msg_id"] = str(uuid.uuid4())
        if thread_ts:
            event["thread_ts"] = thread_ts
        if blocks:
            event["blocks"] = blocks
        if attachments:
            event["attachments"] = attachments
        return await self.deliver_event(event)

    def _user_obj(self, user: str) -> dict[str, Any]:
        name = self.users.get(user, user.lower())
        return {"id": user, "username": name, "name": name, "team_id": self.team_id}

    def _interaction(self, kind: str, user: str, **rest: Any) -> dict[str, Any]:
        return {
            "type": kind,
            "user": self._user_obj(user),
            "api_app_id": self.app_id,
            "token": self.verification_token,
            "trigger_id": self.issue_trigger_id(),
            "team": {"id": self.team_id, "domain": self.team_domain},
            "enterprise": None,
            "is_enterprise_install": False,
            **rest,
        }

    async def _post_form(self, fields: Mapping[str, str]) -> Delivery:
        body = urllib.parse.urlencode(fields)
        return await self._deliver(body, "application/x-www-form-urlencoded")

    async def click(self, channel: str, ts: str, action_id: str, *, user: str) -> Delivery:
        """A person clicks a button on the message as it is now (stale cards cannot be clicked)."""
        msg = self.message(channel, ts)
        found = _find_button(msg.blocks, action_id)
        if found is None:
            present = [b[1].get("action_id") for b in buttons(msg.blocks)]
            raise LookupError(
                f"message {ts} in {channel} has no button {action_id!r} "
                f"(its buttons now: {present or 'none'})"
            )
        block_id, button = found
        action = {"action_id": action_id, "block_id": block_id, "text": button["text"]}
        action.update({k: button[k] for k in ("value", "style") if k in button})
        action.update(type="button", action_ts=self._next_ts())
        return await self._message_action(msg, action, user)

    async def pick(self, channel: str, ts: str, value: str, *, user: str) -> Delivery:
        """A person picks the option `value` in a static select menu of the message."""
        msg = self.message(channel, ts)
        found = _find_option(msg.blocks, value)
        if found is None:
            raise LookupError(f"message {ts} in {channel} offers no option {value!r}")
        block_id, menu, option = found
        action = {
            "type": "static_select",
            "action_id": menu["action_id"],
            "block_id": block_id,
            "selected_option": option,
            "action_ts": self._next_ts(),
        }
        if "placeholder" in menu:
            action["placeholder"] = menu["placeholder"]
        return await self._message_action(msg, action, user)

    async def _message_action(self, msg: Message, action: dict[str, Any], user: str) -> Delivery:
        """block_actions for an action on a channel message, as Slack sends it."""
        channel, ts = msg.channel, msg.ts
        container = {
            "type": "message",
            "message_ts": ts,
            "channel_id": channel,
            "is_ephemeral": False,
        }
        if msg.thread_ts:
            container["thread_ts"] = msg.thread_ts
        payload = self._interaction(
            "block_actions",
            user,
            container=container,
            channel={"id": channel, "name": self.channels[channel]},
            message=msg.to_slack(self.team_id),
            state={"values": {}},
            response_url=self._new_response_url(channel, user, ts),
            actions=[action],
        )
        return await self._post_form({"payload": json.dumps(payload)})

    async def message_shortcut(
        self, channel: str, ts: str, callback_id: str, *, user: str
    ) -> Delivery:
        """A person runs a message shortcut from a message's menu (a message_action)."""
        msg = self.message(channel, ts)
        payload = self._interaction(
            "message_action",
            user,
            callback_id=callback_id,
            action_ts=self._next_ts(),
            channel={"id": channel, "name": self.channels[channel]},
            message_ts=ts,
            message=msg.to_slack(self.team_id),
            response_url=self._new_response_url(channel, user, None),
        )
        return await self._post_form({"payload": json.dumps(payload)})

    async def submit_view(
        self, view_id: str, *, user: str, values: Mapping[str, Mapping[str, Any]]
    ) -> Delivery:
        """A person submits an open modal; ``values`` is {block_id: {action_id: value}}."""
        view = next((v for v in self.views if v["id"] == view_id), None)
        if view is None:
            raise LookupError(f"no open view {view_id!r}")
        inputs = {
            b["block_id"]: b.get("element", {}) for b in view["blocks"] if b.get("type") == "input"
        }
        state: dict[str, dict[str, Any]] = {}
        for block_id, by_action in values.items():
            for action_id, value in by_action.items():
                element = inputs.get(block_id)
                if element is None or element.get("action_id") != action_id:
                    raise LookupError(f"view {view_id} has no input {block_id}/{action_id}")
                entry = {"type": element["type"], "value": value}
                state.setdefault(block_id, {})[action_id] = entry
        submitted = {**copy.deepcopy(view), "state": {"values": state}}
        payload = self._interaction("view_submission", user, view=submitted, response_urls=[])
        return await self._post_form({"payload": json.dumps(payload)})

    async def slash_command(
        self, text: str, *, user: str, channel: str, command: str = "/grace"
    ) -> Delivery:
        """A person types a slash command: delivered form-encoded like Slack does."""
        if channel not in self.channels:
            raise LookupError(f"unknown channel {channel!r}; known: {sorted(self.channels)}")
        return await self._post_form(
            {
                "token": self.verification_token,
                "team_id": self.team_id,
                "team_domain": self.team_domain,
                "channel_id": channel,
                "channel_name": self.channels.get(channel, channel),
                "user_id": user,
                "user_name": self.users.get(user, user.lower()),
                "command": command,
                "text": text,
                "api_app_id": self.app_id,
                "is_enterprise_install": "false",
                "response_url": self._new_response_url(channel, user, None),
                "trigger_id": self.issue_trigger_id(),
            }
        )


def _find_option(
    blocks: Sequence[Mapping[str, Any]], value: str
) -> tuple[str, Mapping[str, Any], Mapping[str, Any]] | None:
    for b in blocks:
        for el in [*b.get("elements", []), b.get("accessory")]:
            if not (isinstance(el, dict) and el.get("type") == "static_select"):
                continue
            groups = [g.get("options", []) for g in el.get("option_groups", [])]
            for option in [*el.get("options", []), *(o for g in groups for o in g)]:
                if option.get("value") == value:
                    return b.get("block_id", ""), el, option
    return None


def _find_button(blocks: Sequence[Mapping[str, Any]], action_id: str) -> tuple[str, Any] | None:
    return next(
        ((bid, el) for bid, el in buttons(blocks) if el.get("action_id") == action_id), None
    )


def _socket_delivery(exchange: Exchange, body: str, sent: dict[str, str]) -> Delivery:
    ack, took, envelope = exchange.ack, exchange.elapsed, exchange.envelope
    if ack is None:
        return Delivery(0, exchange.error or "operation_timeout", {}, body, sent, took, envelope)
    answer = ack.get("payload")
    if not answer:
        return Delivery(200, "", {}, body, sent, took, envelope)
    headers = {"Content-Type": "application/json"}
    return Delivery(200, json.dumps(answer), headers, body, sent, took, envelope)
