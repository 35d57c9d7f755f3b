"""The floor under every webhook: how fast aiohttp answers a POST that does nothing.

A handler that reads the body and answers `{"ok": true}` is served in a
spawned process, on asyncio's loop and then on uvloop, and driven by the same
client as the alert storm (bench/_load.py). Whatever GRACE does per request
(validation, storage, audit) comes on top of this, so it bounds what
`bench/alert_storm.py` can show for one alert per request.

With `--servers 2` the same handler also runs in two processes accepting from
one listening socket: the most a webhook front spread over both cores could
take, beside the client, on this machine.

    .venv/bin/python bench/aiohttp_floor.py [--requests 20000] [--rounds 2] [--servers 1 2]

A benchmark, not a test: it prints numbers and exits 0.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _load import Load, percentile, request_bytes

HOST = "127.0.0.1"
BODY = b'{"receiver":"grace","status":"firing","alerts":[]}'


def _serve(sock: socket.socket, loop_name: str) -> None:
    from aiohttp import web

    async def noop(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/alerts/alertmanager", noop)
    if loop_name == "uvloop":
        import uvloop

        uvloop.install()
    web.run_app(app, sock=sock, access_log=None, print=None)


def _measure(loop_name: str, requests: int, servers: int) -> tuple[float, float]:
    """(requests/s, p99 ms) of one storm of `requests` no-op POSTs."""
    sock = socket.socket()
    sock.bind((HOST, 0))
    sock.listen(128)  # the client may connect before the server processes accept
    port = sock.getsockname()[1]
    spawn = mp.get_context("spawn")
    processes = [
        spawn.Process(target=_serve, args=(sock, loop_name), daemon=True) for _ in range(servers)
    ]
    for process in processes:
        process.start()
    try:
        request = request_bytes(
            HOST, port, "/alerts/alertmanager", BODY, {"Content-Type": "application/json"}
        )
        load = Load(HOST, port, [request] * 200, [request] * requests, procs=2, conns=8)
        errors = load.wait_ready()
        if errors:
            raise RuntimeError(f"warm-up failed: {errors[:3]}")
        load.go()
        result = load.wait_result()
    finally:
        for process in processes:
            process.terminate()
            process.join(timeout=5)
        sock.close()
    ok = [s for s in result.samples if s.status == 200]
    rate = len(ok) / (result.last_done - result.first_sent)
    return rate, percentile([s.latency for s in ok], 99) * 1000


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--servers", type=int, nargs="+", default=[1], help="server processes")
    args = parser.parse_args(argv)
    for round_ in range(1, args.rounds + 1):
        for servers in args.servers:
            for loop_name in ("asyncio", "uvloop"):
                rate, p99 = _measure(loop_name, args.requests, servers)
                print(
                    f"round {round_}  {servers} x {loop_name:8s} {rate:8,.0f} requests/s  "
                    f"{1e6 / rate:5.1f} µs each  p99 {p99:.2f} ms"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
