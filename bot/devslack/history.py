"""conversations.info, conversations.history and conversations.replies: reading a
channel or a thread back, paged by cursor between `oldest` and `latest` as Slack
pages it, message metadata only when asked for."""

from __future__ import annotations

import base64
import binascii
import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from bot.devslack.calls import SlackError
from bot.devslack.message import Message

if TYPE_CHECKING:
    from bot.devslack.web_api import WebApi

HISTORY_LIMITS = {"conversations.history": (100, 999), "conversations.replies": (1000, 1000)}
"""Each reading method's default and largest page, as Slack documents them."""


class History:
    """The conversations.* methods, reading the Web API's channels and threads."""

    def __init__(self, api: WebApi) -> None:
        self.api = api

    def info(self, args: dict[str, Any]) -> dict[str, Any]:
        """Slack looks conversations up by ID only, never by name."""
        cid = str(args.get("channel") or "")
        if cid not in self.api.channels:
            raise SlackError("channel_not_found")
        return {
            "channel": {
                "id": cid,
                "name": self.api.channels[cid],
                "is_channel": True,
                "is_member": True,
                "is_archived": False,
            }
        }

    def history(self, args: dict[str, Any]) -> dict[str, Any]:
        """A channel's top-level messages, newest first (thread replies stay in threads)."""
        cid = str(args.get("channel") or "")
        if cid not in self.api.channels:
            raise SlackError("channel_not_found")  # by ID only, like every conversations.*
        top = self.api._top[cid][::-1]
        return self._read("conversations.history", top, args, newest_first=True)

    def replies(self, args: dict[str, Any]) -> dict[str, Any]:
        """A thread, its parent first, oldest first; `ts` may name any message in it."""
        cid = str(args.get("channel") or "")
        if cid not in self.api.channels:
            raise SlackError("channel_not_found")
        by_ts = self.api._by_ts
        msg = by_ts.get((cid, str(args.get("ts") or "")))
        if msg is None:
            raise SlackError("thread_not_found")
        parent = by_ts[(cid, msg.thread_ts)] if msg.thread_ts else msg
        thread = [parent, *self.api._replies.get((cid, parent.ts), [])]
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
        out = msg.to_slack(self.api.team_id)
        if msg.thread_ts is not None:
            out["parent_user_id"] = self.api._by_ts[(msg.channel, msg.thread_ts)].user
        metadata = self.api._metadata.get((msg.channel, msg.ts))
        if with_metadata and metadata is not None:
            out["metadata"] = copy.deepcopy(metadata)
        return out


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
