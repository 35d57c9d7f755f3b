"""Talking to a service: one HTTP request or TCP connect at a time, its admin
endpoint's log level, and how URLs, bodies and failures are shown in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass

import aiohttp
from pydantic import AnyHttpUrl

from engine.executors.common import shorten
from engine.executors.service.config_edit import ServiceError
from engine.ports import TransientError

_MAX_BODY_BYTES = 64 * 1024
_EXCERPT_CHARS = 120


@dataclass(frozen=True)
class Reply:
    status: int
    reason: str
    body: bytes
    seconds: float

    def summary(self) -> str:
        return f"HTTP {self.status} {self.reason}".rstrip() + f" in {ms(self.seconds)}"


class ServiceHttp:
    """Requests and connects that give up after `timeout_s`."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s

    async def request(
        self, method: str, url: AnyHttpUrl, payload: dict[str, str] | None = None
    ) -> Reply:
        """One request on its own connection, so its time includes the connect,
        as a client's would. Redirects are answers, not followed."""
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            started = time.perf_counter()
            async with session.request(
                method, str(url), json=payload, allow_redirects=False
            ) as response:
                body = await response.content.read(_MAX_BODY_BYTES)
            seconds = time.perf_counter() - started
        return Reply(response.status, response.reason or "", body, seconds)

    async def connect(self, host: str, port: int) -> float:
        """Seconds to open a TCP connection, which is then closed."""
        started = time.perf_counter()
        async with asyncio.timeout(self.timeout_s):
            _, writer = await asyncio.open_connection(host, port)
        seconds = time.perf_counter() - started
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return seconds

    async def act(
        self,
        name: str,
        what: str,
        method: str,
        url: AnyHttpUrl,
        payload: dict[str, str] | None = None,
    ) -> Reply:
        """A request that changes (or reads for changing) the service: a
        refused connection, a timeout, a 5xx, 408 or 429 are worth retrying;
        any other answer but 2xx is final."""
        where = f"service {name!r}: {what} at {shown(url)}"
        try:
            reply = await self.request(method, url, payload)
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
            raise TransientError(f"{where} failed: {self.why(exc)}") from exc
        if reply.status >= 500 or reply.status in (408, 429):
            raise TransientError(f"{where} failed: {reply.summary()}{excerpt(reply.body)}")
        if not 200 <= reply.status < 300:
            refused = f"{what} at {shown(url)} was refused: {reply.summary()}"
            raise ServiceError(refused + excerpt(reply.body))
        return reply

    async def admin_level(self, name: str, url: AnyHttpUrl) -> str:
        reply = await self.act(name, "reading the log level", "GET", url)
        try:
            data = json.loads(reply.body)
        except ValueError:
            data = None
        level = data.get("level") if isinstance(data, dict) else None
        if not isinstance(level, str) or not level:
            raise ServiceError(f'{shown(url)} did not answer {{"level": ...}}{excerpt(reply.body)}')
        return level

    async def put_level(self, name: str, url: AnyHttpUrl, level: str) -> Reply:
        return await self.act(name, "setting the log level", "PUT", url, {"level": level})

    def why(self, exc: BaseException) -> str:
        """Why a request or connect failed, in words for a thread."""
        if isinstance(exc, TimeoutError):
            return f"no answer within {self.timeout_s:g} s"
        return str(exc) or type(exc).__name__


def shown(url: AnyHttpUrl) -> str:
    """The URL without its query, which may carry a token, for threads and logs."""
    text = str(url)
    return text.split("?", 1)[0] + ("?…" if url.query else "")


def excerpt(body: bytes) -> str:
    """The start of a body, whitespace folded and control characters escaped."""
    if not body:
        return ""
    return f"; body: {shorten(body.decode('utf-8', 'replace'), _EXCERPT_CHARS)!r}"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"
