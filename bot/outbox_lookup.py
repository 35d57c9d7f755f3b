"""Finding a message the outbox posted whose answer was lost.

Every message GRACE posts carries message metadata naming its outbox row. When
a post's answer never came (a crash, a timeout, a dropped connection, a 5xx),
the row's next attempt looks for a message so tagged in the channel's history
or the thread, from the row's creation on: found, it is adopted instead of
being posted again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from engine.records import OutboxItem

log = logging.getLogger(__name__)

EVENT_TYPE = "grace_outbox"  # the metadata event every message GRACE posts carries
LOOKBACK = timedelta(minutes=5)  # before a row's creation: Slack's clock and ours may differ
LOOKUP_PAGE, LOOKUP_PAGES = 200, 5  # at most 1,000 messages searched for one lost answer


def tag(item: OutboxItem) -> dict[str, Any]:
    """The metadata naming the row a message is for; its time keeps another GRACE's
    row of that number (a staging bot in the channel, a fresh database) apart."""
    queued = item.created_at.isoformat(timespec="microseconds")
    return {"event_type": EVENT_TYPE, "event_payload": {"outbox_id": item.id, "queued": queued}}


def tagged(message: dict[str, Any], item: OutboxItem) -> bool:
    metadata = message.get("metadata") or {}
    payload, want = metadata.get("event_payload") or {}, tag(item)
    return metadata.get("event_type") == EVENT_TYPE and all(
        payload.get(key) == value for key, value in want["event_payload"].items()
    )


async def find(
    client: AsyncWebClient,
    item: OutboxItem,
    channel: str,
    thread_ts: str | None,
    match: Callable[[dict[str, Any]], bool] | None = None,
) -> str | None:
    """The ts of the message this row already became, if Slack has it: searched
    from the row's creation on, in the thread it goes in or else the channel,
    for its tag or what `match` recognises (a shared file has no metadata).
    A 429 or 5xx is raised (the row is retried); any other refusal is None."""
    recognised = match or (lambda message: tagged(message, item))
    args: dict[str, Any] = {
        "channel": channel,
        "oldest": f"{(item.created_at - LOOKBACK).timestamp():.6f}",
        "limit": LOOKUP_PAGE,
        "include_all_metadata": True,
    }
    for _ in range(LOOKUP_PAGES):
        try:
            if thread_ts is None:
                page = await client.conversations_history(**args)
            else:
                page = await client.conversations_replies(ts=thread_ts, **args)
        except SlackApiError as exc:
            if exc.response.status_code == 429 or exc.response.status_code >= 500:
                raise
            # Refused for good (a scope, a channel): better seen twice than never.
            log.warning("cannot look up Slack write %s: %s", item.id, exc.response.get("error"))
            return None
        for message in page.get("messages") or []:
            if recognised(message):
                return str(message["ts"])
        args["cursor"] = (page.get("response_metadata") or {}).get("next_cursor")
        if not args["cursor"]:
            return None
    log.warning("Slack write %s not found in the newest %d messages", item.id, LOOKUP_PAGE)
    return None
