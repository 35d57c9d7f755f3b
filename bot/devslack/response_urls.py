"""Response URLs: the URL Slack sends with a command or a click, and what Slack does
with a POST to it (Bolt's ``respond()``): an ephemeral answer, a message in the
channel, or the original message replaced or deleted."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.devslack.calls import ApiCall, SlackError
from bot.devslack.chat import content
from bot.devslack.message import Message

if TYPE_CHECKING:
    from bot.devslack.web_api import WebApi


class ResponseUrls:
    """The response URLs handed out, each with where it came from."""

    def __init__(self, api: WebApi) -> None:
        self.api = api
        self._origins: dict[str, dict[str, Any]] = {}  # URL key -> channel, user, message_ts

    def issue(self, channel: str, user: str, message_ts: str | None) -> str:
        key = secrets.token_urlsafe(16)
        self._origins[key] = {"channel": channel, "user": user, "message_ts": message_ts}
        return f"{self.api._base}/respond/{key}"

    async def handle(self, request: web.Request) -> web.Response:
        """What Slack does with a POST to a response_url."""
        origin = self._origins.get(request.match_info["key"])
        body: dict[str, Any] = {}
        try:
            if origin is None:
                raise SlackError("invalid_token", 404)
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("a response_url takes a JSON object")
            response: dict[str, Any] = {"ok": True}
            self._respond(origin, body)
        except ValueError:
            response = {"ok": False, "error": "invalid_payload"}
        except SlackError as e:
            response = {"ok": False, "error": e.error, **e.extra}
        self.api.calls.append(ApiCall("response_url", body, response))
        await self.api._notify()
        return web.json_response(response, status=200 if response["ok"] else 400)

    def _respond(self, origin: Mapping[str, Any], body: Mapping[str, Any]) -> None:
        api = self.api
        channel, original = origin["channel"], None
        if origin["message_ts"]:
            original = api._by_ts.get((channel, origin["message_ts"]))
        if body.get("delete_original") and original is not None:
            api._remove(original)
            return
        fields = content(body)
        if body.get("replace_original") and original is not None:
            api._edit(original, fields)
        elif body.get("response_type") == "in_channel":
            thread_ts = api._thread_parent(channel, body.get("thread_ts"))
            api._store(
                Message(
                    channel,
                    api._next_ts(),
                    user=api.bot_user_id,
                    bot_id=api.bot_id,
                    thread_ts=thread_ts,
                    **fields,
                )
            )
        else:
            api._ephemeral.append(
                Message(
                    channel,
                    api._next_ts(),
                    user=api.bot_user_id,
                    bot_id=api.bot_id,
                    recipient=origin["user"],
                    **fields,
                )
            )
