"""Files GRACE shares in a thread (the weekly report's chart), by the outbox.

`files_upload_v2` is three calls (ask for an upload URL, send the bytes, share
the file); only the last shows anything. A row whose earlier try may have
reached Slack is looked for in the thread by its file name first, so a lost
answer never shares the chart twice.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot import outbox_lookup
from engine.records import OutboxItem

METHOD = "files.completeUploadExternal"  # the call that shares it


async def upload(
    client: AsyncWebClient, channel: str, thread_ts: str, payload: Mapping[str, Any]
) -> None:
    await client.files_upload_v2(
        channel=channel,
        thread_ts=thread_ts,
        file=base64.b64decode(payload["png"]),
        filename=payload["filename"],
        title=payload["title"],
    )


async def shared(client: AsyncWebClient, item: OutboxItem, thread_ts: str, filename: str) -> bool:
    """Whether a file of this name is already shared in the thread."""

    def has_file(message: dict[str, Any]) -> bool:
        return any(f.get("name") == filename for f in message.get("files") or [])

    found = await outbox_lookup.find(client, item, item.channel, thread_ts, has_file)
    return found is not None
