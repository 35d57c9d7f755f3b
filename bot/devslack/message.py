"""A message as the stand-in stores it: what both the Web API and the reader work on."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Message:
    """A message as Slack stores it; ``edits`` holds the earlier versions, oldest first."""

    channel: str
    ts: str
    text: str = ""
    blocks: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    user: str | None = None
    bot_id: str | None = None
    username: str | None = None
    subtype: str | None = None
    thread_ts: str | None = None
    recipient: str | None = None  # ephemeral messages: who saw it
    reply_count: int = 0
    edited_ts: str | None = None
    edits: list[Message] = field(default_factory=list)

    def to_slack(self, team_id: str) -> dict[str, Any]:
        """The message object as Slack returns it in API answers and payloads."""
        out: dict[str, Any] = {"type": "message", "ts": self.ts, "text": self.text, "team": team_id}
        for key in ("user", "bot_id", "username", "subtype", "thread_ts"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.blocks:
            out["blocks"] = copy.deepcopy(self.blocks)
        if self.attachments:
            out["attachments"] = copy.deepcopy(self.attachments)
        if self.reply_count:
            out.update(thread_ts=self.ts, reply_count=self.reply_count)
        if self.edits:
            out["edited"] = {"user": self.user, "ts": self.edited_ts}
        return out

    def _snapshot(self) -> Message:
        return Message(
            self.channel,
            self.ts,
            self.text,
            copy.deepcopy(self.blocks),
            copy.deepcopy(self.attachments),
            self.user,
            self.bot_id,
            self.username,
            self.subtype,
            self.thread_ts,
        )
