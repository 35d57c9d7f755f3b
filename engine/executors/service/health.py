"""Whether a service is healthy (its health URL answers, its port accepts a
connection), waiting up to the check's `within_s`, and how fast it answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
from pydantic import AnyHttpUrl, Field

from engine.executors.common import RepeatParams, median_seconds_async, poll_until
from engine.executors.service.client import ServiceHttp, excerpt, ms, shown
from engine.executors.service.config import join_host_port, tcp_address
from engine.executors.service.operations import OPS, Service
from engine.ports import TransientError, WaitingParams

_POLL_INTERVAL_S = 0.25

Answer = tuple[bool, str]


class HttpHealthyParams(WaitingParams):
    status: int = Field(default=200, ge=100, le=599)


class TcpOpenParams(WaitingParams):
    pass


@OPS.checks("http_healthy", HttpHealthyParams)
async def http_healthy(params: HttpHealthyParams, service: Service) -> Answer:
    url = service.config.health_url
    if url is None:
        return False, f"service {service.name!r} has no health_url configured"
    ok, detail = await _probe_until(
        lambda: _probe_http(service.http, url, params.status), params.within_s
    )
    return ok, f"service {service.name!r}: {detail}"


@OPS.checks("tcp_open", TcpOpenParams)
async def tcp_open(params: TcpOpenParams, service: Service) -> Answer:
    host, port = tcp_address(service.config)
    ok, detail = await _probe_until(lambda: _probe_tcp(service.http, host, port), params.within_s)
    return ok, f"service {service.name!r}: {detail}"


@OPS.benchmarks("health_latency", RepeatParams)
async def health_latency(params: RepeatParams, service: Service) -> float:
    """Median seconds of the HTTP health request (else the TCP connect).

    Only time: whether the answer was healthy is the checks' business.
    """
    return await median_seconds_async(lambda: _reach(service), params.repeat)


async def _reach(service: Service) -> None:
    url = service.config.health_url
    host, port = tcp_address(service.config)
    try:
        if url is not None:
            await service.http.request("GET", url)
        else:
            await service.http.connect(host, port)
    except (aiohttp.ClientError, OSError) as exc:
        where = shown(url) if url is not None else f"tcp {join_host_port(host, port)}"
        why = service.http.why(exc)
        raise TransientError(f"service {service.name!r}: health latency of {where}: {why}") from exc


async def _probe_until(probe: Callable[[], Awaitable[Answer]], within_s: float) -> Answer:
    """Probe until it passes or `within_s` has passed; the last answer says how it went."""
    (ok, detail), waited, tries = await poll_until(
        probe, lambda answer: answer[0], within_s, _POLL_INTERVAL_S
    )
    if tries > 1:
        detail += f" (try {tries}, after {waited:.1f} s)"
    return ok, detail


async def _probe_http(http: ServiceHttp, url: AnyHttpUrl, expected: int) -> Answer:
    try:
        reply = await http.request("GET", url)
    except (aiohttp.ClientError, OSError) as exc:
        return False, f"{shown(url)} did not answer: {http.why(exc)}"
    if reply.status == expected:
        return True, f"{shown(url)} answered {reply.summary()}"
    return False, (
        f"{shown(url)} answered {reply.summary()}, expected {expected}{excerpt(reply.body)}"
    )


async def _probe_tcp(http: ServiceHttp, host: str, port: int) -> Answer:
    where = f"tcp {join_host_port(host, port)}"
    try:
        seconds = await http.connect(host, port)
    except OSError as exc:
        return False, f"{where} did not accept a connection: {http.why(exc)}"
    return True, f"{where} accepted a connection in {ms(seconds)}"
