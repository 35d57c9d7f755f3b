"""Slack's Web API served on loopback: the calls the bot makes, what they store, and
what a test needs to watch it (see the package's docstring)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import hmac
import json
import math
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from bot.devslack.blockkit import block_errors, view_errors, with_ids
from bot.devslack.message import Message
from bot.devslack.render import Reader

T = TypeVar("T")

TRIGGER_TTL = 3.0  # seconds: Slack expires trigger_ids quickly
MAX_TEXT = 40_000
HISTORY_LIMITS = {"conversations.history": (100, 999), "conversations.replies": (1000, 1000)}
"""Each reading method's default and largest page, as Slack documents them."""


@dataclass
class ApiCall:
    """One Web API call as the stand-in saw it (refused calls included)."""

    method: str
    args: dict[str, Any]
    response: dict[str, Any]
    at: float = 0.0  # the stand-in's clock when it answered, to measure write rates


class SlackError(Exception):
    """A Web API refusal: ``{"ok": false, "error": code, **extra}``."""

    def __init__(
        self, error: str, status: int = 200, headers: Mapping[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(error)
        self.error, self.status, self.extra = error, status, extra
        self.headers = dict(headers or {})


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
        self.views: list[dict[str, Any]] = []
        self._top: dict[str, list[Message]] = {c: [] for c in self.channels}
        self._replies: dict[tuple[str, str], list[Message]] = {}
        self._by_ts: dict[tuple[str, str], Message] = {}
        self._ephemeral: list[Message] = []
        self._triggers: dict[str, tuple[float, bool]] = {}  # id -> (issued at, used)
        self._response_urls: dict[str, dict[str, Any]] = {}
        self._buckets: dict[str, tuple[float, float]] = {}  # channel -> (tokens, at)
        self._failures: dict[str, list[SlackError]] = {}
        self._lost: list[LostAnswer] = []
        self._metadata: dict[tuple[str, str], dict[str, Any]] = {}  # (channel, ts) -> metadata
        # While `outage` is true every Web API call fails, as in a Slack outage: with
        # `outage_status` (a 503 by default; a 429 comes with `outage_retry_after`).
        self.outage = False
        self.outage_status, self.outage_retry_after = 503, 1
        self.poll_interval = 0.05
        self._last_us = 0
        self._seq = 0
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._base = ""
        self._reader = Reader(self.users, self.channels)
        from bot.devslack.files import FileUploads  # here: files.py imports this module

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
        app.router.add_post("/respond/{key}", self._handle_response_url)
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
            "auth.test": self._auth_test,
            "apps.connections.open": self._apps_connections_open,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.delete": self._delete_call,
            "chat.postEphemeral": self._post_ephemeral,
            "views.open": self._views_open,
            "views.update": self._views_update,
            "users.info": self._users_info,
            "usergroups.users.list": self._usergroup_users,
            "conversations.info": self._conversation_info,
            "conversations.history": self._history,
            "conversations.replies": self._replies_call,
            "files.getUploadURLExternal": self._files.get_upload_url,
            "files.completeUploadExternal": self._files.complete,
        }

    def _apps_connections_open(self, _: dict[str, Any]) -> dict[str, Any]:
        """Socket Mode's URL is only for an app-level token (xapp-), which DevSlack
        answers before this: the bot token is refused here, as Slack refuses it, and
        an unknown token before this (invalid_auth)."""
        raise SlackError("not_allowed_token_type")

    def _auth_test(self, _: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": f"https://{self.team_domain}.slack.com/",
            "team": self.team_domain,
            "user": self.users[self.bot_user_id],
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _channel(self, args: Mapping[str, Any]) -> str:
        channel = str(args.get("channel") or "").lstrip("#")
        if channel in self.channels:
            return channel
        named = [cid for cid, name in self.channels.items() if name == channel]
        if not named:
            raise SlackError("channel_not_found")
        return named[0]

    def _content(self, args: Mapping[str, Any], *, require: bool = True) -> dict[str, Any]:
        """Validated text/blocks/attachments, refused the way Slack refuses them."""
        text, blocks, attachments = args.get("text"), args.get("blocks"), args.get("attachments")
        if require and not (text or blocks or attachments):
            raise SlackError("no_text")
        if isinstance(text, str) and len(text) > MAX_TEXT:
            raise SlackError("msg_too_long")
        if attachments is not None and not (
            isinstance(attachments, list) and all(isinstance(a, dict) for a in attachments)
        ):
            raise SlackError("invalid_attachments")
        errs = block_errors(blocks) if blocks is not None else []
        for i, att in enumerate(attachments or []):
            if "blocks" in att:
                errs += block_errors(att["blocks"], f"/attachments/{i}/blocks")
        if errs:
            raise SlackError(
                "invalid_blocks",
                errors=errs,
                response_metadata={"messages": [f"[ERROR] {e}" for e in errs]},
            )
        out: dict[str, Any] = {}
        if text is not None:
            out["text"] = str(text)
        if blocks is not None:
            out["blocks"] = with_ids(blocks)
        if attachments is not None:
            out["attachments"] = [
                {**a, "blocks": with_ids(a["blocks"])} if "blocks" in a else dict(a)
                for a in attachments
            ]
        return out

    def _throttle(self, channel: str) -> None:
        """Opt-in per-channel token bucket for chat.postMessage, answering 429 like Slack."""
        if self.post_rate is None:
            return
        now = self._clock()
        tokens, at = self._buckets.get(channel, (float(self.post_burst), now))
        tokens = min(float(self.post_burst), tokens + (now - at) * self.post_rate)
        if tokens < 1:
            wait = math.ceil((1 - tokens) / self.post_rate)
            self._buckets[channel] = (tokens, now)
            raise SlackError("ratelimited", 429, {"Retry-After": str(wait)})
        self._buckets[channel] = (tokens - 1, now)

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

    def _post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args)
        content = self._content(args)
        metadata = _metadata(args.get("metadata"))
        thread_ts = self._thread_parent(channel, args.get("thread_ts"))
        self._throttle(channel)
        msg = self._store(
            Message(
                channel,
                self._next_ts(),
                thread_ts=thread_ts,
                user=self.bot_user_id,
                bot_id=self.bot_id,
                **content,
            )
        )
        if metadata is not None:
            self._metadata[(channel, msg.ts)] = metadata
        return {"channel": channel, "ts": msg.ts, "message": msg.to_slack(self.team_id)}

    def _own_message(self, args: Mapping[str, Any], refusal: str) -> Message:
        channel = self._channel(args)
        msg = self._by_ts.get((channel, str(args.get("ts") or "")))
        if msg is None:
            raise SlackError("message_not_found")
        if msg.bot_id != self.bot_id:
            raise SlackError(refusal)
        return msg

    def _edit(self, msg: Message, content: Mapping[str, Any]) -> None:
        """Replace a message's content, keeping the previous version (Slack shows '(edited)')."""
        msg.edits.append(msg._snapshot())
        msg.edited_ts = self._next_ts()
        for key, value in content.items():
            setattr(msg, key, value)

    def _update(self, args: dict[str, Any]) -> dict[str, Any]:
        msg = self._own_message(args, "cant_update_message")
        self._edit(msg, self._content(args))
        return {
            "channel": msg.channel,
            "ts": msg.ts,
            "text": msg.text,
            "message": msg.to_slack(self.team_id),
        }

    def _remove(self, msg: Message) -> None:
        del self._by_ts[(msg.channel, msg.ts)]
        self._metadata.pop((msg.channel, msg.ts), None)
        if msg.thread_ts is None:
            self._top[msg.channel].remove(msg)
        else:
            self._replies[(msg.channel, msg.thread_ts)].remove(msg)

    def _delete_call(self, args: dict[str, Any]) -> dict[str, Any]:
        msg = self._own_message(args, "cant_delete_message")
        self._remove(msg)
        return {"channel": msg.channel, "ts": msg.ts}

    def _post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args)
        if not args.get("user"):
            raise SlackError("user_not_found")
        content = self._content(args)
        msg = Message(
            channel,
            self._next_ts(),
            user=self.bot_user_id,
            bot_id=self.bot_id,
            recipient=str(args["user"]),
            thread_ts=args.get("thread_ts"),
            **content,
        )
        self._ephemeral.append(msg)
        return {"message_ts": msg.ts}

    def _check_view(self, view: Any, kinds: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(view, dict) or view.get("type") not in kinds:
            raise SlackError(
                "invalid_arguments", response_metadata={"messages": ["[ERROR] invalid `view` type"]}
            )
        errs = view_errors(view)
        if errs:
            raise SlackError(
                "invalid_arguments", response_metadata={"messages": [f"[ERROR] {e}" for e in errs]}
            )
        self._seq += 1
        return {
            "id": f"V{self._seq:08d}",
            "team_id": self.team_id,
            "app_id": self.app_id,
            "bot_id": self.bot_id,
            "state": {"values": {}},
            "hash": f"{time.time():.0f}.{self._seq}",
            "private_metadata": "",
            "callback_id": "",
            "external_id": "",
            "previous_view_id": None,
            "clear_on_close": False,
            "notify_on_close": False,
            **copy.deepcopy(view),
            "blocks": with_ids(view["blocks"]),
        }

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        trigger = str(args.get("trigger_id") or "")
        if trigger not in self._triggers:
            raise SlackError("invalid_trigger_id")
        issued, used = self._triggers[trigger]
        if used:
            raise SlackError("exchanged_trigger_id")
        if self._clock() - issued > TRIGGER_TTL:
            raise SlackError("expired_trigger_id")
        view = self._check_view(args.get("view"), ("modal",))
        self._triggers[trigger] = (issued, True)
        view["root_view_id"] = view["id"]
        self.views.append(view)
        return {"view": copy.deepcopy(view)}

    def _find_view(self, view_id: str) -> dict[str, Any]:
        for view in self.views:
            if view["id"] == view_id or (view_id and view.get("external_id") == view_id):
                return view
        raise SlackError("not_found")

    def _views_update(self, args: dict[str, Any]) -> dict[str, Any]:
        old = self._find_view(str(args.get("view_id") or args.get("external_id") or ""))
        if args.get("hash") and args["hash"] != old["hash"]:
            raise SlackError("hash_conflict")
        new = self._check_view(args.get("view"), ("modal",))
        new.update(id=old["id"], root_view_id=old["root_view_id"])
        old.clear()
        old.update(new)
        return {"view": copy.deepcopy(old)}

    def _conversation_info(self, args: dict[str, Any]) -> dict[str, Any]:
        """Slack looks conversations up by ID only, never by name."""
        cid = str(args.get("channel") or "")
        if cid not in self.channels:
            raise SlackError("channel_not_found")
        return {
            "channel": {
                "id": cid,
                "name": self.channels[cid],
                "is_channel": True,
                "is_member": True,
                "is_archived": False,
            }
        }

    def _history(self, args: dict[str, Any]) -> dict[str, Any]:
        """A channel's top-level messages, newest first (thread replies stay in threads)."""
        cid = str(args.get("channel") or "")
        if cid not in self.channels:
            raise SlackError("channel_not_found")  # by ID only, like every conversations.*
        return self._read("conversations.history", self._top[cid][::-1], args, newest_first=True)

    def _replies_call(self, args: dict[str, Any]) -> dict[str, Any]:
        """A thread, its parent first, oldest first; `ts` may name any message in it."""
        cid = str(args.get("channel") or "")
        if cid not in self.channels:
            raise SlackError("channel_not_found")
        msg = self._by_ts.get((cid, str(args.get("ts") or "")))
        if msg is None:
            raise SlackError("thread_not_found")
        parent = self._by_ts[(cid, msg.thread_ts)] if msg.thread_ts else msg
        thread = [parent, *self._replies.get((cid, parent.ts), [])]
        return self._read("conversations.replies", thread, args, newest_first=False)

    def _read(
        self, method: str, messages: list[Message], args: dict[str, Any], *, newest_first: bool
    ) -> dict[str, Any]:
        """One page of `messages` between `oldest` and `latest`, as Slack pages them: a
        cursor naming the last ts served, metadata only with include_all_metadata."""
        oldest = _ts_arg(args, "oldest", "invalid_ts_oldest", 0)
        latest = _ts_arg(args, "latest", "invalid_ts_latest", 10**20)
        inclusive = _flag(args.get("inclusive"))
        default, largest = HISTORY_LIMITS[method]
        try:
            limit = int(args.get("limit") or default)
        except (TypeError, ValueError):
            raise SlackError("invalid_arguments") from None
        limit = min(limit, largest) if limit > 0 else default
        after = _cursor_ts(args.get("cursor"))
        window = []
        for m in messages:
            at = _ts_us(m.ts)
            if not (oldest < at < latest or (inclusive and at in (oldest, latest))):
                continue
            if after is not None and (at >= after if newest_first else at <= after):
                continue
            window.append(m)
        page, more = window[:limit], len(window) > limit
        with_metadata = _flag(args.get("include_all_metadata"))
        out: dict[str, Any] = {
            "messages": [self._listed(m, with_metadata) for m in page],
            "has_more": more,
        }
        if more:
            cursor = base64.b64encode(f"next_ts:{page[-1].ts}".encode()).decode()
            out["response_metadata"] = {"next_cursor": cursor}
        return out

    def _listed(self, msg: Message, with_metadata: bool) -> dict[str, Any]:
        out = msg.to_slack(self.team_id)
        if msg.thread_ts is not None:
            out["parent_user_id"] = self._by_ts[(msg.channel, msg.thread_ts)].user
        metadata = self._metadata.get((msg.channel, msg.ts))
        if with_metadata and metadata is not None:
            out["metadata"] = copy.deepcopy(metadata)
        return out

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        uid = str(args.get("user") or "")
        if uid not in self.users:
            raise SlackError("user_not_found")
        name = self.users[uid]
        return {
            "user": {
                "id": uid,
                "team_id": self.team_id,
                "name": name,
                "real_name": name,
                "deleted": False,
                "is_bot": uid == self.bot_user_id,
                "profile": {"display_name": name, "real_name": name},
            }
        }

    def _usergroup_users(self, args: dict[str, Any]) -> dict[str, Any]:
        group = str(args.get("usergroup") or "")
        if group not in self.usergroups:
            raise SlackError("no_such_subteam")
        return {"users": list(self.usergroups[group])}

    # ------------------------------------------------------------ response_url

    def _new_response_url(self, channel: str, user: str, message_ts: str | None) -> str:
        key = secrets.token_urlsafe(16)
        self._response_urls[key] = {"channel": channel, "user": user, "message_ts": message_ts}
        return f"{self._base}/respond/{key}"

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        """What Slack does with a POST to a response_url (Bolt's ``respond()``)."""
        origin = self._response_urls.get(request.match_info["key"])
        body: dict[str, Any] = {}
        try:
            if origin is None:
                raise SlackError("invalid_token", 404)
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("a response_url takes a JSON object")
            response = {"ok": True}
            self._respond(origin, body)
        except ValueError:
            response = {"ok": False, "error": "invalid_payload"}
        except SlackError as e:
            response = {"ok": False, "error": e.error, **e.extra}
        self.calls.append(ApiCall("response_url", body, response))
        await self._notify()
        return web.json_response(response, status=200 if response["ok"] else 400)

    def _respond(self, origin: Mapping[str, Any], body: Mapping[str, Any]) -> None:
        channel, original = origin["channel"], None
        if origin["message_ts"]:
            original = self._by_ts.get((channel, origin["message_ts"]))
        if body.get("delete_original") and original is not None:
            self._remove(original)
            return
        content = self._content(body)
        if body.get("replace_original") and original is not None:
            self._edit(original, content)
        elif body.get("response_type") == "in_channel":
            thread_ts = self._thread_parent(channel, body.get("thread_ts"))
            self._store(
                Message(
                    channel,
                    self._next_ts(),
                    user=self.bot_user_id,
                    bot_id=self.bot_id,
                    thread_ts=thread_ts,
                    **content,
                )
            )
        else:
            self._ephemeral.append(
                Message(
                    channel,
                    self._next_ts(),
                    user=self.bot_user_id,
                    bot_id=self.bot_id,
                    recipient=origin["user"],
                    **content,
                )
            )

    # ------------------------------------------------------------ reading

    def render_message(self, message: Message) -> str:
        """Block Kit as a person reads it; ``text`` only when there is nothing richer."""
        return self._reader.message(message)

    def transcript(self, channel: str) -> str:
        """The channel as a reader scrolls it: each message, its edits, its thread below it."""
        return self._reader.transcript(
            channel, self.messages(channel), lambda ts: self.thread(channel, ts)
        )


def _metadata(value: Any) -> dict[str, Any] | None:
    """Message metadata as Slack takes it: an event_type and an event_payload object."""
    if value is None or value == "":
        return None
    if not isinstance(value, dict):
        raise SlackError("invalid_metadata_format")
    event_type, payload = value.get("event_type"), value.get("event_payload")
    if not (isinstance(event_type, str) and event_type and isinstance(payload, dict)):
        raise SlackError("invalid_metadata_schema")
    return {"event_type": event_type, "event_payload": copy.deepcopy(payload)}


def _flag(value: Any) -> bool:
    """A boolean argument as clients send it: true, "true" or "1"."""
    return str(value).lower() in ("1", "true")


def _ts_us(ts: str) -> int:
    """A Slack ts in whole microseconds, so that ts compare exactly."""
    seconds, _, fraction = ts.partition(".")
    if not seconds.isdigit() or not (fraction.isdigit() or fraction == ""):
        raise ValueError(ts)
    return int(seconds) * 1_000_000 + int(fraction.ljust(6, "0")[:6] or 0)


def _ts_arg(args: Mapping[str, Any], name: str, error: str, default: int) -> int:
    value = args.get(name)
    if value in (None, ""):
        return default
    try:
        return _ts_us(str(value))
    except ValueError:
        raise SlackError(error) from None


def _cursor_ts(cursor: Any) -> int | None:
    """The ts a cursor from `_read` names; Slack refuses any other cursor."""
    if not cursor:
        return None
    try:
        kind, _, ts = base64.b64decode(str(cursor), validate=True).decode().partition(":")
        if kind != "next_ts":
            raise ValueError(kind)
        return _ts_us(ts)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise SlackError("invalid_cursor") from None
