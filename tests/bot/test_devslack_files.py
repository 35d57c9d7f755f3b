"""DevSlack's external file upload: files_upload_v2's three calls, checked as Slack checks them."""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.devslack import DevSlack


def png(width: int = 3, height: int = 2) -> bytes:
    """A real PNG (red pixels), with NULs and CR/LF in it as compressed data has."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


PNG = png()


def client_for(slack: DevSlack) -> AsyncWebClient:
    return AsyncWebClient(token=slack.token, base_url=slack.api_url)


async def refused(call: Any) -> dict[str, Any]:
    """Await a Web API call that Slack would refuse and return its answer."""
    with pytest.raises(SlackApiError) as info:
        await call
    return info.value.response.data


async def issue(client: AsyncWebClient, data: bytes = PNG) -> tuple[str, str]:
    """Step 1 for `data`: the file id and upload URL the stand-in hands out."""
    answer = await client.files_getUploadURLExternal(filename="chart.png", length=len(data))
    return answer["file_id"], answer["upload_url"]


async def post_bytes(url: str, data: bytes | aiohttp.FormData) -> tuple[int, str]:
    """Step 2 as a client sends it; the status and text the upload URL answers."""
    async with aiohttp.ClientSession() as session, session.post(url, data=data) as res:
        return res.status, await res.text()


async def uploaded(client: AsyncWebClient, data: bytes = PNG) -> str:
    """Steps 1 and 2: a file whose bytes arrived, not yet completed."""
    file_id, url = await issue(client, data)
    assert await post_bytes(url, data) == (200, f"OK - {len(data)}")
    return file_id


# ------------------------------------------------------------------ the whole upload


async def test_files_upload_v2_shares_the_png_in_the_thread(devslack: DevSlack) -> None:
    client = client_for(devslack)
    parent = await client.chat_postMessage(channel="C0ALERTS", text="Disk full on web-1")
    answer = await client.files_upload_v2(
        channel="C0ALERTS",
        thread_ts=parent["ts"],
        file=PNG,
        filename="chart.png",
        title="Disk usage, last hour",
        initial_comment="Disk usage before the heal",
    )
    file_id = answer["file"]["id"]

    # the three steps, in order, as slack_sdk made them
    assert [c.method for c in devslack.calls[-3:]] == [
        "files.getUploadURLExternal",
        "file_upload",
        "files.completeUploadExternal",
    ]
    assert devslack.calls[-3].args["length"] == str(len(PNG))
    assert devslack.calls[-2].response == {"ok": True, "status": 200}
    assert file_id.startswith("F")
    assert [(f["id"], f["title"]) for f in answer["files"]] == [(file_id, "Disk usage, last hour")]

    # the bytes arrived intact, and the stand-in knows where they went
    upload = devslack.uploads[file_id]
    assert upload.data == PNG
    assert (upload.filename, upload.title) == ("chart.png", "Disk usage, last hour")
    assert (upload.channel, upload.thread_ts, upload.completed) == ("C0ALERTS", parent["ts"], True)

    # the share is a reply in the thread, carrying the file, like any other message
    [share] = devslack.thread("C0ALERTS", parent["ts"])
    assert share.text == "Disk usage before the heal" and share.ts == upload.message_ts
    assert share.user == "U0GRACE" and share.thread_ts == parent["ts"]
    [shown] = share.to_slack("T0GRACE")["files"]
    assert {k: shown[k] for k in ("id", "name", "title", "mimetype", "size")} == {
        "id": file_id,
        "name": "chart.png",
        "title": "Disk usage, last hour",
        "mimetype": "image/png",
        "size": len(PNG),
    }
    assert [m.ts for m in devslack.messages("C0ALERTS")] == [parent["ts"]]
    assert devslack.message("C0ALERTS", parent["ts"]).reply_count == 1
    replies = await client.conversations_replies(channel="C0ALERTS", ts=parent["ts"])
    assert replies["messages"][1]["files"][0]["id"] == file_id
    assert replies["messages"][1]["upload"] is True


async def test_a_file_shared_in_a_channel_and_a_multipart_upload(devslack: DevSlack) -> None:
    """No thread_ts: a top-level message. Bytes sent as a form (curl -F) count too."""
    client = client_for(devslack)
    file_id, url = await issue(client)
    form = aiohttp.FormData()
    form.add_field("filename", PNG, filename="chart.png", content_type="image/png")
    assert await post_bytes(url, form) == (200, f"OK - {len(PNG)}")
    answer = await client.files_completeUploadExternal(
        files=[{"id": file_id}], channel_id="C0OPS", initial_comment="the chart"
    )
    assert answer["files"][0]["title"] == "chart.png"  # no title: Slack shows the name
    [share] = devslack.messages("C0OPS")
    assert share.text == "the chart" and share.thread_ts is None
    assert [f["id"] for f in share.to_slack("T0GRACE")["files"]] == [file_id]
    assert devslack.uploads[file_id].data == PNG


# ------------------------------------------------------------------ files.getUploadURLExternal


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"length": 10}, "invalid_arguments"),
        ({"filename": "  ", "length": 10}, "invalid_arguments"),
        ({"filename": "chart.png"}, "invalid_arguments"),
        ({"filename": "chart.png", "length": "ten"}, "invalid_arguments"),
        ({"filename": "chart.png", "length": "1.5"}, "invalid_arguments"),
        ({"filename": "chart.png", "length": -3}, "invalid_arguments"),
        ({"filename": "chart.png", "length": 0}, "missing_argument"),
        ({"filename": "chart.png", "length": 10, "alt_txt": "x" * 1001}, "alt_txt_too_large"),
    ],
)
async def test_get_upload_url_refusals(
    devslack: DevSlack, params: dict[str, Any], error: str
) -> None:
    data = await refused(client_for(devslack).api_call("files.getUploadURLExternal", params=params))
    assert data["error"] == error
    assert devslack.uploads == {}


async def test_get_upload_url_takes_a_json_length_and_points_at_the_stand_in(
    devslack: DevSlack,
) -> None:
    client = client_for(devslack)
    answer = await client.api_call(
        "files.getUploadURLExternal", json={"filename": "chart.png", "length": 1000}
    )
    assert answer["upload_url"].startswith(devslack.api_url.removesuffix("api/") + "upload/v1/")
    assert devslack.uploads[answer["file_id"]].length == 1000
    refusal = await refused(
        client.api_call("files.getUploadURLExternal", json={"filename": "a", "length": 1.5})
    )
    assert refusal["error"] == "invalid_arguments"


# ------------------------------------------------------------------ the upload URL


async def test_an_unknown_upload_url_is_404(devslack: DevSlack) -> None:
    base = devslack.api_url.removesuffix("api/")
    status, _ = await post_bytes(f"{base}upload/v1/never-issued", PNG)
    assert status == 404
    assert devslack.calls[-1].response == {"ok": False, "status": 404, "error": "Not Found"}


async def test_a_used_upload_url_is_404_and_keeps_the_first_bytes(devslack: DevSlack) -> None:
    client = client_for(devslack)
    file_id, url = await issue(client)
    assert await post_bytes(url, PNG) == (200, f"OK - {len(PNG)}")
    status, _ = await post_bytes(url, bytes(reversed(PNG)))
    assert status == 404
    assert devslack.uploads[file_id].data == PNG


async def test_bytes_of_another_length_are_refused_and_a_retry_works(devslack: DevSlack) -> None:
    client = client_for(devslack)
    file_id, url = await issue(client)
    status, text = await post_bytes(url, PNG[:-1])
    assert status == 400 and f"{len(PNG) - 1} bytes sent, {len(PNG)} declared" in text
    assert devslack.uploads[file_id].data is None
    data = await refused(
        client.files_completeUploadExternal(files=[{"id": file_id}], channel_id="C0ALERTS")
    )
    assert data["error"] == "file_not_found"
    assert await post_bytes(url, PNG) == (200, f"OK - {len(PNG)}")
    assert devslack.uploads[file_id].data == PNG


# ------------------------------------------------------------------ files.completeUploadExternal


async def test_complete_refuses_unknown_file_ids(devslack: DevSlack) -> None:
    client = client_for(devslack)
    data = await refused(
        client.files_completeUploadExternal(files=[{"id": "F0NOSUCHFILE"}], channel_id="C0ALERTS")
    )
    assert data["error"] == "file_not_found"
    assert devslack.messages("C0ALERTS") == []


async def test_complete_refuses_a_file_whose_bytes_never_arrived(devslack: DevSlack) -> None:
    client = client_for(devslack)
    file_id, _ = await issue(client)
    data = await refused(
        client.files_completeUploadExternal(files=[{"id": file_id}], channel_id="C0ALERTS")
    )
    assert data["error"] == "file_not_found"
    assert devslack.messages("C0ALERTS") == [] and not devslack.uploads[file_id].completed


async def test_complete_refuses_unknown_channels_and_completes_nothing(devslack: DevSlack) -> None:
    client = client_for(devslack)
    file_id = await uploaded(client)
    for where in ({"channel_id": "C0NOPE"}, {"channel_id": "alerts"}, {"channels": "C0OPS,C0NOPE"}):
        data = await refused(
            client.api_call(
                "files.completeUploadExternal",
                params={"files": json.dumps([{"id": file_id}]), **where},
            )
        )
        assert data["error"] == "channel_not_found", where
    assert not devslack.uploads[file_id].completed
    assert devslack.messages("C0OPS") == [] and devslack.messages("C0ALERTS") == []
    # the refused attempts spent nothing: the file still completes
    await client.files_completeUploadExternal(files=[{"id": file_id}], channel_id="C0OPS")
    assert len(devslack.messages("C0OPS")) == 1


async def test_complete_refuses_a_thread_ts_that_is_no_thread_of_that_channel(
    devslack: DevSlack,
) -> None:
    client = client_for(devslack)
    parent = await client.chat_postMessage(channel="C0ALERTS", text="card")
    reply = await client.chat_postMessage(channel="C0ALERTS", text="r", thread_ts=parent["ts"])
    file_id = await uploaded(client)
    bad = [
        ("C0OPS", parent["ts"]),  # a message, but of another channel
        ("C0ALERTS", reply["ts"]),  # a reply, not a thread's parent
        ("C0ALERTS", "1600000000.000001"),  # no message at all
    ]
    for channel, thread_ts in bad:
        data = await refused(
            client.files_completeUploadExternal(
                files=[{"id": file_id}], channel_id=channel, thread_ts=thread_ts
            )
        )
        assert data["error"] == "thread_not_found", (channel, thread_ts)
    assert [m.text for m in devslack.thread("C0ALERTS", parent["ts"])] == ["r"]
    assert devslack.messages("C0OPS") == [] and not devslack.uploads[file_id].completed


async def test_complete_twice_is_refused_and_shares_once(devslack: DevSlack) -> None:
    client = client_for(devslack)
    file_id = await uploaded(client)
    await client.files_completeUploadExternal(files=[{"id": file_id}], channel_id="C0ALERTS")
    data = await refused(
        client.files_completeUploadExternal(files=[{"id": file_id}], channel_id="C0ALERTS")
    )
    assert data["error"] == "file_not_found"
    assert len(devslack.messages("C0ALERTS")) == 1


@pytest.mark.parametrize(
    "files", [None, "not json", "[]", json.dumps(["F1"]), json.dumps([{"id": "X"}, {"id": "X"}])]
)
async def test_complete_refuses_a_malformed_files_list(devslack: DevSlack, files: Any) -> None:
    client = client_for(devslack)
    file_id = await uploaded(client)
    if files is not None:
        files = files.replace('"X"', json.dumps(file_id))
    params = {"channel_id": "C0ALERTS", **({"files": files} if files is not None else {})}
    data = await refused(client.api_call("files.completeUploadExternal", params=params))
    assert data["error"] == "invalid_arguments"
    assert devslack.messages("C0ALERTS") == [] and not devslack.uploads[file_id].completed
