"""Slack's external file upload, as `AsyncWebClient.files_upload_v2` drives it.

Three steps, each checked as Slack checks it (with the codes Slack's method docs list,
where they list one):

1. files.getUploadURLExternal takes `filename` and `length` (an integer number of
   bytes). A missing or blank one, or a length that is no integer or is negative, is
   refused with `invalid_arguments` (Slack's schema check, with its
   "[ERROR] missing required field" message); a length of 0 is `missing_argument`,
   the code Slack documents for it; an `alt_txt` over 1000 characters is
   `alt_txt_too_large`. It answers a file id and an upload URL on the stand-in's own
   port.
2. The bytes are POSTed to that URL, raw (as slack_sdk sends them) or as a multipart
   form (as curl -F does); both are accepted, as on Slack. The answer is 200 with
   "OK - <bytes>" as text/plain. A URL never handed out, or one whose bytes already
   arrived, is 404. Bytes whose length is not the declared `length` are refused
   with a 400 (Slack documents only that any status but 200 is a failure, and
   slack_sdk raises on one) and kept nowhere: the URL stays open, so a retry with
   the right bytes works, and a completion before that finds no file.
3. files.completeUploadExternal takes `files`, a JSON array of {"id", "title"?}, and
   shares them in `channel_id` (or `channels`, comma-separated IDs), in the thread of
   `thread_ts` when given, as one message whose text is `initial_comment` (else its
   `blocks`). A file id never issued, one whose bytes never arrived, or one already
   completed ("this method can only be called once") is `file_not_found`; a channel
   that is no channel ID is `channel_not_found`; a thread_ts that is no top-level
   message of that channel is `thread_not_found`, as chat.postMessage answers it
   (a thread_ts needs exactly one channel, else `invalid_arguments`).
   Nothing is completed unless every check passes. Without a channel the file is
   completed but stays private, as on Slack.
"""

from __future__ import annotations

import json
import mimetypes
import os
import secrets
import string
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.devslack.calls import ApiCall, SlackError
from bot.devslack.chat import content
from bot.devslack.message import Message

if TYPE_CHECKING:
    from bot.devslack.web_api import WebApi

MAX_ALT_TXT = 1000
ID_CHARS = string.ascii_uppercase + string.digits


@dataclass
class Upload:
    """One file as it reached the stand-in: what was declared, its bytes, where it went."""

    id: str
    filename: str
    length: int  # as declared to files.getUploadURLExternal
    alt_txt: str | None = None
    snippet_type: str | None = None
    data: bytes | None = None  # None until the bytes arrive at the upload URL
    title: str | None = None
    channel: str | None = None  # where it was shared (the last, if in several)
    thread_ts: str | None = None
    message_ts: str | None = None  # the message that shared it
    completed: bool = False
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def mimetype(self) -> str:
        return mimetypes.guess_type(self.filename)[0] or "application/octet-stream"

    def to_slack(self, user: str) -> dict[str, Any]:
        """The file object as Slack shows it in a message and in the completion's answer."""
        extension = os.path.splitext(self.filename)[1].lstrip(".").lower()
        return {
            "id": self.id,
            "created": self.created,
            "timestamp": self.created,
            "name": self.filename,
            "title": self.title or self.filename,
            "mimetype": self.mimetype,
            "filetype": self.snippet_type or extension or "binary",
            "user": user,
            "size": len(self.data or b""),
            "mode": "hosted",
            "is_external": False,
        }


@dataclass
class FileMessage(Message):
    """A message that shares files: Slack lists them in its `files` with `upload: true`."""

    files: list[dict[str, Any]] = field(default_factory=list)

    def to_slack(self, team_id: str) -> dict[str, Any]:
        return {**super().to_slack(team_id), "files": [dict(f) for f in self.files], "upload": True}


class FileUploads:
    """The three steps of an external upload, against the Web API's channels and messages."""

    def __init__(self, api: WebApi) -> None:
        self.api = api
        self.uploads: dict[str, Upload] = {}  # file id -> upload, in the order issued
        self._keys: dict[str, str] = {}  # upload URL key -> file id

    def get_upload_url(self, args: dict[str, Any]) -> dict[str, Any]:
        filename = args.get("filename")
        if not isinstance(filename, str) or not filename.strip():
            raise _invalid("missing required field: filename")
        length = _length(args.get("length"))
        alt_txt = args.get("alt_txt")
        if isinstance(alt_txt, str) and len(alt_txt) > MAX_ALT_TXT:
            raise SlackError("alt_txt_too_large")
        file_id = "F" + "".join(secrets.choice(ID_CHARS) for _ in range(10))
        key = secrets.token_urlsafe(24)
        self.uploads[file_id] = Upload(
            file_id,
            filename,
            length,
            alt_txt=str(alt_txt) if alt_txt else None,
            snippet_type=str(args["snippet_type"]) if args.get("snippet_type") else None,
        )
        self._keys[key] = file_id
        return {"upload_url": f"{self.api._base}/upload/v1/{key}", "file_id": file_id}

    async def handle_upload(self, request: web.Request) -> web.Response:
        """The POST of a file's bytes to its upload URL (Slack's files.slack.com)."""
        upload = self.uploads.get(self._keys.get(request.match_info["key"], ""))
        status, text = 404, "Not Found"
        if upload is not None and upload.data is None:
            data = await _body(request)
            if data is None:
                status, text = 400, "Bad Request - no file in the form"
            elif len(data) != upload.length:
                status = 400
                text = f"Bad Request - {len(data)} bytes sent, {upload.length} declared"
            else:
                upload.data = data
                status, text = 200, f"OK - {len(data)}"
        answer: dict[str, Any] = {"ok": status == 200, "status": status}
        if status != 200:
            answer["error"] = text
        file_id = upload.id if upload is not None else None
        call = ApiCall("file_upload", {"file_id": file_id}, answer, self.api._clock())
        self.api.calls.append(call)
        await self.api._notify()
        return web.Response(status=status, text=text, content_type="text/plain")

    def complete(self, args: dict[str, Any]) -> dict[str, Any]:
        named = self._completable(args.get("files"))
        channels = _channel_ids(args)
        for cid in channels:
            if cid not in self.api.channels:
                raise SlackError("channel_not_found")  # by ID only, never by name
        thread_ts = args.get("thread_ts")
        if thread_ts and len(channels) != 1:
            raise _invalid("thread_ts needs exactly one channel")
        thread_ts = self.api._thread_parent(channels[0], thread_ts) if channels else None
        comment = args.get("initial_comment")
        fields = content(  # Slack ignores the blocks when there is a comment
            {"text": comment} if comment else {"blocks": args.get("blocks")}, require=False
        )
        # every check passed: only now does anything change
        for upload, title in named:
            upload.title, upload.completed = title or upload.filename, True
        uploads = [upload for upload, _ in named]
        shared = [u.to_slack(self.api.bot_user_id) for u in uploads]
        for cid in channels:
            msg = self.api._store(
                FileMessage(
                    cid,
                    self.api._next_ts(),
                    thread_ts=thread_ts,
                    user=self.api.bot_user_id,
                    bot_id=self.api.bot_id,
                    files=shared,
                    **fields,
                )
            )
            for upload in uploads:
                upload.channel, upload.thread_ts, upload.message_ts = cid, thread_ts, msg.ts
        return {"files": [dict(f) for f in shared]}

    def _completable(self, value: Any) -> list[tuple[Upload, str | None]]:
        """Each upload `files` names with its title; each uploaded and not yet completed."""
        if isinstance(value, str) and value:
            try:
                value = json.loads(value)
            except ValueError:
                raise _invalid("files must be a JSON array") from None
        if value is None or value == "":
            raise _invalid("missing required field: files")
        if not (isinstance(value, list) and value and all(isinstance(f, dict) for f in value)):
            raise _invalid("files must be an array of objects")
        named: list[tuple[Upload, str | None]] = []
        for item in value:
            upload = self.uploads.get(str(item.get("id") or ""))
            if upload is None or upload.data is None or upload.completed:
                raise SlackError("file_not_found")  # never issued, never uploaded, or spent
            named.append((upload, str(item["title"]) if item.get("title") else None))
        if len({u.id for u, _ in named}) != len(named):
            raise _invalid("a file is named twice in files")
        return named


def _invalid(message: str) -> SlackError:
    return SlackError("invalid_arguments", response_metadata={"messages": [f"[ERROR] {message}"]})


def _length(value: Any) -> int:
    """`length` as Slack reads it: an integer, from a form's text or a JSON number."""
    if value is None or value == "":
        raise _invalid("missing required field: length")
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _invalid("invalid type for field: length")
    try:
        length = int(value)
    except ValueError:
        raise _invalid("invalid type for field: length") from None
    if length == 0:
        raise SlackError("missing_argument")  # Slack's documented answer to a length of 0
    if length < 0:
        raise _invalid("length must be positive")
    return length


def _channel_ids(args: Mapping[str, Any]) -> list[str]:
    """`channel_id`, else `channels` (comma-separated): where to share, maybe nowhere."""
    if args.get("channel_id"):
        return [str(args["channel_id"])]
    return [c.strip() for c in str(args.get("channels") or "").split(",") if c.strip()]


async def _body(request: web.Request) -> bytes | None:
    """The file's bytes: the raw body, or the first file of a multipart form."""
    if request.content_type != "multipart/form-data":
        return await request.read()
    for value in (await request.post()).values():
        if isinstance(value, web.FileField):
            return value.file.read()
    return None
