"""Alert webhooks: `POST /alerts/<source>` for every source registered in engine/intake.

A refused request stores nothing and says why; an accepted one is answered
once its alerts are durable (one transaction for the whole request). Each
source authenticates its own way (a bearer token, an HMAC of the body, a
signed SNS message); this module only maps its refusals to HTTP statuses.

Bodies are read as sent: the server does not decompress them (bot/server.py),
so a body in any Content-Encoding is refused with 415 before it is read, and
no body, however broken, reaches a parser in a form it was not signed in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from bot.metrics import Metrics
from bot.settings import Settings
from engine.api import (
    MAX_BODY_BYTES,
    Forbidden,
    Healer,
    IntakeError,
    Request,
    Unauthorized,
    Unavailable,
    WebhookSource,
    fresh_key,
    router,
    webhook_plugins,
)
from engine.ports import Clock

Handler = Callable[[web.Request], Awaitable[web.Response]]


def build_sources(settings: Settings) -> dict[str, WebhookSource]:
    """Every registered webhook source, configured from the settings."""
    return {name: plugin.build(settings) for name, plugin in webhook_plugins().items()}


def add_routes(
    app: web.Application,
    sources: Mapping[str, WebhookSource],
    healer: Healer,
    settings: Settings,
    metrics: Metrics,
    clock: Clock,
) -> None:
    plugins = webhook_plugins()
    for name, source in sources.items():
        handler = _handler(source, healer, settings, metrics, clock)
        app.router.add_post(f"/alerts/{name}", handler)
        for subpath in plugins[name].subpaths if name in plugins else ():
            app.router.add_post(f"/alerts/{name}{subpath}", handler)


def _refuse(status: int, reason: str, **headers: str) -> web.Response:
    return web.json_response({"ok": False, "error": reason}, status=status, headers=headers)


class BodyRefused(Exception):
    """A body GRACE will not read, with the HTTP status and the reason to answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def check_encoding(request: web.Request) -> None:
    """No sender GRACE takes compresses its body; a compressed one is refused unread."""
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        shown = encoding[:40]
        raise BodyRefused(415, f"Content-Encoding {shown!r} is not accepted: send the body as is")


async def read_body(request: web.Request) -> bytes:
    """The raw body as sent, at most MAX_BODY_BYTES of it; BodyRefused when it cannot be had."""
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise BodyRefused(413, f"body larger than {MAX_BODY_BYTES:,} bytes") from None
    except RequestPayloadError:  # broken chunked framing, say
        raise BodyRefused(400, "the body could not be read as sent") from None


def _handler(
    source: WebhookSource, healer: Healer, settings: Settings, metrics: Metrics, clock: Clock
) -> Handler:
    channel_for = router(settings.routes, settings.fallback_channel)

    async def receive(request: web.Request) -> web.Response:
        headers = {name.lower(): value for name, value in request.headers.items()}
        try:
            source.check_headers(headers)
            if request.content_type not in source.content_types:
                shown = request.content_type or "none"
                wanted = " or ".join(sorted(source.content_types))
                raise IntakeError(f"Content-Type must be {wanted}, not {shown}")
            check_encoding(request)
            body = await read_body(request)
            received = await source.receive(
                Request(body, headers, received_at=clock.now(), channel_for=channel_for)
            )
        except BodyRefused as exc:
            return _refuse(exc.status, str(exc))
        except Unavailable as exc:
            return _refuse(503, str(exc))
        except Unauthorized as exc:
            return _refuse(401, str(exc), **{"WWW-Authenticate": "Bearer"})
        except Forbidden as exc:
            return _refuse(403, str(exc))
        except IntakeError as exc:
            return _refuse(400, str(exc))
        alerts = received.alerts
        if any(alert.channel is None for alert in alerts):
            return _refuse(503, "no channel to post in: set GRACE_DEFAULT_CHANNEL or routes")
        intakes = []
        if alerts:
            key = received.delivery_key or fresh_key()
            intakes = await healer.receive(alerts, delivery_key=f"{source.name}:{key}")
            metrics.alerts(source.name, len(alerts))
        incidents = sorted({i.incident.id for i in intakes if i.incident is not None})
        opened = sum(i.opened for i in intakes)
        answer = {"received": len(alerts), "incidents": incidents, "opened": opened}
        return web.json_response({"ok": True, **answer, **received.answer})

    return receive
