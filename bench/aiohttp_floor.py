"""The floors under every webhook: how fast aiohttp answers a POST that does nothing,
and GRACE's own handler with nothing, or only rows, stored behind it.

A handler that reads the body and answers `{"ok": true}` is served in a
spawned process, on asyncio's loop and then on uvloop, and driven by the same
client as the alert storm (bench/_load.py). Whatever GRACE does per request
(validation, storage, audit) comes on top of this, so it bounds what
`bench/alert_storm.py` can show for one alert per request.

With `--servers 2` the same handler also runs in two processes accepting from
one listening socket: the most a webhook front spread over both cores could
take, beside the client, on this machine.

With `--handler webhook` the server is GRACE's own `POST /alerts/alertmanager`
(bot.webhooks: bearer token, content type, parsing, routing, metrics, the
answer) in front of a healer that stores nothing, fed the alert storm's
bodies, one alert per request or `--batch` of them: what GRACE's request
path costs before a single alert is stored, the ceiling of alert_storm.py.
`--handler rows` puts behind it the least a durable intake of one row per
alert can do: each alert as intake's own row of the real `alerts` table,
through the real group writer (merged passes, one `executemany`), in a
fresh database; no dedupe, no incident, no audit row.

    .venv/bin/python bench/aiohttp_floor.py [--requests 20000] [--rounds 2] [--servers 1 2]
        [--handler noop|webhook|rows] [--batch 1]

A benchmark, not a test: it prints numbers and exits 0.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import shutil
import socket
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # GRACE, for --handler webhook|rows

from _load import Load, percentile, request_bytes

HOST = "127.0.0.1"
BODY = b'{"receiver":"grace","status":"firing","alerts":[]}'
TOKEN = "floor-token"
FINGERPRINTS = 500
"""The storm's, as in alert_storm.py: 5 alertnames of 100 fingerprints."""


class _Forgetful:
    """A healer that stores nothing: every alert gets `Intake(incident=None)`."""

    async def receive(self, alerts: Sequence[Any], delivery_key: str) -> list[Any]:
        from engine.models import Intake

        return [Intake(incident=None)] * len(alerts)


class _RowsOnly(_Forgetful):
    """A healer that stores each alert as one row and nothing else, durably."""

    def __init__(self, db: str) -> None:
        self.db = db
        self.writer: Any = None

    async def start(self, app: object) -> None:
        from storage.db import connect, migrate
        from storage.writer import GroupWriter

        conn = await connect(self.db)
        await migrate(conn)
        await conn.close()
        self.writer = await GroupWriter.start(self.db)

    async def receive(self, alerts: Sequence[Any], delivery_key: str) -> list[Any]:
        await self.writer.run_merged(_insert_rows, alerts)
        return await super().receive(alerts, delivery_key)


def _insert_rows(conn: Any, deliveries: Sequence[Sequence[Any]]) -> list[None]:
    """Intake's own alert rows (ids left to SQLite), one `executemany` for the pass."""
    from storage.alert_rows import alert_row
    from storage.rows import INSERT_ALERT

    conn.executemany(
        INSERT_ALERT, [alert_row(alert, None, None) for alerts in deliveries for alert in alerts]
    )
    return [None] * len(deliveries)


def _serve(sock: socket.socket, loop_name: str, handler: str, db: str) -> None:
    from aiohttp import web

    async def noop(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ok": True})

    app = web.Application()
    if handler in ("webhook", "rows"):
        from bot.metrics import Metrics
        from bot.settings import Settings
        from bot.webhooks import add_routes
        from engine.clock import SystemClock

        healer = _Forgetful()
        if handler == "rows":
            healer = _RowsOnly(db)
            app.on_startup.append(healer.start)
        settings = Settings(webhook_token=TOKEN, default_channel="C0FLOOR")
        add_routes(app, healer, settings, Metrics(), SystemClock())  # type: ignore[arg-type]
    else:
        app.router.add_post("/alerts/alertmanager", noop)
    if loop_name == "uvloop":
        import uvloop

        uvloop.install()
    web.run_app(app, sock=sock, access_log=None, print=None)


def _bodies(handler: str, batch: int) -> list[bytes]:
    """One request body per fingerprint group of the storm (or the no-op's one)."""
    if handler == "noop":
        return [BODY]  # the same body each time: a no-op reads nothing in it
    import datetime as dt

    from _storm_plan import Bodies, Mode, storm_groups

    mode = Mode("single" if batch == 1 else "batched", FINGERPRINTS, 1, batch)
    bodies = Bodies(dt.datetime.now(dt.UTC))
    return [bodies.grace(mode, ks) for ks in storm_groups(mode)]


def _measure(
    loop_name: str, requests: int, servers: int, handler: str, batch: int
) -> tuple[float, float]:
    """(requests/s, p99 ms) of one storm of `requests` POSTs."""
    sock = socket.socket()
    sock.bind((HOST, 0))
    sock.listen(128)  # the client may connect before the server processes accept
    port = sock.getsockname()[1]
    spawn = mp.get_context("spawn")
    workdir = tempfile.mkdtemp(prefix="grace-floor-")
    # Two servers with rows would write one database each: each is its own store.
    processes = [
        spawn.Process(
            target=_serve,
            args=(sock, loop_name, handler, f"{workdir}/grace-{n}.db"),
            daemon=True,
        )
        for n in range(servers)
    ]
    for process in processes:
        process.start()
    try:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
        built = [
            request_bytes(HOST, port, "/alerts/alertmanager", body, headers)
            for body in _bodies(handler, batch)
        ]
        storm = [built[i % len(built)] for i in range(requests)]
        load = Load(HOST, port, storm[:200], storm, procs=2, conns=8)
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
        shutil.rmtree(workdir, ignore_errors=True)
    ok = [s for s in result.samples if s.status == 200]
    rate = len(ok) / (result.last_done - result.first_sent)
    return rate, percentile([s.latency for s in ok], 99) * 1000


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--servers", type=int, nargs="+", default=[1], help="server processes")
    parser.add_argument("--handler", choices=["noop", "webhook", "rows"], default="noop")
    parser.add_argument("--batch", type=int, default=1, help="alerts per webhook request")
    parser.add_argument(
        "--loops", nargs="+", choices=["asyncio", "uvloop"], default=["asyncio", "uvloop"]
    )
    args = parser.parse_args(argv)
    if args.batch != 1:
        from _storm_plan import ALERTNAMES

        per_name = FINGERPRINTS // ALERTNAMES
        if args.handler == "noop" or per_name % args.batch:
            parser.error(f"--batch needs --handler webhook or rows and must divide {per_name}")
    for round_ in range(1, args.rounds + 1):
        for servers in args.servers:
            for loop_name in args.loops:
                rate, p99 = _measure(loop_name, args.requests, servers, args.handler, args.batch)
                alerts = "" if args.handler == "noop" else f"{rate * args.batch:9,.0f} alerts/s  "
                print(
                    f"round {round_}  {args.handler} {servers} x {loop_name:8s} "
                    f"{rate:8,.0f} requests/s  {alerts}"
                    f"{1e6 / rate:5.1f} µs each  p99 {p99:.2f} ms"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
