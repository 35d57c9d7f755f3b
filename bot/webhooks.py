"""Alert webhooks: `POST /alerts/alertmanager` and `POST /alerts/generic`.

A refused request stores nothing and says why; an accepted one is answered
once its alerts are durable (one transaction for the whole request).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from aiohttp import web

from bot.metrics import Metrics
from bot.settings import Settings
from engine.healer import Healer
from engine.intake.alertmanager import parse_alertmanager
from engine.intake.errors import MAX_BODY_BYTES, IntakeError
from engine.intake.generic import parse_generic
from engine.intake.limits import fresh_key
from engine.models import Alert
from engine.ports import Clock
from engine.routing import router

Parser = Callable[..., list[Alert]]
SOURCES: dict[str, Parser] = {"alertmanager": parse_alertmanager, "generic": parse_generic}


def add_routes(
    app: web.Application, healer: Healer, settings: Settings, metrics: Metrics, clock: Clock
) -> None:
    for source, parse in SOURCES.items():
        app.router.add_post(
            f"/alerts/{source}", _handler(source, parse, healer, settings, metrics, clock)
        )


def _refuse(status: int, reason: str, **headers: str) -> web.Response:
    return web.json_response({"ok": False, "error": reason}, status=status, headers=headers)


def _handler(
    source: str,
    parse: Parser,
    healer: Healer,
    settings: Settings,
    metrics: Metrics,
    clock: Clock,
) -> Callable[[web.Request], object]:
    channel_for = router(settings.routes, settings.fallback_channel)

    async def receive(request: web.Request) -> web.Response:
        if settings.webhook_token is None:
            return _refuse(503, "webhooks are off: set GRACE_WEBHOOK_TOKEN to turn them on")
        if not _authorized(request, settings.webhook_token.get_secret_value()):
            return _refuse(401, "missing or wrong bearer token", **{"WWW-Authenticate": "Bearer"})
        if request.content_type != "application/json":
            shown = request.content_type or "none"
            return _refuse(400, f"Content-Type must be application/json, not {shown}")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _refuse(413, f"body larger than {MAX_BODY_BYTES:,} bytes")
        try:
            alerts = parse(body, received_at=clock.now(), channel_for=channel_for)
        except IntakeError as exc:
            return _refuse(400, str(exc))
        if any(alert.channel is None for alert in alerts):
            return _refuse(503, "no channel to post in: set GRACE_DEFAULT_CHANNEL or routes")
        intakes = await healer.receive(alerts, delivery_key=f"{source}:{fresh_key()}")
        metrics.alerts(source, len(alerts))
        incidents = sorted({i.incident.id for i in intakes if i.incident is not None})
        opened = sum(i.opened for i in intakes)
        return web.json_response(
            {"ok": True, "received": len(alerts), "incidents": incidents, "opened": opened}
        )

    return receive


def _authorized(request: web.Request, token: str) -> bool:
    """Bearer token, compared in constant time."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token.encode())
