"""Where alerts come in: every webhook source and Slack layout registers itself here.

A source is one module of `engine.intake`: it defines its parser and calls
`register_webhook(...)` or `register_slack_layout(...)` where it is defined.
Reading the registries imports every module of the package once
(engine/registry.py), so adding a source is one module and its tests;
nothing else lists them.

A webhook source authenticates and reads one request. The bot hands it the
request as plain bytes and headers (nothing of aiohttp), answers its
exceptions with their HTTP status, and stores what it returns.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, SecretStr

from engine.intake.slack_format import AlertParts, SlackMessage
from engine.models import Alert
from engine.registry import Registry
from engine.routing import ChannelFor, nowhere


class Unauthorized(Exception):
    """HTTP 401: the request does not prove who sent it."""


class Forbidden(Exception):
    """HTTP 403: the sender is who it says, but GRACE does not take its alerts."""


class Unavailable(Exception):
    """HTTP 503: this source is not configured here; the message says what to set."""


@dataclass(frozen=True)
class Request:
    """One webhook request as a source sees it. Header names are lower case."""

    body: bytes
    headers: Mapping[str, str]
    received_at: datetime
    channel_for: ChannelFor = nowhere


@dataclass(frozen=True)
class Received:
    """What one request brought.

    `delivery_key` is the sender's own identity of the delivery (an SNS
    MessageId, a Sentry request id): a retry of it is stored once. None means
    every request is a new delivery. `answer` adds fields to the 200 answer.
    """

    alerts: list[Alert]
    delivery_key: str | None = None
    answer: Mapping[str, Any] = field(default_factory=dict)


Parse = Callable[..., list[Alert]]
"""`parse(body, *, received_at, channel_for)`: the alerts in a body, or IntakeError."""


class WebhookSource(Protocol):
    """One configured webhook source, as the bot serves it at `/alerts/<name>`."""

    # Properties: a source is a frozen dataclass, whose fields cannot be set.
    @property
    def name(self) -> str: ...

    @property
    def content_types(self) -> frozenset[str]:
        """Content types it is sent with; any other is refused (400)."""

    def check_headers(self, headers: Mapping[str, str]) -> None:
        """Refuse (Unavailable, Unauthorized) before the body is even read."""

    async def receive(self, request: Request) -> Received:
        """Authenticate the body where the sender signs it, then read it.

        Raises Unauthorized, Forbidden, Unavailable or IntakeError; stores nothing.
        """

    def read(
        self,
        body: bytes,
        *,
        received_at: datetime,
        channel_for: ChannelFor,
        headers: Mapping[str, str] | None = None,
    ) -> list[Alert]:
        """The alerts in a body, without authentication or network: `grace simulate`.

        `headers` (lower-case names) are those reading needs, when the sender
        puts part of the meaning there (Sentry's resource).
        """

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class WebhookPlugin:
    """A webhook source's registration: its name, its slice of the settings
    (top-level keys of GRACE's config, read by its own model) and its factory."""

    name: str
    summary: str
    config: type[BaseModel]
    factory: Callable[[Any], WebhookSource]
    subpaths: tuple[str, ...] = ()
    """Further paths under `/alerts/<name>` it answers on (where a sender appends one)."""
    lenient: bool = False
    """It also reads what other sources send (Alertmanager's format is everyone's):
    when guessing a payload's source, the others are tried first."""

    def build(self, settings: object) -> WebhookSource:
        """The source, configured from GRACE's settings (its own fields only)."""
        return self.factory(self.config.model_validate(settings, from_attributes=True))


SlackParse = Callable[[SlackMessage], AlertParts | None]


@dataclass(frozen=True)
class SlackLayout:
    """How one product's Slack messages read. Layouts are tried by ascending
    `order`; the first that recognises a message wins."""

    name: str
    parse: SlackParse
    order: int
    thread_replies: bool = True
    """False: a reply in a thread is conversation, never this layout."""


WEBHOOKS: Registry[WebhookPlugin] = Registry("webhook source", "engine.intake")
LAYOUTS: Registry[SlackLayout] = Registry("Slack layout", "engine.intake")


def register_webhook(plugin: WebhookPlugin) -> WebhookPlugin:
    return WEBHOOKS.register(plugin.name, plugin)


def register_slack_layout(layout: SlackLayout) -> SlackLayout:
    return LAYOUTS.register(layout.name, layout)


def webhook_plugins() -> Mapping[str, WebhookPlugin]:
    return WEBHOOKS.all()


def slack_layouts() -> tuple[SlackLayout, ...]:
    return tuple(sorted(LAYOUTS.all().values(), key=lambda layout: (layout.order, layout.name)))


# -- what most webhook sources share ------------------------------------------------


class BearerConfig(BaseModel):
    """The settings a bearer-token source reads: GRACE_WEBHOOK_TOKEN."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    webhook_token: SecretStr | None = None


JSON = frozenset({"application/json"})


@dataclass(frozen=True)
class BearerSource:
    """A source authorised by `Authorization: Bearer GRACE_WEBHOOK_TOKEN`, whose
    body is read by one parse function: most senders need nothing more."""

    name: str
    parse: Parse
    token: SecretStr | None
    content_types: frozenset[str] = JSON

    def check_headers(self, headers: Mapping[str, str]) -> None:
        require_bearer(headers, self.token)

    async def receive(self, request: Request) -> Received:
        return Received(
            self.read(
                request.body, received_at=request.received_at, channel_for=request.channel_for
            )
        )

    def read(
        self,
        body: bytes,
        *,
        received_at: datetime,
        channel_for: ChannelFor,
        headers: Mapping[str, str] | None = None,
    ) -> list[Alert]:
        return self.parse(body, received_at=received_at, channel_for=channel_for)

    async def aclose(self) -> None:
        return None


def bearer_plugin(
    name: str, summary: str, parse: Parse, *, subpaths: tuple[str, ...] = (), lenient: bool = False
) -> WebhookPlugin:
    """The registration of a BearerSource reading bodies with `parse`."""

    def factory(config: BearerConfig) -> WebhookSource:
        return BearerSource(name, parse, config.webhook_token)

    return WebhookPlugin(name, summary, BearerConfig, factory, subpaths, lenient)


def require_bearer(headers: Mapping[str, str], token: SecretStr | None) -> None:
    """`Authorization: Bearer <token>`, compared in constant time."""
    if token is None:
        raise Unavailable("webhooks are off: set GRACE_WEBHOOK_TOKEN to turn them on")
    scheme, _, given = headers.get("authorization", "").partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        raise Unauthorized("missing or wrong bearer token")
