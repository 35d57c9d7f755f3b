"""One error handler for the whole Bolt app, and the refusal a listener answers with.

A listener that fails (a bug, a database that cannot be written) must not
leave the person with Slack's generic error, or with nothing: they are told
privately "GRACE could not do that: …", with the ack itself where Slack shows
it (a command's answer, a form's error), else through the request's
response_url, else as an ephemeral through the outbox in the request's
channel. The failure is logged once, by what kind of request it was, never
with the request's body. An event has no one to answer: its 500 stays, so
Slack, which was not answered with a 2xx, sends it again.

A signed request that lacks what its listener needs is no failure: the
listener returns `refuse(reason)` before it acks, a 400 saying what is missing.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.response import BoltResponse

from bot.ids import BlockId, CallbackId, home_channel, slack_id, slack_id_at
from engine.api import Healer

log = logging.getLogger(__name__)

COULD_NOT = (
    "GRACE could not do that: something failed inside it (its log says what). "
    "Try again in a minute."
)
_KINDS = frozenset(
    {"event_callback", "block_actions", "view_submission", "message_action", "shortcut"}
)


def refuse(reason: str) -> BoltResponse:
    """The answer to a signed request its listener cannot serve: a 400, before any ack.

    `reason` is GRACE's own words, never the request's: it is logged as it is."""
    log.warning("refused a Slack request: %s", reason)
    return _json(400, {"ok": False, "error": reason})


def register(app: AsyncApp, healer: Healer) -> None:
    async def on_error(
        error: Exception, body: dict[str, Any], context: AsyncBoltContext
    ) -> BoltResponse | None:
        kind = _kind(body)
        log.error("GRACE failed on a Slack %s: %s", kind, type(error).__name__, exc_info=error)
        if kind == "event_callback":
            return None  # Bolt's 500: not taken, so Slack delivers it again
        if kind == "command":
            return _json(200, {"response_type": "ephemeral", "text": COULD_NOT})
        field = _FORM_FIELD.get(_view_callback(body)) if kind == "view_submission" else None
        if field is not None:  # the form stays open and says so
            return _json(200, {"response_action": "errors", "errors": {field: COULD_NOT}})
        await _tell(healer, body, context)
        return BoltResponse(status=200, body="")

    app.error(on_error)


async def _tell(healer: Healer, body: dict[str, Any], context: AsyncBoltContext) -> None:
    """Privately, after the answer: a failure to tell is logged, never raised."""
    if isinstance(context.response_url, str) and context.respond is not None:
        respond = context.respond

        async def answer() -> None:
            await respond(text=COULD_NOT, response_type="ephemeral", replace_original=False)

        healer.spawn(answer())
        return
    user = slack_id_at(body, "user", "user", "id")
    channel = (
        slack_id_at(body, "channel", "channel", "id")
        or home_channel(body)  # a click on App Home: answered there
        or slack_id("channel", context.channel_id)
    )
    if user is not None and channel is not None:
        healer.spawn(healer.tell_user(channel, user, COULD_NOT))


_FORM_FIELD: dict[str | None, BlockId] = {
    CallbackId.REJECT: BlockId.REJECT_REASON,
    CallbackId.PAUSE: BlockId.PAUSE_REASON,
}
"""GRACE's forms, and the field that carries a failure's message."""


def _kind(body: dict[str, Any]) -> str:
    """What the request was, in GRACE's words: the body's type is logged only when known."""
    if "command" in body and "type" not in body:
        return "command"
    kind = body.get("type")
    return kind if kind in _KINDS else "request"


def _view_callback(body: dict[str, Any]) -> str | None:
    view = body.get("view")
    callback = view.get("callback_id") if isinstance(view, dict) else None
    return callback if isinstance(callback, str) else None


def _json(status: int, document: dict[str, Any]) -> BoltResponse:
    return BoltResponse(
        status=status, body=json.dumps(document), headers={"content-type": "application/json"}
    )
