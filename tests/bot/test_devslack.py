"""DevSlack behaves like Slack: real slack_sdk clients in, signed deliveries out."""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot.devslack import RULE, Delivery, DevSlack, Message
from tests.bot.conftest import DevSlackFactory

TS = re.compile(r"^\d{10}\.\d{6}$")


def client_for(slack: DevSlack, token: str | None = "") -> AsyncWebClient:
    return AsyncWebClient(token=slack.token if token == "" else token, base_url=slack.api_url)


async def refused(call: Any) -> dict[str, Any]:
    """Await a Web API call that Slack would refuse and return its answer."""
    with pytest.raises(SlackApiError) as info:
        await call
    return info.value.response.data


def button(label: str, action_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": label},
        "action_id": action_id,
        **extra,
    }


CARD = [
    {"type": "header", "text": {"type": "plain_text", "text": "Disk full on web-1"}},
    {
        "type": "section",
        "text": {
            "type": "mrkdwn",
            "text": "*Diagnosis:* logs filled /var &amp; <!channel> by <@U0ALICE>",
        },
    },
    {
        "type": "section",
        "fields": [
            {"type": "mrkdwn", "text": "*Severity*\ncritical"},
            {"type": "mrkdwn", "text": "*Tier*\n2"},
        ],
    },
    {
        "type": "context",
        "elements": [
            {"type": "mrkdwn", "text": "Incident 42"},
            {"type": "mrkdwn", "text": "<https://x.example/42|runbook>"},
        ],
    },
    {"type": "divider"},
    {
        "type": "actions",
        "block_id": "decide",
        "elements": [
            button("Approve", "approve", value="42:abc", style="primary"),
            button("Reject", "reject", value="42:abc", style="danger"),
        ],
    },
]


# ------------------------------------------------------------------ a tiny receiving app


@dataclass
class Received:
    headers: dict[str, str]
    body: str


@dataclass
class Receiver:
    """An aiohttp app standing where the bot's /slack/events would be, recording requests."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(Received(dict(request.headers), await request.text()))
        return web.Response(text="")

    def last_is_signed_with(self, secret: str) -> bool:
        last = self.requests[-1]
        return SignatureVerifier(secret).is_valid(
            last.body,
            last.headers.get("X-Slack-Request-Timestamp"),
            last.headers.get("X-Slack-Signature"),
        )


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}/slack/events"


@pytest.fixture
async def receiver(devslack: DevSlack) -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/slack/events", rec.handle)
    runner, rec.url = await serve(app)
    devslack.connect(rec.url)
    yield rec
    await runner.cleanup()


# ------------------------------------------------------------------ auth and dispatch


async def test_auth_test_answers_like_slack(devslack: DevSlack) -> None:
    answer = await client_for(devslack).auth_test()
    assert answer.data == {
        "ok": True,
        "url": "https://grace-dev.slack.com/",
        "team": "grace-dev",
        "user": "grace",
        "team_id": "T0GRACE",
        "user_id": "U0GRACE",
        "bot_id": "B0GRACE",
        "is_enterprise_install": False,
    }
    assert devslack.api_url.startswith("http://127.0.0.1:") and devslack.api_url.endswith("/api/")


async def test_missing_token_is_not_authed_and_wrong_token_is_invalid_auth(
    devslack: DevSlack,
) -> None:
    assert (await refused(client_for(devslack, None).auth_test()))["error"] == "not_authed"
    wrong = client_for(devslack, "xoxb-wrong")
    assert (await refused(wrong.auth_test()))["error"] == "invalid_auth"
    data = await refused(wrong.chat_postMessage(channel="C0ALERTS", text="hi"))
    assert data == {"ok": False, "error": "invalid_auth"}
    assert devslack.messages("C0ALERTS") == []
    # a token in a form body counts too, as on Slack
    nobody = client_for(devslack, None)
    ok = await nobody.api_call("auth.test", data={"token": devslack.token})
    assert ok["user_id"] == "U0GRACE"


async def test_unknown_method_is_404_unknown_method(devslack: DevSlack) -> None:
    with pytest.raises(SlackApiError) as info:
        await client_for(devslack).api_call("chat.postMesage", json={"channel": "C0ALERTS"})
    assert info.value.response.status_code == 404
    assert info.value.response["error"] == "unknown_method"


# ------------------------------------------------------------------ messages


async def test_post_message_round_trip_with_json_and_form_bodies(devslack: DevSlack) -> None:
    client = client_for(devslack)
    first = await client.chat_postMessage(channel="C0ALERTS", text="hello", blocks=CARD)
    # form-encoded, blocks as a JSON string, channel by name: Slack accepts all of it
    second = await client.api_call(
        "chat.postMessage",
        data={"channel": "#alerts", "text": "form", "blocks": json.dumps(CARD[:1])},
    )
    assert first["channel"] == second["channel"] == "C0ALERTS"
    assert TS.match(first["ts"]) and TS.match(second["ts"])
    assert float(second["ts"]) > float(first["ts"])
    assert first["message"]["bot_id"] == "B0GRACE" and first["message"]["user"] == "U0GRACE"
    stored = devslack.messages("C0ALERTS")
    assert [m.ts for m in stored] == [first["ts"], second["ts"]]
    assert stored[1].blocks[0]["text"]["text"] == "Disk full on web-1"
    # Slack gives every block a block_id and keeps the ones it was given
    assert all(b.get("block_id") for b in stored[0].blocks)
    assert stored[0].blocks[5]["block_id"] == "decide"
    assert devslack.message("C0ALERTS", first["ts"]) is stored[0]
    assert devslack.messages("C0OPS") == []


async def test_thread_replies_need_an_existing_top_level_message(devslack: DevSlack) -> None:
    client = client_for(devslack)
    parent = await client.chat_postMessage(channel="C0ALERTS", text="card")
    r1 = await client.chat_postMessage(channel="C0ALERTS", text="step 1", thread_ts=parent["ts"])
    r2 = await client.chat_postMessage(channel="C0ALERTS", text="step 2", thread_ts=parent["ts"])
    assert [m.text for m in devslack.thread("C0ALERTS", parent["ts"])] == ["step 1", "step 2"]
    assert [m.ts for m in devslack.messages("C0ALERTS")] == [parent["ts"]]
    assert devslack.message("C0ALERTS", r2["ts"]).thread_ts == parent["ts"]
    assert r1["message"]["thread_ts"] == parent["ts"]
    for bad in ("1600000000.000001", r1["ts"]):
        data = await refused(client.chat_postMessage(channel="C0ALERTS", text="x", thread_ts=bad))
        assert data["error"] == "thread_not_found"
    # a thread in another channel is not this channel's thread
    data = await refused(client.chat_postMessage(channel="C0OPS", text="x", thread_ts=parent["ts"]))
    assert data["error"] == "thread_not_found"
    assert len(devslack.thread("C0ALERTS", parent["ts"])) == 2


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"channel": "C0NOPE", "text": "hi"}, "channel_not_found"),
        ({"channel": "C0ALERTS"}, "no_text"),
        ({"channel": "C0ALERTS", "text": ""}, "no_text"),
        ({"channel": "C0ALERTS", "text": "x" * 40_001}, "msg_too_long"),
    ],
)
@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")
async def test_post_message_refusals(
    devslack: DevSlack, kwargs: dict[str, Any], error: str
) -> None:
    data = await refused(client_for(devslack).chat_postMessage(**kwargs))
    assert data["error"] == error
    assert devslack.messages("C0ALERTS") == []
    assert devslack.calls[-1].response["error"] == error


async def test_text_at_the_limit_is_accepted(devslack: DevSlack) -> None:
    await client_for(devslack).chat_postMessage(channel="C0ALERTS", text="x" * 40_000)
    assert len(devslack.messages("C0ALERTS")[0].text) == 40_000


async def test_update_replaces_content_and_keeps_the_previous_version(devslack: DevSlack) -> None:
    client = client_for(devslack)
    posted = await client.chat_postMessage(channel="C0ALERTS", text="awaiting", blocks=CARD)
    done = [{"type": "section", "text": {"type": "mrkdwn", "text": "Approved by <@U0ALICE>"}}]
    updated = await client.chat_update(
        channel="C0ALERTS", ts=posted["ts"], text="approved", blocks=done
    )
    assert updated["ts"] == posted["ts"] and updated["text"] == "approved"
    assert updated["message"]["edited"]["user"] == "U0GRACE"
    msg = devslack.message("C0ALERTS", posted["ts"])
    assert msg.text == "approved" and msg.blocks[0]["text"]["text"] == "Approved by <@U0ALICE>"
    assert [e.text for e in msg.edits] == ["awaiting"]
    assert len(msg.edits[0].blocks) == len(CARD)
    assert devslack.messages("C0ALERTS") == [msg]

    data = await refused(client.chat_update(channel="C0ALERTS", ts="1600000000.000001", text="x"))
    assert data["error"] == "message_not_found"
    data = await refused(client.chat_update(channel="C0NOPE", ts=posted["ts"], text="x"))
    assert data["error"] == "channel_not_found"
    big = [{"type": "divider"}] * 51
    data = await refused(
        client.chat_update(channel="C0ALERTS", ts=posted["ts"], text="x", blocks=big)
    )
    assert data["error"] == "invalid_blocks"
    assert len(msg.edits) == 1 and msg.text == "approved"


async def test_update_of_someone_elses_message_is_refused(
    devslack: DevSlack, receiver: Receiver
) -> None:
    delivery = await devslack.post_message_as("C0ALERTS", "disk full", user="U0ALICE")
    ts = delivery.payload()["event"]["ts"]
    data = await refused(client_for(devslack).chat_update(channel="C0ALERTS", ts=ts, text="mine"))
    assert data["error"] == "cant_update_message"
    assert devslack.message("C0ALERTS", ts).text == "disk full"


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")
async def test_ephemeral_messages_are_kept_per_user(devslack: DevSlack) -> None:
    client = client_for(devslack)
    answer = await client.chat_postEphemeral(channel="C0OPS", user="U0BOB", text="not allowed")
    await client.chat_postEphemeral(channel="C0OPS", user="U0ALICE", blocks=CARD[:1])
    assert TS.match(answer["message_ts"])
    assert [m.text for m in devslack.ephemerals("U0BOB")] == ["not allowed"]
    assert [m.recipient for m in devslack.ephemerals()] == ["U0BOB", "U0ALICE"]
    assert devslack.messages("C0OPS") == []
    data = await refused(client.chat_postEphemeral(channel="C0OPS", user="U0BOB"))
    assert data["error"] == "no_text"


# ------------------------------------------------------------------ Block Kit limits


def _section(n: int) -> list[dict[str, Any]]:
    return [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * n}}]


def _fields(count: int, size: int = 1) -> list[dict[str, Any]]:
    return [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * size}] * count}]


def _actions(count: int, **button_extra: Any) -> list[dict[str, Any]]:
    return [
        {
            "type": "actions",
            "elements": [
                button(button_extra.pop("label", "Go"), f"a{i}", **button_extra)
                for i in range(count)
            ],
        }
    ]


LIMITS: list[tuple[str, Any, str]] = [
    # (what, blocks builder taking n; refused at limit + 1, json-pointer in Slack's message)
    ("50 blocks", lambda n: [{"type": "divider"}] * n, 50, "/blocks"),
    ("section text", _section, 3000, "/blocks/0/text/text"),
    ("field text", lambda n: _fields(1, n), 2000, "/blocks/0/fields/0/text"),
    ("10 fields", _fields, 10, "/blocks/0/fields"),
    (
        "header text",
        lambda n: [{"type": "header", "text": {"type": "plain_text", "text": "h" * n}}],
        150,
        "/blocks/0/text/text",
    ),
    ("button text", lambda n: _actions(1, label="b" * n), 75, "/blocks/0/elements/0/text/text"),
    ("button value", lambda n: _actions(1, value="v" * n), 2000, "/blocks/0/elements/0/value"),
    (
        "action_id",
        lambda n: [{"type": "actions", "elements": [button("Go", "a" * n)]}],
        255,
        "/blocks/0/elements/0/action_id",
    ),
    ("block_id", lambda n: [{"type": "divider", "block_id": "b" * n}], 255, "/blocks/0/block_id"),
    ("25 elements", _actions, 25, "/blocks/0/elements"),
]  # type: ignore[list-item]


@pytest.mark.parametrize(("what", "build", "limit", "pointer"), LIMITS, ids=[c[0] for c in LIMITS])
async def test_block_limits_are_enforced_exactly(
    devslack: DevSlack, what: str, build: Any, limit: int, pointer: str
) -> None:
    client = client_for(devslack)
    await client.chat_postMessage(channel="C0ALERTS", text="at limit", blocks=build(limit))
    data = await refused(
        client.chat_postMessage(channel="C0ALERTS", text="over", blocks=build(limit + 1))
    )
    assert data["error"] == "invalid_blocks"
    messages = data["response_metadata"]["messages"]
    assert any(
        m.startswith("[ERROR] ") and m.endswith(f"[json-pointer:{pointer}]") for m in messages
    ), messages
    assert [m.text for m in devslack.messages("C0ALERTS")] == ["at limit"]
    assert devslack.calls[-1].method == "chat.postMessage"
    assert devslack.calls[-1].response["error"] == "invalid_blocks"


async def test_malformed_blocks_are_refused(devslack: DevSlack) -> None:
    client = client_for(devslack)
    cases = [
        [{"type": "sektion", "text": {"type": "mrkdwn", "text": "x"}}],
        [{"type": "header", "text": {"type": "mrkdwn", "text": "not plain"}}],
        [{"type": "section"}],
        [{"type": "divider", "block_id": "same"}, {"type": "divider", "block_id": "same"}],
        [{"type": "actions", "elements": [button("A", "dup"), button("B", "dup")]}],
    ]
    for blocks in cases:
        data = await refused(client.chat_postMessage(channel="C0ALERTS", text="t", blocks=blocks))
        assert data["error"] == "invalid_blocks", blocks
    data = await refused(
        client.api_call("chat.postMessage", data={"channel": "C0ALERTS", "blocks": "[not json"})
    )
    assert data["error"] == "invalid_blocks_format"
    assert devslack.messages("C0ALERTS") == []


# ------------------------------------------------------------------ views and triggers


MODAL = {
    "type": "modal",
    "callback_id": "reject_reason",
    "title": {"type": "plain_text", "text": "Reject"},
    "submit": {"type": "plain_text", "text": "Reject"},
    "blocks": [
        {
            "type": "input",
            "block_id": "reason",
            "label": {"type": "plain_text", "text": "Why?"},
            "element": {"type": "plain_text_input", "action_id": "text"},
        }
    ],
}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_views_open_accepts_only_fresh_issued_triggers(
    devslack_factory: DevSlackFactory,
) -> None:
    clock = FakeClock()
    slack = await devslack_factory(clock=clock)
    client = client_for(slack)
    trigger = slack.issue_trigger_id()
    opened = await client.views_open(trigger_id=trigger, view=MODAL)
    assert opened["view"]["id"].startswith("V") and opened["view"]["callback_id"] == "reject_reason"
    assert [v["id"] for v in slack.views] == [opened["view"]["id"]]

    assert (await refused(client.views_open(trigger_id=trigger, view=MODAL)))[
        "error"
    ] == "exchanged_trigger_id"
    assert (await refused(client.views_open(trigger_id="123.456.abc", view=MODAL)))[
        "error"
    ] == "invalid_trigger_id"
    stale = slack.issue_trigger_id()
    clock.now += 3.01
    assert (await refused(client.views_open(trigger_id=stale, view=MODAL)))[
        "error"
    ] == "expired_trigger_id"
    in_time = slack.issue_trigger_id()
    clock.now += 2.99
    await client.views_open(trigger_id=in_time, view=MODAL)
    assert len(slack.views) == 2


@pytest.mark.parametrize(
    "view",
    [
        {**MODAL, "title": {"type": "plain_text", "text": "t" * 25}},
        {**MODAL, "blocks": [{"type": "divider"}] * 101},
        {**MODAL, "type": "home"},
    ],
)
async def test_views_open_refuses_invalid_views(devslack: DevSlack, view: dict[str, Any]) -> None:
    client = client_for(devslack)
    data = await refused(client.views_open(trigger_id=devslack.issue_trigger_id(), view=view))
    assert data["error"] == "invalid_arguments"
    assert devslack.views == []


async def test_views_at_their_limits_are_accepted(devslack: DevSlack) -> None:
    view = {
        **MODAL,
        "title": {"type": "plain_text", "text": "t" * 24},
        "blocks": [{"type": "divider"}] * 100,
    }
    await client_for(devslack).views_open(trigger_id=devslack.issue_trigger_id(), view=view)
    assert len(devslack.views[0]["blocks"]) == 100


async def test_views_publish_and_directory_lookups(devslack_factory: DevSlackFactory) -> None:
    slack = await devslack_factory(usergroups={"S0SRE": ["U0ALICE", "U0BOB"]})
    client = client_for(slack)
    home = {"type": "home", "blocks": CARD[:1]}
    await client.views_publish(user_id="U0ALICE", view=home)
    assert slack.homes["U0ALICE"]["blocks"][0]["type"] == "header"
    assert (await client.users_info(user="U0BOB"))["user"]["name"] == "bob"
    assert (await refused(client.users_info(user="U0NOBODY")))["error"] == "user_not_found"
    assert (await client.usergroups_users_list(usergroup="S0SRE"))["users"] == ["U0ALICE", "U0BOB"]
    data = await refused(client.usergroups_users_list(usergroup="S0NONE"))
    assert data["error"] == "no_such_subteam"


# ------------------------------------------------------------------ recording, waiting, limits


async def test_every_call_is_recorded_in_order_with_parsed_args(devslack: DevSlack) -> None:
    client = client_for(devslack)
    await client.chat_postMessage(channel="C0ALERTS", text="one")
    await refused(client.chat_postMessage(channel="C0NOPE", text="two"))
    await refused(client_for(devslack, "bad").auth_test())
    assert [(c.method, c.response["ok"]) for c in devslack.calls] == [
        ("chat.postMessage", True),
        ("chat.postMessage", False),
        ("auth.test", False),
    ]
    assert devslack.calls[0].args == {"channel": "C0ALERTS", "text": "one"}
    assert devslack.calls[1].response == {"ok": False, "error": "channel_not_found"}
    assert all("token" not in c.args for c in devslack.calls)


async def test_wait_for_wakes_on_api_calls_and_times_out_with_a_reason(devslack: DevSlack) -> None:
    client = client_for(devslack)
    devslack.poll_interval = 60  # only a state-change notification can wake the waiter in time

    def posted() -> Message | None:
        msgs = devslack.messages("C0OPS")
        return msgs[0] if msgs else None

    waiter = asyncio.create_task(devslack.wait_for(posted, timeout=60))
    await client.chat_postMessage(channel="C0OPS", text="late")
    assert (await asyncio.wait_for(waiter, timeout=5)).text == "late"

    def never() -> bool:
        return False

    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"never still false after 0\.2s.*chat\.postMessage"):
        await devslack.wait_for(never, timeout=0.2)
    assert time.monotonic() - started < 2


async def test_rate_limits_answer_429_with_retry_after(devslack_factory: DevSlackFactory) -> None:
    clock = FakeClock()
    slack = await devslack_factory(post_rate_per_channel=1.0, post_burst=2, clock=clock)
    client = client_for(slack)
    for i in range(2):
        await client.chat_postMessage(channel="C0ALERTS", text=f"burst {i}")
    with pytest.raises(SlackApiError) as info:
        await client.chat_postMessage(channel="C0ALERTS", text="too fast")
    assert info.value.response.status_code == 429
    assert info.value.response.headers["Retry-After"] == "1"
    assert info.value.response["error"] == "ratelimited"
    await client.chat_postMessage(channel="C0OPS", text="other channel is fine")
    clock.now += 1.0
    await client.chat_postMessage(channel="C0ALERTS", text="after waiting")
    assert [m.text for m in slack.messages("C0ALERTS")] == ["burst 0", "burst 1", "after waiting"]


async def test_fail_next_injects_outages(devslack: DevSlack) -> None:
    client = client_for(devslack)
    devslack.fail_next("chat.update", retry_after=7)
    devslack.fail_next("chat.postMessage", "service_unavailable", status=503, retry_after=None)
    with pytest.raises(SlackApiError) as info:
        await client.chat_postMessage(channel="C0ALERTS", text="lost?")
    assert info.value.response.status_code == 503
    posted = await client.chat_postMessage(channel="C0ALERTS", text="delayed, not lost")
    with pytest.raises(SlackApiError) as info:
        await client.chat_update(channel="C0ALERTS", ts=posted["ts"], text="x")
    assert info.value.response.headers["Retry-After"] == "7"
    await client.chat_update(channel="C0ALERTS", ts=posted["ts"], text="x")


# ------------------------------------------------------------------ deliveries


async def test_post_message_as_a_person_delivers_a_signed_event_callback(
    devslack: DevSlack, receiver: Receiver
) -> None:
    delivery = await devslack.post_message_as("C0ALERTS", "disk full on web-1", user="U0ALICE")
    assert delivery.status == 200 and len(receiver.requests) == 1
    got = receiver.requests[0]
    assert got.body == delivery.request_body
    assert got.headers["Content-Type"] == "application/json"
    assert receiver.last_is_signed_with(devslack.signing_secret)
    assert not receiver.last_is_signed_with("some-other-secret")
    envelope = json.loads(got.body)
    assert envelope["type"] == "event_callback" and envelope["api_app_id"] == "A0GRACE"
    assert envelope["team_id"] == "T0GRACE" and envelope["token"] == devslack.verification_token
    assert re.match(r"^Ev[0-9A-Z]{8,}$", envelope["event_id"])
    assert abs(envelope["event_time"] - time.time()) < 60
    assert envelope["authorizations"][0]["user_id"] == "U0GRACE"
    assert envelope["authorizations"][0]["is_bot"] is True
    event = envelope["event"]
    assert {k: event[k] for k in ("type", "channel", "user", "text", "channel_type")} == {
        "type": "message",
        "channel": "C0ALERTS",
        "user": "U0ALICE",
        "text": "disk full on web-1",
        "channel_type": "channel",
    }
    assert event["ts"] == event["event_ts"] and TS.match(event["ts"])
    assert "subtype" not in event and "bot_id" not in event
    stored = devslack.messages("C0ALERTS")
    assert [(m.ts, m.user, m.text) for m in stored] == [(event["ts"], "U0ALICE", event["text"])]


async def test_post_message_as_an_integration_is_a_bot_message(
    devslack: DevSlack, receiver: Receiver
) -> None:
    attachments = [{"color": "danger", "title": "[FIRING:1] DiskFull", "text": "web-1 at 97%"}]
    await devslack.post_message_as(
        "C0ALERTS", bot_id="B0ALERTMGR", username="alertmanager", attachments=attachments
    )
    event = json.loads(receiver.requests[0].body)["event"]
    assert event["subtype"] == "bot_message" and event["bot_id"] == "B0ALERTMGR"
    assert event["username"] == "alertmanager" and "user" not in event
    assert event["attachments"] == attachments
    assert devslack.messages("C0ALERTS")[0].attachments == attachments


async def test_redeliver_resends_the_same_body_with_retry_headers(
    devslack: DevSlack, receiver: Receiver
) -> None:
    first = await devslack.post_message_as("C0ALERTS", "again", user="U0BOB")
    retry = await devslack.redeliver(first, retry_num=2)
    assert [r.body for r in receiver.requests] == [first.request_body] * 2
    headers = receiver.requests[1].headers
    assert headers["X-Slack-Retry-Num"] == "2"
    assert headers["X-Slack-Retry-Reason"] == "http_timeout"
    assert "X-Slack-Retry-Num" not in receiver.requests[0].headers
    assert receiver.last_is_signed_with(devslack.signing_secret)
    assert retry.request_headers["X-Slack-Retry-Num"] == "2"
    assert len(devslack.messages("C0ALERTS")) == 1  # a retry is not a second message


async def test_signed_post_can_send_bad_and_stale_signatures(
    devslack: DevSlack, receiver: Receiver
) -> None:
    await devslack.signed_post("{}", "application/json", secret="not-the-secret")
    assert not receiver.last_is_signed_with(devslack.signing_secret)
    await devslack.signed_post("{}", "application/json", timestamp=int(time.time()) - 600)
    assert not receiver.last_is_signed_with(devslack.signing_secret)
    got = receiver.requests[-1]
    expected = SignatureVerifier(devslack.signing_secret).generate_signature(
        timestamp=got.headers["X-Slack-Request-Timestamp"], body="{}"
    )
    assert got.headers["X-Slack-Signature"] == expected  # right signature, stale timestamp


async def test_click_sends_block_actions_form_encoded_and_signed(
    devslack: DevSlack, receiver: Receiver
) -> None:
    client = client_for(devslack)
    posted = await client.chat_postMessage(channel="C0ALERTS", text="card", blocks=CARD)
    delivery = await devslack.click("C0ALERTS", posted["ts"], "approve", user="U0ALICE")
    got = receiver.requests[-1]
    assert got.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert receiver.last_is_signed_with(devslack.signing_secret)
    form = urllib.parse.parse_qs(got.body, strict_parsing=True)
    assert list(form) == ["payload"]
    payload = json.loads(form["payload"][0])
    assert payload == delivery.payload()
    assert payload["type"] == "block_actions"
    assert payload["user"] == {
        "id": "U0ALICE",
        "username": "alice",
        "name": "alice",
        "team_id": "T0GRACE",
    }
    assert payload["container"] == {
        "type": "message",
        "message_ts": posted["ts"],
        "channel_id": "C0ALERTS",
        "is_ephemeral": False,
    }
    assert payload["channel"] == {"id": "C0ALERTS", "name": "alerts"}
    assert payload["team"] == {"id": "T0GRACE", "domain": "grace-dev"}
    assert payload["api_app_id"] == "A0GRACE" and payload["token"] == devslack.verification_token
    assert payload["message"]["ts"] == posted["ts"]
    assert payload["message"]["blocks"] == devslack.message("C0ALERTS", posted["ts"]).blocks
    (action,) = payload["actions"]
    assert {k: v for k, v in action.items() if k != "action_ts"} == {
        "action_id": "approve",
        "block_id": "decide",
        "text": {"type": "plain_text", "text": "Approve"},
        "value": "42:abc",
        "style": "primary",
        "type": "button",
    }
    assert TS.match(action["action_ts"])
    # the trigger_id is one the stand-in issued: a modal can be opened with it
    await client.views_open(trigger_id=payload["trigger_id"], view=MODAL)
    # the response_url works like Slack's: replace_original edits the card
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            payload["response_url"], json={"replace_original": True, "text": "Approved"}
        ) as resp,
    ):
        assert resp.status == 200
    card = devslack.message("C0ALERTS", posted["ts"])
    assert card.text == "Approved" and len(card.edits) == 1


async def test_click_on_a_card_that_lost_its_buttons_raises_lookup_error(
    devslack: DevSlack, receiver: Receiver
) -> None:
    client = client_for(devslack)
    posted = await client.chat_postMessage(channel="C0ALERTS", text="card", blocks=CARD)
    await client.chat_update(channel="C0ALERTS", ts=posted["ts"], text="done", blocks=CARD[:2])
    with pytest.raises(LookupError, match=r"no button 'approve'.*its buttons now: none"):
        await devslack.click("C0ALERTS", posted["ts"], "approve", user="U0ALICE")
    with pytest.raises(LookupError):
        await devslack.click("C0ALERTS", "1600000000.000001", "approve", user="U0ALICE")
    assert receiver.requests == []


async def test_slash_command_and_view_submission_payloads(
    devslack: DevSlack, receiver: Receiver
) -> None:
    delivery = await devslack.slash_command("status", user="U0BOB", channel="C0OPS")
    form = delivery.payload()
    assert {
        k: form[k]
        for k in (
            "command",
            "text",
            "user_id",
            "user_name",
            "channel_id",
            "channel_name",
            "team_id",
            "api_app_id",
        )
    } == {
        "command": "/grace",
        "text": "status",
        "user_id": "U0BOB",
        "user_name": "bob",
        "channel_id": "C0OPS",
        "channel_name": "ops",
        "team_id": "T0GRACE",
        "api_app_id": "A0GRACE",
    }
    assert receiver.last_is_signed_with(devslack.signing_secret)
    async with (
        aiohttp.ClientSession() as http,
        http.post(form["response_url"], json={"text": "all quiet"}) as resp,
    ):
        assert resp.status == 200
    assert [m.text for m in devslack.ephemerals("U0BOB")] == ["all quiet"]
    assert devslack.messages("C0OPS") == []
    opened = await client_for(devslack).views_open(trigger_id=form["trigger_id"], view=MODAL)
    view = opened["view"]

    await devslack.submit_view(view["id"], user="U0BOB", values={"reason": {"text": "too risky"}})
    payload = json.loads(urllib.parse.parse_qs(receiver.requests[-1].body)["payload"][0])
    assert payload["type"] == "view_submission" and payload["view"]["id"] == view["id"]
    assert payload["view"]["callback_id"] == "reject_reason"
    assert payload["view"]["state"]["values"] == {
        "reason": {"text": {"type": "plain_text_input", "value": "too risky"}}
    }
    with pytest.raises(LookupError):
        await devslack.submit_view(view["id"], user="U0BOB", values={"nope": {"text": "x"}})


async def test_a_real_bolt_app_accepts_and_answers_deliveries(devslack: DevSlack) -> None:
    """Bolt verifies our signatures, parses our envelopes and payloads, and its replies land."""
    bolt = AsyncApp(
        token=devslack.token, signing_secret=devslack.signing_secret, client=client_for(devslack)
    )

    @bolt.message("disk")
    async def on_alert(message: dict[str, Any], say: Any) -> None:
        await say(text="looking", thread_ts=message["ts"])

    @bolt.action("approve")
    async def on_approve(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        await client.chat_update(
            channel=body["channel"]["id"],
            ts=body["message"]["ts"],
            text=f"approved by {body['user']['name']}",
        )

    runner, url = await serve(bolt.web_app(path="/slack/events"))
    try:
        devslack.connect(url)
        alert = await devslack.post_message_as("C0ALERTS", "disk full", user="U0ALICE")
        assert alert.status == 200
        ts = alert.payload()["event"]["ts"]
        reply = await devslack.wait_for(lambda: devslack.thread("C0ALERTS", ts))
        assert [m.text for m in reply] == ["looking"]

        card = await client_for(devslack).chat_postMessage(channel="C0OPS", text="c", blocks=CARD)
        clicked = await devslack.click("C0OPS", card["ts"], "approve", user="U0BOB")
        assert clicked.status == 200
        await devslack.wait_for(lambda: devslack.message("C0OPS", card["ts"]).edits)
        assert devslack.message("C0OPS", card["ts"]).text == "approved by bob"

        forged = await devslack.signed_post(alert.request_body, "application/json", secret="forged")
        assert forged.status == 401
    finally:
        await runner.cleanup()


# ------------------------------------------------------------------ rendering


async def test_render_message_reads_like_slack(devslack: DevSlack) -> None:
    client = client_for(devslack)
    posted = await client.chat_postMessage(channel="C0ALERTS", text="fallback", blocks=CARD)
    assert devslack.render_message(devslack.message("C0ALERTS", posted["ts"])) == "\n".join(
        [
            "Disk full on web-1",
            "*Diagnosis:* logs filled /var & @channel by @alice",
            "*Severity*",
            "critical",
            "*Tier*",
            "2",
            "Incident 42 · runbook",
            RULE,
            "[Approve] [Reject]",
        ]
    )
    plain = await client.chat_postMessage(channel="C0ALERTS", text="just &lt;text&gt; for <#C0OPS>")
    assert (
        devslack.render_message(devslack.message("C0ALERTS", plain["ts"])) == "just <text> for #ops"
    )


async def test_transcript_shows_card_thread_and_final_card(
    devslack: DevSlack, receiver: Receiver
) -> None:
    client = client_for(devslack)
    alert = await devslack.post_message_as(
        "C0ALERTS", "disk full", bot_id="B0AM", username="alertmanager"
    )
    card = await client.chat_postMessage(channel="C0ALERTS", text="card", blocks=CARD)
    await client.chat_postMessage(
        channel="C0ALERTS", text="Approved by <@U0ALICE>", thread_ts=card["ts"]
    )
    final = [CARD[0], {"type": "section", "text": {"type": "mrkdwn", "text": "Resolved"}}]
    await client.chat_update(channel="C0ALERTS", ts=card["ts"], text="resolved", blocks=final)
    alert_ts = alert.payload()["event"]["ts"]
    reply_ts = devslack.thread("C0ALERTS", card["ts"])[0].ts
    assert devslack.transcript("C0ALERTS") == "\n".join(
        [
            "#alerts",
            RULE,
            f"[{alert_ts}] alertmanager",
            "  disk full",
            RULE,
            f"[{card['ts']}] grace (bot) (edited 1x)",
            "  first posted version:",
            "    Disk full on web-1",
            "    *Diagnosis:* logs filled /var & @channel by @alice",
            "    *Severity*",
            "    critical",
            "    *Tier*",
            "    2",
            "    Incident 42 · runbook",
            "    " + RULE,
            "    [Approve] [Reject]",
            "  final version:",
            "    Disk full on web-1",
            "    Resolved",
            "  thread (1 reply):",
            f"    [{reply_ts}] grace (bot)",
            "      Approved by @alice",
        ]
    )


# ------------------------------------------------------------------ history, metadata, lost answers

TAG = {"event_type": "grace_outbox", "event_payload": {"outbox_id": 7}}


async def test_metadata_is_kept_and_shown_only_to_those_who_ask(devslack: DevSlack) -> None:
    client = client_for(devslack)
    posted = await client.chat_postMessage(channel="C0ALERTS", text="card", metadata=TAG)
    assert "metadata" not in posted["message"]
    plain = await client.conversations_history(channel="C0ALERTS")
    assert [m.get("metadata") for m in plain["messages"]] == [None]
    full = await client.conversations_history(channel="C0ALERTS", include_all_metadata=True)
    assert [m.get("metadata") for m in full["messages"]] == [TAG]
    form = await client.api_call(
        "chat.postMessage",
        data={"channel": "C0ALERTS", "text": "form", "metadata": json.dumps(TAG)},
    )
    assert form["ok"]
    bad = await refused(
        client.api_call(
            "chat.postMessage", data={"channel": "C0ALERTS", "text": "x", "metadata": "{nope"}
        )
    )
    assert bad["error"] == "invalid_metadata_format"
    for metadata in ({"event_payload": {}}, {"event_type": "x", "event_payload": "y"}):
        bad = await refused(
            client.chat_postMessage(channel="C0ALERTS", text="x", metadata=metadata)
        )
        assert bad["error"] == "invalid_metadata_schema"
    assert [m.text for m in devslack.messages("C0ALERTS")] == ["card", "form"]


async def test_history_pages_newest_first_between_oldest_and_latest(devslack: DevSlack) -> None:
    client = client_for(devslack)
    top = [
        (await client.chat_postMessage(channel="C0ALERTS", text=f"m{i}"))["ts"] for i in range(7)
    ]
    await client.chat_postMessage(channel="C0ALERTS", text="a reply", thread_ts=top[0])
    await client.chat_postMessage(channel="C0OPS", text="elsewhere")

    async def history(**args: Any) -> list[str]:
        seen, cursor = [], None
        while True:
            page = await client.conversations_history(channel="C0ALERTS", cursor=cursor, **args)
            seen += [m["text"] for m in page["messages"]]
            cursor = page.get("response_metadata", {}).get("next_cursor")
            assert page["has_more"] is bool(cursor)
            if not cursor:
                return seen

    assert await history() == [f"m{i}" for i in reversed(range(7))], "no thread replies"
    assert await history(limit=2) == [f"m{i}" for i in reversed(range(7))]
    assert await history(oldest=top[2], latest=top[5]) == ["m4", "m3"]
    assert await history(oldest=top[2], latest=top[5], inclusive=True) == ["m5", "m4", "m3", "m2"]
    assert await history(oldest=top[4], limit=1) == ["m6", "m5"]
    for args, error in [
        ({"channel": "C0NOPE"}, "channel_not_found"),
        ({"channel": "alerts"}, "channel_not_found"),  # by ID only
        ({"channel": "C0ALERTS", "cursor": "bm90IGEgY3Vyc29y"}, "invalid_cursor"),
        ({"channel": "C0ALERTS", "oldest": "yesterday"}, "invalid_ts_oldest"),
        ({"channel": "C0ALERTS", "latest": "1.2.3"}, "invalid_ts_latest"),
    ]:
        assert (await refused(client.conversations_history(**args)))["error"] == error


async def test_replies_read_a_whole_thread_from_any_of_its_messages(devslack: DevSlack) -> None:
    client = client_for(devslack)
    parent = (await client.chat_postMessage(channel="C0ALERTS", text="card"))["ts"]
    replies = [
        (
            await client.chat_postMessage(
                channel="C0ALERTS", text=f"r{i}", thread_ts=parent, metadata=TAG if i else None
            )
        )["ts"]
        for i in range(3)
    ]
    thread = await client.conversations_replies(
        channel="C0ALERTS", ts=replies[1], include_all_metadata=True
    )
    assert [m["text"] for m in thread["messages"]] == ["card", "r0", "r1", "r2"]
    assert thread["messages"][0]["reply_count"] == 3
    assert [m.get("metadata") for m in thread["messages"]] == [None, None, TAG, TAG]
    assert {m["thread_ts"] for m in thread["messages"]} == {parent}
    paged = await client.conversations_replies(channel="C0ALERTS", ts=parent, limit=2)
    assert [m["text"] for m in paged["messages"]] == ["card", "r0"] and paged["has_more"]
    rest = await client.conversations_replies(
        channel="C0ALERTS", ts=parent, cursor=paged["response_metadata"]["next_cursor"]
    )
    assert [m["text"] for m in rest["messages"]] == ["r1", "r2"] and not rest["has_more"]
    since = await client.conversations_replies(channel="C0ALERTS", ts=parent, oldest=replies[0])
    assert [m["text"] for m in since["messages"]] == ["r1", "r2"]
    lone = await client.conversations_replies(channel="C0ALERTS", ts=parent, latest=parent)
    assert lone["messages"] == []
    for args, error in [
        ({"channel": "C0ALERTS", "ts": "1.000001"}, "thread_not_found"),
        ({"channel": "C0OPS", "ts": parent}, "thread_not_found"),
        ({"channel": "C0NOPE", "ts": parent}, "channel_not_found"),
    ]:
        assert (await refused(client.conversations_replies(**args)))["error"] == error


async def test_a_lost_answer_is_done_in_slack_and_unknown_to_the_caller(
    devslack: DevSlack,
) -> None:
    once = AsyncWebClient(token=devslack.token, base_url=devslack.api_url, retry_handlers=[])
    devslack.lose_answer("chat.postMessage", match=lambda args: "thread_ts" in args)
    card = await once.chat_postMessage(channel="C0ALERTS", text="card")  # not matched
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await once.chat_postMessage(channel="C0ALERTS", text="reply", thread_ts=card["ts"])
    assert [m.text for m in devslack.thread("C0ALERTS", card["ts"])] == ["reply"]

    # The SDK's default client sends a request again when its connection drops:
    # one lost answer becomes a second message. GRACE's outbox turns that off.
    devslack.lose_answer("chat.postMessage")
    await client_for(devslack).chat_postMessage(channel="C0OPS", text="once?")
    assert [m.text for m in devslack.messages("C0OPS")] == ["once?", "once?"]

    devslack.lose_answer("chat.postMessage", hang=1.0)
    impatient = AsyncWebClient(
        token=devslack.token, base_url=devslack.api_url, retry_handlers=[], timeout=0.3
    )
    with pytest.raises(TimeoutError):
        await impatient.chat_postMessage(channel="C0ALERTS", text="slow")
    assert devslack.messages("C0ALERTS")[-1].text == "slow"


async def test_an_outage_can_answer_429_with_retry_after(devslack: DevSlack) -> None:
    client = client_for(devslack)
    devslack.outage, devslack.outage_status, devslack.outage_retry_after = True, 429, 30
    answer = await refused(client.chat_postMessage(channel="C0ALERTS", text="x"))
    assert answer["error"] == "ratelimited"
    devslack.outage_status = 500
    with pytest.raises(SlackApiError) as info:
        await client.conversations_history(channel="C0ALERTS")
    assert info.value.response.status_code == 500
    devslack.outage = False
    assert devslack.messages("C0ALERTS") == []
    assert [c.response for c in devslack.calls] == [{"outage": 429}, {"outage": 500}]


# ------------------------------------------------------------------ Socket Mode


class SocketApp:
    """A Socket Mode app at the protocol's level: it opens connections, reads envelopes
    and acks them by hand, so that each test says exactly what the app does."""

    def __init__(self, slack: DevSlack, token: str, http: aiohttp.ClientSession) -> None:
        self.slack, self.token, self.http = slack, token, http

    async def url(self) -> str:
        web_client = AsyncWebClient(token=self.token, base_url=self.slack.api_url)
        return str((await web_client.apps_connections_open(app_token=self.token))["url"])

    async def connect(self) -> aiohttp.ClientWebSocketResponse:
        """A new connection, its `hello` read."""
        ws = await self.http.ws_connect(await self.url())
        hello = await ws.receive_json(timeout=5)
        assert hello["type"] == "hello"
        return ws


async def help_command(slack: DevSlack) -> Delivery:
    return await slack.slash_command("help", user="U0BOB", channel="C0OPS")


@pytest.fixture
async def socket_app(devslack: DevSlack) -> AsyncIterator[SocketApp]:
    async with aiohttp.ClientSession() as http:
        yield SocketApp(devslack, devslack.use_socket_mode(), http)


async def test_app_tokens_open_socket_mode_and_nothing_else(devslack: DevSlack) -> None:
    app_token = devslack.use_socket_mode()
    assert re.fullmatch(r"xapp-1-A0GRACE-\d+-[0-9a-f]{64}", app_token)
    opened = await client_for(devslack, app_token).apps_connections_open(app_token=app_token)
    base = devslack.api_url.removeprefix("http").removesuffix("/api/")
    assert re.fullmatch(
        rf"ws{re.escape(base)}/link/\?ticket=[0-9a-f-]{{36}}&app_id=A0GRACE", opened["url"]
    )
    bot = client_for(devslack)
    refusals = [
        await refused(bot.apps_connections_open(app_token=devslack.token)),
        await refused(bot.apps_connections_open(app_token="xapp-1-A0GRACE-1-" + "0" * 64)),
        await refused(client_for(devslack, app_token).chat_postMessage(channel="C0OPS", text="x")),
    ]
    errors = [r["error"] for r in refusals]
    assert errors == ["not_allowed_token_type", "invalid_auth", "not_allowed_token_type"]
    assert devslack.messages("C0OPS") == []
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(opened["url"])
        hello = await ws.receive_json(timeout=5)
        assert hello["type"] == "hello" and hello["num_connections"] == 1
        assert hello["connection_info"] == {"app_id": "A0GRACE"}
        with pytest.raises(aiohttp.WSServerHandshakeError) as again:
            await http.ws_connect(opened["url"])  # a URL is good for one connection
        assert again.value.status == 401
        await ws.close()


async def test_socket_envelopes_carry_what_http_mode_posts(
    devslack: DevSlack, socket_app: SocketApp
) -> None:
    ws = await socket_app.connect()
    posting = asyncio.ensure_future(devslack.post_message_as("C0OPS", "disk full", user="U0BOB"))
    envelope = await ws.receive_json(timeout=5)
    assert {k: v for k, v in envelope.items() if k not in ("envelope_id", "payload")} == {
        "type": "events_api",
        "accepts_response_payload": False,
        "retry_attempt": 0,
        "retry_reason": "",
    }
    await ws.send_json({"envelope_id": envelope["envelope_id"]})
    delivery = await posting
    assert (delivery.status, delivery.body, delivery.envelope) == (200, "", envelope)
    assert envelope["payload"] == delivery.payload()
    assert envelope["payload"]["event"]["text"] == "disk full" and delivery.elapsed < 3

    commanding = asyncio.ensure_future(help_command(devslack))
    envelope = await ws.receive_json(timeout=5)
    assert (envelope["type"], envelope["accepts_response_payload"]) == ("slash_commands", True)
    answer = {"text": "all quiet", "response_type": "ephemeral"}
    await ws.send_json({"envelope_id": envelope["envelope_id"], "payload": answer})
    delivery = await commanding
    assert envelope["payload"] == delivery.payload() and envelope["payload"]["text"] == "help"
    assert delivery.status == 200 and json.loads(delivery.body) == answer

    card = await client_for(devslack).chat_postMessage(channel="C0OPS", text="c", blocks=CARD)
    clicking = asyncio.ensure_future(devslack.click("C0OPS", card["ts"], "approve", user="U0BOB"))
    envelope = await ws.receive_json(timeout=5)
    assert (envelope["type"], envelope["accepts_response_payload"]) == ("interactive", False)
    assert envelope["payload"]["type"] == "block_actions" and "retry_attempt" not in envelope
    await ws.send_json({"envelope_id": envelope["envelope_id"]})
    assert (await clicking).payload() == envelope["payload"]

    view = await client_for(devslack).views_open(trigger_id=devslack.issue_trigger_id(), view=MODAL)
    values = {"reason": {"text": ""}}
    submitting = asyncio.ensure_future(
        devslack.submit_view(view["view"]["id"], user="U0BOB", values=values)
    )
    envelope = await ws.receive_json(timeout=5)
    assert envelope["payload"]["type"] == "view_submission"
    assert envelope["accepts_response_payload"] is True
    errors = {"response_action": "errors", "errors": {"reason": "Say why"}}
    await ws.send_json({"envelope_id": envelope["envelope_id"], "payload": errors})
    assert json.loads((await submitting).body) == errors
    assert len({e["envelope_id"] for e in devslack.socket.sent}) == 4 == len(devslack.socket.acks)
    await ws.close()


async def test_an_unacknowledged_event_is_retried_and_a_command_times_out_at_3_s(
    devslack: DevSlack, socket_app: SocketApp
) -> None:
    ws = await socket_app.connect()
    assert devslack.socket.ack_timeout == 3.0  # Slack's, as the default
    commanding = asyncio.ensure_future(help_command(devslack))
    ignored = await ws.receive_json(timeout=5)
    delivery = await commanding
    assert (delivery.status, delivery.body) == (0, "operation_timeout")
    assert delivery.elapsed >= 3.0 and devslack.socket.sent == [ignored]  # commands: no retry

    devslack.socket.ack_timeout = 0.2  # the app below never acks: no need to wait 3 s a time
    posting = asyncio.ensure_future(devslack.post_message_as("C0OPS", "disk full", user="U0BOB"))
    attempts = [await ws.receive_json(timeout=5) for _ in range(4)]
    delivery = await posting
    assert [(e["retry_attempt"], e["retry_reason"]) for e in attempts] == [
        (0, ""),
        (1, "timeout"),
        (2, "timeout"),
        (3, "timeout"),
    ]
    assert len({e["envelope_id"] for e in attempts}) == 4  # a new envelope each attempt ...
    assert all(e["payload"] == attempts[0]["payload"] for e in attempts)  # ... the same event
    assert (delivery.status, delivery.body) == (0, "operation_timeout")
    assert delivery.envelope == attempts[3]
    assert devslack.socket.acks == []
    await ws.close()


async def test_a_lost_ack_closes_the_connection_and_the_event_comes_again(
    devslack: DevSlack, socket_app: SocketApp
) -> None:
    first = await socket_app.connect()
    devslack.socket.ack_timeout = 1.0  # Slack's wait for the lost ack, shortened; all else acks
    devslack.socket.lose_ack()
    posting = asyncio.ensure_future(devslack.post_message_as("C0OPS", "disk full", user="U0BOB"))
    lost = await first.receive_json(timeout=5)
    await first.send_json({"envelope_id": lost["envelope_id"]})
    assert (await first.receive(timeout=5)).type == aiohttp.WSMsgType.CLOSE
    second = await socket_app.connect()
    again = await second.receive_json(timeout=5)
    assert (again["retry_attempt"], again["retry_reason"]) == (1, "timeout")
    assert again["payload"]["event_id"] == lost["payload"]["event_id"]
    await second.send_json({"envelope_id": again["envelope_id"]})
    delivery = await posting
    assert delivery.status == 200 and delivery.envelope == again
    assert [a["envelope_id"] for a in devslack.socket.acks] == [again["envelope_id"]]
    assert len(devslack.messages("C0OPS")) == 1
    await second.close()


async def test_refresh_warns_then_asks_and_closes_and_nothing_is_lost_meanwhile(
    devslack: DevSlack, socket_app: SocketApp
) -> None:
    ws = await socket_app.connect()
    await devslack.socket.refresh(grace=0.2)  # an app that ignores the warning
    said = [await ws.receive_json(timeout=5) for _ in range(2)]
    assert [(m["type"], m["reason"]) for m in said] == [
        ("disconnect", "warning"),
        ("disconnect", "refresh_requested"),
    ]
    assert (await ws.receive(timeout=5)).type == aiohttp.WSMsgType.CLOSE
    # With no connection a person's command fails at once; an event waits for one.
    delivery = await help_command(devslack)
    assert (delivery.status, delivery.body) == (0, "dispatch_failed")
    posting = asyncio.ensure_future(devslack.post_message_as("C0OPS", "disk full", user="U0BOB"))
    ws = await socket_app.connect()
    envelope = await ws.receive_json(timeout=5)
    assert envelope["payload"]["event"]["text"] == "disk full"
    await ws.send_json({"envelope_id": envelope["envelope_id"]})
    assert (await posting).status == 200
    await devslack.socket.drop()
    assert (await ws.receive(timeout=5)).type == aiohttp.WSMsgType.CLOSE
    assert devslack.socket.opened == 2 and devslack.socket.connections == []


# ------------------------------------------------------------------ the page


async def test_the_page_shows_channels_and_its_forms_act_as_people(
    devslack: DevSlack, receiver: Receiver
) -> None:
    client = client_for(devslack)
    await client.chat_postMessage(channel="C0OPS", text="<script>alert(1)</script>", blocks=CARD)
    page_url = devslack.api_url.removesuffix("api/")
    async with aiohttp.ClientSession() as http:
        async with http.get(page_url) as resp:
            page = await resp.text()
        assert resp.status == 200 and "#ops" in page and "Disk full on web-1" in page
        assert "<script>" not in page and "&lt;script&gt;" not in page  # the blocks are shown
        assert page.count('action="/act/click"') == 2  # Approve and Reject
        form = {"channel": "C0ALERTS", "user": "U0ALICE", "text": "disk full"}
        async with http.post(f"{page_url}act/post", data=form, allow_redirects=False) as resp:
            assert resp.status == 403  # no page token: another site's form
        token = re.search(r'name="form_token" value="([^"]+)"', page)
        assert token is not None
        signed = {**form, "form_token": token[1]}
        async with http.post(f"{page_url}act/post", data=signed, allow_redirects=False) as resp:
            assert resp.status == 303
        await devslack.wait_for(lambda: devslack.page.outcomes)
        assert devslack.page.outcomes[0].startswith("post: the app answered in")
        assert [json.loads(r.body)["event"]["text"] for r in receiver.requests] == ["disk full"]
        async with http.get(page_url) as resp:
            assert "disk full" in await resp.text()
