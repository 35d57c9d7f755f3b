"""A closed-loop HTTP/1.1 load client for the benches: several processes, keep-alive.

One asyncio client is itself the bottleneck near 8,000 requests/s, so the load
is spread over `procs` spawned processes, each driving `conns` keep-alive
connections. Every connection sends its requests one after another (one in
flight), straight from pre-built request bytes, and the next request goes out
from the callback that completed the previous one: no task switch per request.

Every process first sends its warm-up requests, says it is ready, then waits
for the go signal, so the measured part starts on warm connections and at the
same instant everywhere. Times are `time.monotonic()`, the system-wide
CLOCK_MONOTONIC on Linux: comparable across processes, and with the clock the
Slack stand-in stamps its calls with.

Loopback only, bounded in count (each request is sent once) and in time (a
deadline for the whole run, a timeout per request).
"""

from __future__ import annotations

import asyncio
import functools
import math
import multiprocessing as mp
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

LOOPBACK_PREFIXES = ("127.", "::1", "localhost")


@dataclass
class Sample:
    sent_at: float  # time.monotonic() when the request was written
    latency: float  # seconds until its whole answer was read
    status: int  # HTTP status; 0 when the connection failed
    body: bytes


@dataclass
class LoadResult:
    samples: list[Sample] = field(default_factory=list)
    unsent: int = 0  # requests the deadline left unsent
    cpu_s: float = 0.0  # user+system CPU seconds the client processes spent on the measured part
    errors: list[str] = field(default_factory=list)

    @property
    def first_sent(self) -> float:
        return min(s.sent_at for s in self.samples)

    @property
    def last_done(self) -> float:
        return max(s.sent_at + s.latency for s in self.samples)


def request_bytes(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: keep-alive"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


# ----------------------------------------------------------------- the client side


class _Conn(asyncio.Protocol):
    """Sends `requests[index:]` one at a time; `done` resolves when all are answered
    or when the connection is lost (the caller reconnects for the rest)."""

    def __init__(self, requests: Sequence[bytes], index: int, out: list[Sample | None]) -> None:
        self.requests, self.index, self.out = requests, index, out
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.sent_at = 0.0
        self.done: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def start(self) -> None:
        self._send_next()

    def _send_next(self) -> bool:
        """Send the next request; False (and finished) once every one was answered."""
        if self.index >= len(self.requests):
            self._finish("all answered")
            return False
        assert self.transport is not None
        self.sent_at = time.monotonic()
        self.transport.write(self.requests[self.index])
        return True

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            parsed = _parse_response(self.buf)
            if parsed is None:
                return
            status, body, used = parsed
            now = time.monotonic()
            del self.buf[:used]
            self.out[self.index] = Sample(self.sent_at, now - self.sent_at, status, body)
            self.index += 1
            if not self._send_next():
                return

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(f"connection lost: {exc or 'closed by the server'}")

    def _finish(self, why: str) -> None:
        if not self.done.done():
            self.done.set_result(why)


def _parse_response(buf: bytearray) -> tuple[int, bytes, int] | None:
    """(status, body, bytes used) of the first whole response in buf, or None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[:end]).decode("latin-1").split("\r\n")
    status = int(head[0].split(" ", 2)[1])
    length, chunked = 0, False
    for line in head[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    start = end + 4
    if not chunked:
        if len(buf) < start + length:
            return None
        return status, bytes(buf[start : start + length]), start + length
    body = bytearray()
    pos = start
    while True:
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size = int(bytes(buf[pos:line_end]).split(b";")[0], 16)
        pos = line_end + 2
        if len(buf) < pos + size + 2:
            return None
        if size == 0:
            trailer_end = buf.find(b"\r\n", pos)  # no trailers are expected
            return (status, bytes(body), trailer_end + 2) if trailer_end >= 0 else None
        body += buf[pos : pos + size]
        pos += size + 2


async def _drive(
    host: str,
    port: int,
    requests: Sequence[bytes],
    deadline: float,
    errors: list[str],
    conn: _Conn | None = None,
) -> tuple[list[Sample | None], _Conn | None]:
    """Send `requests` in order over one connection (reconnecting when it drops),
    until all are answered or the deadline passes. Returns the samples (None for
    the unsent) and the connection, still open, for the next phase."""
    loop = asyncio.get_running_loop()
    out: list[Sample | None] = [None] * len(requests)
    index = 0
    while index < len(requests):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            errors.append(f"deadline passed with {len(requests) - index} requests unsent")
            break
        if conn is None or conn.transport is None or conn.transport.is_closing():
            factory = functools.partial(_Conn, requests, index, out)
            try:
                _, conn = await asyncio.wait_for(
                    loop.create_connection(factory, host, port),
                    timeout=min(remaining, 10.0),
                )
            except (OSError, TimeoutError) as exc:
                errors.append(f"connect failed: {exc!r}")
                await asyncio.sleep(0.1)
                continue
        else:
            # Reuse the warm connection for a new list of requests.
            conn.requests, conn.index, conn.out = requests, index, out
            conn.done = loop.create_future()
        conn.start()
        try:
            why = await asyncio.wait_for(asyncio.shield(conn.done), timeout=remaining)
        except TimeoutError:
            why = "deadline"
        index = conn.index
        if index < len(requests):
            if why != "deadline" and conn.sent_at:
                # The request in flight got no answer: it counts as failed, not resent.
                out[index] = Sample(conn.sent_at, time.monotonic() - conn.sent_at, 0, b"")
                index += 1
            errors.append(why)
            if conn.transport is not None:
                conn.transport.close()
            conn = None
            if why == "deadline":
                break
    return out, conn


async def _phase(
    host: str,
    ports: list[int],
    shares: list[list[bytes]],
    conns: list[_Conn | None],
    deadline: float,
    errors: list[str],
) -> list[list[Sample | None]]:
    """Each connection's share, connection i to ports[i]."""
    triples = zip(ports, shares, conns, strict=True)
    results = await asyncio.gather(
        *(_drive(host, port, share, deadline, errors, conn) for port, share, conn in triples)
    )
    for i, (_, conn) in enumerate(results):
        conns[i] = conn
    return [samples for samples, _ in results]


def _split(requests: Sequence[bytes], parts: int) -> list[list[bytes]]:
    return [list(requests[i::parts]) for i in range(parts)]


def _worker(
    pipe: Any,
    host: str,
    ports: list[int],
    warmup: list[bytes],
    storm: list[bytes],
    conns: int,
    go: Any,
    time_limit: float,
) -> None:
    async def main() -> None:
        errors: list[str] = []
        connections: list[_Conn | None] = [None] * conns
        deadline = time.monotonic() + time_limit
        await _phase(host, ports, _split(warmup, conns), connections, deadline, errors)
        pipe.send(("ready", errors[:]))
        errors.clear()
        if not go.wait(timeout=time_limit):
            pipe.send(("result", [], len(storm), 0.0, ["no go signal"]))
            return
        deadline = time.monotonic() + time_limit
        before = os.times()
        shares = await _phase(host, ports, _split(storm, conns), connections, deadline, errors)
        after = os.times()
        cpu = (after.user - before.user) + (after.system - before.system)
        samples = [s for share in shares for s in share if s is not None]
        unsent = sum(s is None for share in shares for s in share)
        for conn in connections:
            if conn is not None and conn.transport is not None:
                conn.transport.close()
        pipe.send(("result", samples, unsent, cpu, errors[:20]))

    asyncio.run(main())


class Load:
    """Spawned client processes, connected and warmed up, waiting for `go()`.

    With `ports` (several servers, e.g. replicas), connection k of process i,
    the (i + procs * k)-th of all, goes to ports[(i + procs * k) % len(ports)]:
    as request j goes to that connection when j % (procs * conns) is its number,
    request j goes to ports[j % len(ports)] whenever len(ports) divides
    procs * conns. The requests' bytes are the caller's (their Host header may
    name another of the ports)."""

    def __init__(
        self,
        host: str,
        port: int,
        warmup: Sequence[bytes],
        storm: Sequence[bytes],
        *,
        procs: int,
        conns: int,
        time_limit: float = 120.0,
        ports: Sequence[int] = (),
    ) -> None:
        if not host.startswith(LOOPBACK_PREFIXES):
            raise ValueError(f"{host}: the bench sends load to loopback addresses only")
        ctx = mp.get_context("spawn")
        self._go = ctx.Event()
        self._pipes = []
        self._procs = []
        self.time_limit = time_limit
        warm_shares, storm_shares = _split(warmup, procs), _split(storm, procs)
        every = list(ports) or [port]
        for i in range(procs):
            parent, child = ctx.Pipe(duplex=False)
            proc = ctx.Process(
                target=_worker,
                args=(
                    child,
                    host,
                    [every[(i + procs * k) % len(every)] for k in range(conns)],
                    warm_shares[i],
                    storm_shares[i],
                    conns,
                    self._go,
                    time_limit,
                ),
                daemon=True,
            )
            proc.start()
            child.close()
            self._pipes.append(parent)
            self._procs.append(proc)

    def _recv(self, kind: str, timeout: float) -> list[Any]:
        out = []
        for pipe in self._pipes:
            if not pipe.poll(timeout):
                raise TimeoutError(f"a load process sent no {kind!r} within {timeout:.0f} s")
            message = pipe.recv()
            if message[0] != kind:
                raise RuntimeError(f"load process said {message[0]!r}, expected {kind!r}")
            out.append(message[1:])
        return out

    def wait_ready(self) -> list[str]:
        """Block until every process has warmed up; returns warm-up errors."""
        return [e for (errors,) in self._recv("ready", self.time_limit + 30) for e in errors]

    def go(self) -> None:
        self._go.set()

    def wait_result(self) -> LoadResult:
        result = LoadResult()
        for samples, unsent, cpu, errors in self._recv("result", self.time_limit + 30):
            result.samples += samples
            result.unsent += unsent
            result.cpu_s += cpu
            result.errors += errors
        self.close()
        return result

    def close(self) -> None:
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
        for pipe in self._pipes:
            pipe.close()


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of values (p in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(p / 100 * len(ordered))))
    return ordered[rank - 1]
