"""The aiohttp server: Slack's request URL and the health check."""

from __future__ import annotations

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp

from storage.store import SqliteStore

# Slack payloads are small; anything bigger is not Slack.
MAX_BODY = 1024 * 1024


def make_web_app(bolt: AsyncApp, store: SqliteStore) -> web.Application:
    async def slack_events(request: web.Request) -> web.Response:
        response = await bolt.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(response)

    async def healthz(request: web.Request) -> web.Response:
        await store.get_incident(0)  # proves the database answers
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post("/slack/events", slack_events)
    app.router.add_get("/healthz", healthz)
    return app
