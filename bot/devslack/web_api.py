"""Slack's Web API served on loopback: the calls the bot makes, the messages they
store, and what a test needs to watch it (see the package's docstring). Each
family of methods is a module of its own; this one routes, authenticates and
stores."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from bot.devslack.calls import ApiCall, SlackError
from bot.devslack.chat import Chat
from bot.devslack.files import FileUploads
from bot.devslack.history import History
from bot.devslack.message import Message
from bot.devslack.people import People
from bot.devslack.render import Reader
from bot.devslack.response_urls import ResponseUrls
from bot.devslack.views import Views

T = TypeVar("T")


@dataclass
class LostAnswer:
    """A call Slack carries out whose answer never reaches the caller (see `lose_answer`)."""

    method: str
    hang: float
    match: Callable[[dict[str, Any]], bool] | None


class WebApi:
    """Slack Web API in process, for demos and tests; DevSlack adds the people who use it."""

    def __init__(
        self,
        *,
        token: str,
        signing_secret: str,
        channels: Mapping[str, str],
        users: Mapping[str, str] | None = None,
        team_id: str = "T0GRACE",
        bot_user_id: str = "U0GRACE",
        bot_id: str = "B0GRACE",
        app_id: str = "A0GRACE",
        usergroups: Mapping[str, Sequence[str]] | None = None,
        verification_token: str = "devslack-verification-token",
        team_domain: str = "grace-dev",
        post_rate_per_channel: float | None = None,
        post_burst: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # the whole workspace is configured here, the secrets DevSlack signs deliveries with too
        self.token, self.signing_secret = token, signing_secret
        self.channels = dict(channels)
        self.users = {bot_user_id: "grace", **(users or {})}
        self.usergroups = {k: list(v) for k, v in (usergroups or {}).items()}
        self.team_id, self.bot_user_id = team_id, bot_user_id
        self.bot_id, self.app_id = bot_id, app_id
        self.verification_token, self.team_domain = verification_token, team_domain
        self.post_rate, self.post_burst, self._clock = post_rate_per_channel, post_burst, clock
        self.calls: list[ApiCall] = []
        self._top: dict[str, list[Message]] = {c: [] for c in self.channels}
        self._replies: dict[tuple[str, str], list[Message]] = {}
        self._by_ts: dict[tuple[str, str], Message] = {}
        self._ephemeral: list[Message] = []
        self._failures: dict[str, list[SlackError]] = {}
        self._lost: list[LostAnswer] = []
        self._metadata: dict[tuple[str, str], dict[str, Any]] = {}  # (channel, ts) -> metadata
        # While `outage` is true every Web API call fails, as in a Slack outage: with
        # `outage_status` (a 503 by default; a 429 comes with `outage_retry_after`).
        self.outage = False
        self.outage_status, self.outage_retry_after = 503, 1
        self.poll_interval = 0.05
        self._last_us = 0
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._base = ""
        self._reader = Reader(self.users, self.channels)
        # each family of methods keeps its own state, over the messages stored here
        self._chat, self._history, self._people = Chat(self), History(self), People(self)
        self._views, self._responses = Views(self), ResponseUrls(self)
        self.views = self._views.opened  # the modals opened, as Slack holds them now
        self._files = FileUploads(self)
        self.uploads = self._files.uploads  # file id -> Upload: what reached the stand-in

    # ------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        self._add_routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        self._base = f"http://{bound_host}:{bound_port}"

    def _add_routes(self, app: web.Application) -> None:
        """The Web API and response URLs; DevSlack adds Socket Mode's link and its page."""
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/respond/{key}", self._responses.handle)
        app.router.add_post("/upload/v1/{key}", self._files.handle_upload)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = None

    @property
    def api_url(self) -> str:
        if not self._base:
            raise RuntimeError("DevSlack is not started")
        return f"{self._base}/api/"

    # ------------------------------------------------------------ reading state

    def messages(self, channel: str) -> list[Message]:
        return list(self._top.get(channel, []))

    def thread(self, channel: str, ts: str) -> list[Message]:
        return list(self._replies.get((channel, ts), []))

    def message(self, channel: str, ts: str) -> Message:
        try:
            return self._by_ts[(channel, ts)]
        except KeyError:
            raise LookupError(f"no message {ts} in {channel}") from None

    def ephemerals(self, user: str | None = None) -> list[Message]:
        return [m for m in self._ephemeral if user is None or m.recipient == user]

    async def wait_for(
        self,
        predicate: Callable[[], T | bool | None],
        timeout: float = 10.0,  # noqa: ASYNC109 - a deadline is the point of this helper
    ) -> T:
        """Re-check ``predicate`` on every state change until it is truthy.

        Also every ``poll_interval`` seconds, so predicates over the bot's own state work too.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with self._changed:
            while True:
                result = predicate()
                if result:
                    return result  # type: ignore[return-value]
                remaining = deadline - loop.time()
                if remaining <= 0:
                    recent = "; ".join(
                        f"{c.method} -> {c.response.get('error') or 'ok'}" for c in self.calls[-5:]
                    )
                    name = getattr(predicate, "__qualname__", repr(predicate))
                    raise TimeoutError(
                        f"devslack: {name} still false after {timeout}s; "
                        f"last calls: {recent or 'none'}"
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), min(remaining, self.poll_interval))

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # ------------------------------------------------------------ test controls

    def fail_next(
        self,
        method: str,
        error: str = "ratelimited",
        *,
        status: int = 429,
        retry_after: int | None = 1,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail (a 429 by default), to test retries."""
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        self._failures.setdefault(method, []).extend(
            SlackError(error, status, headers) for _ in range(times)
        )

    def lose_answer(
        self,
        method: str,
        *,
        times: int = 1,
        hang: float = 0.0,
        match: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        """Carry out the next ``times`` calls of ``method`` (those whose arguments ``match``)
        but never answer them: after ``hang`` seconds the connection closes with no
        response, as when the caller dies or the network drops between Slack's commit
        and the caller's. A caller whose timeout is under ``hang`` sees a timeout."""
        self._lost.extend(LostAnswer(method, hang, match) for _ in range(times))

    def _loses(self, method: str, args: dict[str, Any]) -> LostAnswer | None:
        for lost in self._lost:
            if lost.method == method and (lost.match is None or lost.match(args)):
                self._lost.remove(lost)
                return lost
        return None

    # ------------------------------------------------------------ Web API

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if self.outage:
            return await self._outage_answer(method)
        args: dict[str, Any] = {}
        status, headers = 200, {}
        try:
            args, token = await self._parse(request)
            response = self._dispatch(method, args, token)
        except SlackError as e:
            status, headers = e.status, e.headers
            response = {"ok": False, "error": e.error, **e.extra}
        lost = self._loses(method, args) if response["ok"] else None
        self.calls.append(ApiCall(method, args, response, self._clock()))
        await self._notify()
        if lost is not None:
            await asyncio.sleep(lost.hang)
            if request.transport is not None:
                request.transport.close()  # done in Slack; the answer never leaves
        return web.json_response(response, status=status, headers=headers)

    async def _outage_answer(self, method: str) -> web.Response:
        status = self.outage_status
        self.calls.append(ApiCall(method, {}, {"outage": status}, self._clock()))
        await self._notify()
        if status == 429:
            retry = {"Retry-After": str(self.outage_retry_after)}
            body = {"ok": False, "error": "ratelimited"}
            return web.json_response(body, status=429, headers=retry)
        return web.Response(status=status, text="Service Unavailable")

    async def _parse(self, request: web.Request) -> tuple[dict[str, Any], str | None]:
        args: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                body = None
            if not isinstance(body, dict):
                raise SlackError("invalid_json")
            args.update(body)
        elif request.can_read_body:
            args.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        for key in ("blocks", "attachments", "view", "metadata"):
            if isinstance(args.get(key), str) and args[key]:
                try:
                    args[key] = json.loads(args[key])
                except ValueError:
                    code = {
                        "view": "invalid_arguments",
                        "blocks": "invalid_blocks_format",
                        "metadata": "invalid_metadata_format",
                    }
                    raise SlackError(code.get(key, "invalid_attachments")) from None
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else args.get("token")
        args.pop("token", None)
        return args, token

    def _dispatch(self, method: str, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        handler = self._methods().get(method)
        if handler is None:
            raise SlackError("unknown_method", 404, req_method=method)
        if self._failures.get(method):
            raise self._failures[method].pop(0)
        if not token:
            raise SlackError("not_authed")
        if not hmac.compare_digest(token.encode(), self.token.encode()):
            raise SlackError("invalid_auth")
        return {"ok": True, **handler(args)}

    def _methods(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {
            "auth.test": self._people.auth_test,
            "apps.connections.open": self._apps_connections_open,
            "chat.postMessage": self._chat.post_message,
            "chat.update": self._chat.update,
            "chat.delete": self._chat.delete,
            "chat.postEphemeral": self._chat.post_ephemeral,
            "views.open": self._views.open,
            "views.update": self._views.update,
            "users.info": self._people.users_info,
            "usergroups.users.list": self._people.usergroup_users,
            "conversations.info": self._history.info,
            "conversations.history": self._history.history,
            "conversations.replies": self._history.replies,
            "files.getUploadURLExternal": self._files.get_upload_url,
            "files.completeUploadExternal": self._files.complete,
        }

    def _apps_connections_open(self, _: dict[str, Any]) -> dict[str, Any]:
        """Socket Mode's URL is only for an app-level token (xapp-), which DevSlack
        answers before this: the bot token is refused here, as Slack refuses it, and
        an unknown token before this (invalid_auth)."""
        raise SlackError("not_allowed_token_type")

    # ------------------------------------------------------------ the messages it stores

    def _channel(self, args: Mapping[str, Any]) -> str:
        channel = str(args.get("channel") or "").lstrip("#")
        if channel in self.channels:
            return channel
        named = [cid for cid, name in self.channels.items() if name == channel]
        if not named:
            raise SlackError("channel_not_found")
        return named[0]

    def _next_ts(self) -> str:
        us = max(time.time_ns() // 1000, self._last_us + 1)
        self._last_us = us
        return f"{us // 1_000_000}.{us % 1_000_000:06d}"

    def _store(self, msg: Message) -> Message:
        if msg.thread_ts is None:
            self._top[msg.channel].append(msg)
        else:
            self._replies.setdefault((msg.channel, msg.thread_ts), []).append(msg)
            self._by_ts[(msg.channel, msg.thread_ts)].reply_count += 1
        self._by_ts[(msg.channel, msg.ts)] = msg
        return msg

    def _thread_parent(self, channel: str, thread_ts: Any) -> str | None:
        if not thread_ts:
            return None
        parent = self._by_ts.get((channel, str(thread_ts)))
        if parent is None or parent.thread_ts is not None:
            raise SlackError("thread_not_found")
        return parent.ts

    def _edit(self, msg: Message, content: Mapping[str, Any]) -> None:
        """Replace a message's content, keeping the previous version (Slack shows '(edited)')."""
        msg.edits.append(msg._snapshot())
        msg.edited_ts = self._next_ts()
        for key, value in content.items():
            setattr(msg, key, value)

    def _remove(self, msg: Message) -> None:
        del self._by_ts[(msg.channel, msg.ts)]
        self._metadata.pop((msg.channel, msg.ts), None)
        if msg.thread_ts is None:
            self._top[msg.channel].remove(msg)
        else:
            self._replies[(msg.channel, msg.thread_ts)].remove(msg)

    # ------------------------------------------------------------ response_url

    def _new_response_url(self, channel: str, user: str, message_ts: str | None) -> str:
        """A response_url as Slack sends with a command or a click on `message_ts`."""
        return self._responses.issue(channel, user, message_ts)

    # ------------------------------------------------------------ reading

    def render_message(self, message: Message) -> str:
        """Block Kit as a person reads it; ``text`` only when there is nothing richer."""
        return self._reader.message(message)

    def transcript(self, channel: str) -> str:
        """The channel as a reader scrolls it: each message, its edits, its thread below it."""
        return self._reader.transcript(
            channel, self.messages(channel), lambda ts: self.thread(channel, ts)
        )
