"""What GRACE asks Slack before it listens, and how a failed call is told in one line.

A call to Slack can fail three ways, and each deserves a different answer from
the operator: Slack refused it (``ok: false``: fix the config), or Slack could
not be asked at all (no connection, no answer in time, an error page from a
proxy instead of Slack's JSON: retry later). `ask` tells them apart, so that
`grace run` says which, once, without a traceback.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Sequence
from typing import TypeVar

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.settings import ConfigError

T = TypeVar("T")

CALL_TIMEOUT = 10.0
"""Seconds one start-up call may take: Slack answers in well under one."""

TOKEN_REFUSED = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "not_allowed_token_type",
        "no_permission",
        "org_login_required",
        "ekm_access_denied",
    }
)
"""Slack's answers for a token it will not take, whatever the method."""


class StoreUnreachable(Exception):
    """The PostgreSQL server GRACE_DB names cannot be reached or logged in to (the
    message names it without user or password): worth trying again later."""


class SlackUnreachable(Exception):
    """Slack could not be asked: unlike a ConfigError, trying again later may work."""

    def __init__(self, method: str, url: str, reason: str) -> None:
        super().__init__(
            f"Slack did not answer {method} at {url}: {reason}; check SLACK_API_URL and the network"
        )
        self.method, self.reason = method, reason


def refusal(exc: SlackApiError) -> str | None:
    """Slack's error code when the answer was Slack's own JSON refusal, else None."""
    # A body that does not parse leaves aiohttp's raw response here, without `data`.
    data = getattr(exc.response, "data", None)
    error = data.get("error") if isinstance(data, dict) else None
    return error if isinstance(error, str) else None


def _status(exc: SlackApiError) -> int:
    response = exc.response
    status = getattr(response, "status_code", None) or getattr(response, "status", None)
    return int(status or 0)


def describe(exc: BaseException) -> str:
    """Why a call got no usable answer, in the words an operator searches for."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"cannot resolve {exc.host}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        code = exc.os_error.errno
        reason = os.strerror(code) if code else str(exc.os_error) or type(exc.os_error).__name__
        return f"cannot connect to {exc.host}:{exc.port} ({reason.lower()})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection without answering"
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        return f"the WebSocket handshake got HTTP {exc.status}"
    if isinstance(exc, SlackApiError):
        status, error = _status(exc), refusal(exc)
        if error is not None:
            return f"HTTP {status}, {error}"
        kind = exc.response.headers.get("content-type", "no content type").split(";")[0]
        return f"HTTP {status} with {kind}, not Slack's JSON"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _transient(exc: SlackApiError) -> bool:
    """Not a refusal to act on: an answer that is not Slack's JSON, a rate limit, a 5xx."""
    status = _status(exc)
    return refusal(exc) is None or status == 429 or status >= 500


async def ask(client: AsyncWebClient, method: str, call: Awaitable[T]) -> T:
    """Slack's answer to `call` within CALL_TIMEOUT. A refusal is raised as it came
    (SlackApiError); not getting Slack's answer at all, as SlackUnreachable."""
    try:
        async with asyncio.timeout(CALL_TIMEOUT):
            return await call
    except TimeoutError:
        reason = f"no answer within {CALL_TIMEOUT:g} s"
    except SlackApiError as exc:
        if not _transient(exc):
            raise
        reason = describe(exc)
    except (aiohttp.ClientError, OSError, SlackClientError) as exc:
        reason = describe(exc)
    raise SlackUnreachable(method, client.base_url, reason)


async def check_bot_token(client: AsyncWebClient) -> None:
    """A bad token would otherwise show up later as every channel missing."""
    try:
        await ask(client, "auth.test", client.auth_test())
    except SlackApiError as exc:
        error = refusal(exc)
        hint = (
            "use the app's Bot User OAuth Token (xoxb-…) from OAuth & Permissions"
            if error in TOKEN_REFUSED
            else "check the token"
        )
        raise ConfigError(
            f"SLACK_BOT_TOKEN: Slack refused it (auth.test: {error}); {hint}"
        ) from None


async def check_alert_channels(
    client: AsyncWebClient, channels: Sequence[str], setting: str = "GRACE_ALERT_CHANNELS"
) -> None:
    """A mistyped channel ID would leave alerts unread (or a report unposted) in
    silence: refuse to start. `setting` names where the channel was configured."""
    for channel in channels:
        try:
            await ask(client, "conversations.info", client.conversations_info(channel=channel))
        except SlackApiError as exc:
            error = refusal(exc)
            if error == "missing_scope":
                needed = exc.response.data.get("needed", "channels:read")
                raise ConfigError(
                    f"SLACK_BOT_TOKEN lacks the {needed} scope GRACE needs to read "
                    f"{setting} ({channel}); add it and reinstall the app"
                ) from None
            raise ConfigError(
                f"{setting}: Slack cannot find channel {channel} ({error}); "
                "check the ID and that GRACE is invited to it"
            ) from None
