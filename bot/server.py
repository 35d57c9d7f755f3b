"""The aiohttp server: Slack's request URL, alert webhooks, health and metrics."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp

from bot import webhooks
from bot.metrics import CONTENT_TYPE, Metrics
from bot.settings import Settings
from engine.healer import Healer
from engine.intake.errors import MAX_BODY_BYTES
from engine.intake.sources import WebhookSource
from engine.ports import Clock
from storage.store import SqliteStore


def make_web_app(
    bolt: AsyncApp,
    store: SqliteStore,
    healer: Healer,
    settings: Settings,
    metrics: Metrics,
    clock: Clock,
    sources: Mapping[str, WebhookSource],
) -> web.Application:
    async def slack_events(request: web.Request) -> web.Response:
        response = await bolt.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(response)

    async def healthz(request: web.Request) -> web.Response:
        await store.outbox_pending()  # proves the database answers
        return web.json_response({"ok": True})

    async def prometheus(request: web.Request) -> web.Response:
        body = metrics.render(outbox_pending=await store.outbox_pending())
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    # Anything bigger than the largest alert batch is refused with 413 before it is read.
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_post("/slack/events", slack_events)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", prometheus)
    webhooks.add_routes(app, sources, healer, settings, metrics, clock)
    return app
