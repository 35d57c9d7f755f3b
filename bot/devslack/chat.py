"""chat.postMessage, chat.update, chat.delete and chat.postEphemeral, with the
checks Slack makes of a message's content and metadata, and the opt-in
per-channel rate limit of chat.postMessage."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from bot.devslack.blockkit import block_errors, with_ids
from bot.devslack.calls import SlackError
from bot.devslack.message import Message

if TYPE_CHECKING:
    from bot.devslack.web_api import WebApi

MAX_TEXT = 40_000


class Chat:
    """The chat.* methods, writing to the Web API's channels and threads."""

    def __init__(self, api: WebApi) -> None:
        self.api = api
        self._buckets: dict[str, tuple[float, float]] = {}  # channel -> (tokens, at)

    def post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        api = self.api
        channel = api._channel(args)
        fields = content(args)
        meta = metadata(args.get("metadata"))
        thread_ts = api._thread_parent(channel, args.get("thread_ts"))
        self._throttle(channel)
        msg = api._store(
            Message(
                channel,
                api._next_ts(),
                thread_ts=thread_ts,
                user=api.bot_user_id,
                bot_id=api.bot_id,
                **fields,
            )
        )
        if meta is not None:
            api._metadata[(channel, msg.ts)] = meta
        return {"channel": channel, "ts": msg.ts, "message": msg.to_slack(api.team_id)}

    def update(self, args: dict[str, Any]) -> dict[str, Any]:
        msg = self._own_message(args, "cant_update_message")
        self.api._edit(msg, content(args))
        return {
            "channel": msg.channel,
            "ts": msg.ts,
            "text": msg.text,
            "message": msg.to_slack(self.api.team_id),
        }

    def delete(self, args: dict[str, Any]) -> dict[str, Any]:
        msg = self._own_message(args, "cant_delete_message")
        self.api._remove(msg)
        return {"channel": msg.channel, "ts": msg.ts}

    def post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        api = self.api
        channel = api._channel(args)
        if not args.get("user"):
            raise SlackError("user_not_found")
        fields = content(args)
        msg = Message(
            channel,
            api._next_ts(),
            user=api.bot_user_id,
            bot_id=api.bot_id,
            recipient=str(args["user"]),
            thread_ts=args.get("thread_ts"),
            **fields,
        )
        api._ephemeral.append(msg)
        return {"message_ts": msg.ts}

    def _own_message(self, args: Mapping[str, Any], refusal: str) -> Message:
        channel = self.api._channel(args)
        msg = self.api._by_ts.get((channel, str(args.get("ts") or "")))
        if msg is None:
            raise SlackError("message_not_found")
        if msg.bot_id != self.api.bot_id:
            raise SlackError(refusal)
        return msg

    def _throttle(self, channel: str) -> None:
        """Opt-in per-channel token bucket for chat.postMessage, answering 429 like Slack."""
        rate, burst = self.api.post_rate, self.api.post_burst
        if rate is None:
            return
        now = self.api._clock()
        tokens, at = self._buckets.get(channel, (float(burst), now))
        tokens = min(float(burst), tokens + (now - at) * rate)
        if tokens < 1:
            wait = math.ceil((1 - tokens) / rate)
            self._buckets[channel] = (tokens, now)
            raise SlackError("ratelimited", 429, {"Retry-After": str(wait)})
        self._buckets[channel] = (tokens - 1, now)


def content(args: Mapping[str, Any], *, require: bool = True) -> dict[str, Any]:
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


def metadata(value: Any) -> dict[str, Any] | None:
    """Message metadata as Slack takes it: an event_type and an event_payload object."""
    if value is None or value == "":
        return None
    if not isinstance(value, dict):
        raise SlackError("invalid_metadata_format")
    event_type, payload = value.get("event_type"), value.get("event_payload")
    if not (isinstance(event_type, str) and event_type and isinstance(payload, dict)):
        raise SlackError("invalid_metadata_schema")
    return {"event_type": event_type, "event_payload": copy.deepcopy(payload)}
