"""The aiohttp server: Slack's request URL, alert webhooks, health and metrics.

`/slack/events` authenticates before it parses. The raw body is read (413
over the limit), its timestamp and signature checked on those bytes (401,
and bot/signing.py's watcher is told), and only then decoded and parsed,
once, here: what Slack could never have sent (not UTF-8, bad JSON, a form
without its payload, fields of the wrong type) is a 400 naming what is
wrong, a compressed or non-UTF-8 body a 415. Bolt gets a document it can
read and does not check the signature again (bot/app.py).

Bodies are never decompressed by the server (`auto_decompress` off): a
signature is over the bytes sent, and a corrupt gzip stream must not fail
inside aiohttp before GRACE can refuse it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.request.async_internals import build_async_context
from slack_bolt.request.async_request import AsyncBoltRequest

from bot import signing, webhooks
from bot.ack_first import AckFirst
from bot.forms import TooManyFields, form_pairs
from bot.metrics import CONTENT_TYPE, Metrics
from bot.settings import Settings
from bot.webhooks import BodyRefused, check_encoding, read_body
from engine.api import MAX_BODY_BYTES, Healer, WebhookSource
from engine.ports import Clock
from engine.storage_ports import OutboxStore

log = logging.getLogger(__name__)

SIGNATURE_WINDOW_S = 5 * 60
"""Slack's own rule: a request signed longer ago than this is a replay."""

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
_UTF8 = frozenset({"utf-8", "utf8"})


def make_web_app(
    bolt: AsyncApp,
    store: OutboxStore,
    healer: Healer,
    settings: Settings,
    metrics: Metrics,
    clock: Clock,
    sources: Mapping[str, WebhookSource],
    acks: AckFirst,
) -> web.Application:
    secret = settings.slack_signing_secret
    signing_key = secret.get_secret_value().encode() if secret else None

    async def slack_events(request: web.Request) -> web.Response:
        with acks.answer():
            try:
                body = await signed_body(request, signing_key, now=time.time())
                bolt_request = slack_request(request, body)
            except BodyRefused as exc:
                if exc.status == 401:
                    signing.refused()
                return _refuse(exc.status, str(exc))
            return await to_aiohttp_response(await bolt.async_dispatch(bolt_request))

    async def healthz(request: web.Request) -> web.Response:
        await store.outbox_pending()  # proves the database answers
        return web.json_response({"ok": True})

    async def prometheus(request: web.Request) -> web.Response:
        body = metrics.render(outbox_pending=await store.outbox_pending())
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    # Anything bigger than the largest alert batch is refused with 413 before it is read.
    app = web.Application(client_max_size=MAX_BODY_BYTES, handler_args={"auto_decompress": False})
    app.router.add_post("/slack/events", slack_events)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", prometheus)
    webhooks.add_routes(app, sources, healer, settings, metrics, clock)
    return app


def _refuse(status: int, reason: str) -> web.Response:
    return web.json_response({"ok": False, "error": reason}, status=status)


async def signed_body(request: web.Request, key: bytes | None, *, now: float) -> bytes:
    """The raw body, when Slack signed it within the last five minutes; else BodyRefused
    (401). The headers are checked before the body is read, the body before it is parsed.
    `now` is the wall clock, as Slack's: a simulated clock would refuse every request."""
    if key is None:
        raise BodyRefused(401, "GRACE has no SLACK_SIGNING_SECRET: it takes no request here")
    timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise BodyRefused(401, "X-Slack-Request-Timestamp is missing or not a whole number")
    if abs(now - int(timestamp)) > SIGNATURE_WINDOW_S:
        raise BodyRefused(401, "X-Slack-Request-Timestamp is more than 5 minutes from now")
    signature = request.headers.get("X-Slack-Signature", "")
    if not _SIGNATURE.fullmatch(signature):
        raise BodyRefused(401, "X-Slack-Signature is missing or not v0=<64 hex digits>")
    body = await read_body(request)
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(key, base, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise BodyRefused(401, "X-Slack-Signature does not match the body")
    return body


def slack_request(request: web.Request, body: bytes) -> AsyncBoltRequest:
    """A signed body as Bolt reads it, or BodyRefused (400, 415) saying why it cannot be."""
    check_encoding(request)
    if request.charset is not None and request.charset.lower() not in _UTF8:
        raise BodyRefused(415, f"Slack's requests are UTF-8, not {request.charset[:40]!r}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyRefused(400, "the body is not UTF-8") from None
    headers = _headers(request)
    content_type = (headers.get("content-type") or [""])[0].split(";")[0]
    document = slack_document(text, content_type)
    problem = shape_problem(document)
    if problem is not None:
        raise BodyRefused(400, problem)
    # Bolt gets the document read here, not the text to parse again: a click's form took
    # ~200 µs more to ack parsed twice (bench/ack_latency.py), and Bolt reads any form
    # with "payload" anywhere in it as an interaction, so a command such as
    # `/grace heal payload-api db` would reach it empty. It keeps the raw text, which
    # its own signature check reads.
    bolt_request = AsyncBoltRequest(body="", query=request.query_string, headers=headers)
    bolt_request.raw_body, bolt_request.body = text, document
    bolt_request.context = build_async_context(AsyncBoltContext(), document)
    return bolt_request


def slack_document(text: str, content_type: str) -> dict[str, Any]:
    """The body parsed as Bolt decides to parse it: JSON for application/json or a body
    that starts with `{`, else a form, whose `payload` field holds an interaction's JSON."""
    if not text:
        raise BodyRefused(400, "the body is empty")
    if content_type == "application/json" or text.startswith("{"):
        return _json_object(text, "the body")
    if content_type.strip().lower() != "application/x-www-form-urlencoded":
        shown = content_type[:60] or "none"
        raise BodyRefused(415, f"Content-Type must be application/json or a form, not {shown}")
    form: dict[str, str] = {}
    for name, value in _form_pairs(text):
        form.setdefault(name, value)  # the first of a repeated field, as Slack sends one
    if "payload" in form:
        return _json_object(form["payload"], "the payload field")
    if "command" not in form and "ssl_check" not in form:
        raise BodyRefused(400, "a form from Slack has a payload field or a command field")
    return form


def _form_pairs(text: str) -> list[tuple[str, str]]:
    try:
        return form_pairs(text)
    except TooManyFields as exc:
        raise BodyRefused(400, str(exc)) from None


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BodyRefused(400, f"{what} is not JSON: {exc.msg} at {exc.pos}") from None
    except RecursionError:
        raise BodyRefused(400, f"{what} is nested too deeply") from None
    if not isinstance(value, dict):
        raise BodyRefused(400, f"{what} is JSON but not an object")
    return value


def _headers(request: web.Request) -> dict[str, str | Sequence[str]]:
    """Every header's values in order: Bolt reads the first, as aiohttp's `get` does."""
    headers: dict[str, list[str]] = {}
    for name, value in request.headers.items():
        headers.setdefault(name.lower(), []).append(value)
    return {**headers}  # as Bolt types it


# -- shapes: what Bolt and GRACE index into, checked before either reads it ------------


@dataclass(frozen=True)
class _Field:
    """What one field of a Slack document must be, when it is there at all."""

    types: tuple[type, ...]
    nullable: bool = False
    inner: dict[str, _Field] = field(default_factory=dict)
    """The fields of an object, or of every object in a list."""


MAX_DEPTH = 64
"""Nesting Slack's documents stay far within; deeper would fail in a parser or encoder."""

_STR, _NULLABLE_STR = _Field((str,)), _Field((str,), nullable=True)
_WHO = {"id": _STR, "team_id": _NULLABLE_STR, "enterprise_id": _NULLABLE_STR}
_ENTITY = _Field((dict, str), nullable=True, inner=_WHO)
_MESSAGE: dict[str, _Field] = {
    **dict.fromkeys(("type", "user_id", "channel_id", "thread_ts", "ts", "text"), _STR),
    **dict.fromkeys(("subtype", "bot_id", "user_team", "channel_type", "tab"), _NULLABLE_STR),
    **dict.fromkeys(("function_execution_id", "bot_access_token", "event_ts"), _NULLABLE_STR),
    **dict.fromkeys(("user", "channel", "team"), _ENTITY),
    **dict.fromkeys(("function", "workflow_step", "inputs"), _Field((dict,), nullable=True)),
    **dict.fromkeys(("blocks", "attachments"), _Field((list,), nullable=True)),
}
_SUB_MESSAGE = _Field((dict,), nullable=True, inner=_MESSAGE)
_MESSAGE.update(
    dict.fromkeys(("message", "previous_message", "item", "assistant_thread"), _SUB_MESSAGE)
)

_DOCUMENT: dict[str, _Field] = {
    **_MESSAGE,
    **dict.fromkeys(
        ("token", "api_app_id", "event_id", "callback_id", "trigger_id", "action_ts"), _STR
    ),
    **dict.fromkeys(("message_ts", "response_url", "challenge", "action_id", "block_id"), _STR),
    **dict.fromkeys(("team_id", "enterprise_id", "context_team_id"), _NULLABLE_STR),
    **dict.fromkeys(("context_enterprise_id", "value"), _NULLABLE_STR),
    "is_ext_shared_channel": _Field((bool,)),
    "enterprise": _ENTITY,
    "event": _Field((dict,), inner=_MESSAGE),
    "container": _SUB_MESSAGE,
    "function_data": _Field((dict,), nullable=True),
    "authorizations": _Field((list,), inner={**_WHO, "user_id": _NULLABLE_STR}),
    "actions": _Field(
        (list,), inner=dict.fromkeys(("action_id", "block_id", "type", "action_ts"), _STR)
    ),
    "response_urls": _Field((list,), inner={"response_url": _STR, "channel_id": _STR}),
    "state": _Field((dict,), inner={"values": _Field((dict,))}),
    "view": _Field(
        (dict,),
        inner={
            **dict.fromkeys(("id", "type", "callback_id", "private_metadata", "hash"), _STR),
            **dict.fromkeys(("app_installed_team_id", "team_id", "external_id"), _NULLABLE_STR),
            "state": _Field((dict,), inner={"values": _Field((dict,))}),
        },
    ),
}


def shape_problem(document: dict[str, Any]) -> str | None:
    """What in a parsed Slack document is not what Slack sends, or None.

    Only the fields Bolt's middleware and matchers and GRACE's listeners index
    into are checked, so a signed but malformed request is a 400 here rather
    than a crash in either. The listeners still check what they use (IDs above all).
    """
    if _depth(document) > MAX_DEPTH:
        return f"the document is nested deeper than {MAX_DEPTH} levels"
    if document.get("type") == "block_actions" and not document.get("actions"):
        return "block_actions without actions"
    view = document.get("view")
    if isinstance(view, dict) and not ("type" in view and "callback_id" in view):
        return "a view without its type and callback_id"
    return _object_problem(document, _DOCUMENT, "")


def _object_problem(value: dict[str, Any], fields: dict[str, _Field], where: str) -> str | None:
    for name, spec in fields.items():
        if name not in value:
            continue
        path = f"{where}.{name}" if where else name
        item = value[name]
        if item is None and spec.nullable:
            continue
        if not isinstance(item, spec.types):
            wanted = " or ".join(_TYPE_NAMES[t] for t in spec.types)
            return f"{path} is not {wanted}"
        problem = _inner_problem(item, spec, path)
        if problem is not None:
            return problem
    return None


def _inner_problem(item: object, spec: _Field, path: str) -> str | None:
    if not spec.inner:
        return None
    if isinstance(item, dict):
        return _object_problem(item, spec.inner, path)
    if isinstance(item, list):
        for n, entry in enumerate(item):
            if not isinstance(entry, dict):
                return f"{path}[{n}] is not an object"
            problem = _object_problem(entry, spec.inner, f"{path}[{n}]")
            if problem is not None:
                return problem
    return None


_TYPE_NAMES = {str: "a string", dict: "an object", list: "a list", bool: "true or false"}


def _depth(value: dict[str, Any] | list[Any], depth: int = 1) -> int:
    """How deeply lists and objects nest. Counting stops past MAX_DEPTH, so the
    recursion stays shallow whatever the (hostile) input. Exact types and no
    `max()`: the value came from json.loads, and this runs on every request."""
    if depth > MAX_DEPTH:
        return depth
    deepest = depth
    children: Iterable[Any] = value.values() if type(value) is dict else value
    for child in children:
        kind = type(child)
        if kind is dict or kind is list:
            below = _depth(child, depth + 1)
            if below > deepest:
                deepest = below
                if below > MAX_DEPTH:
                    break
    return deepest
