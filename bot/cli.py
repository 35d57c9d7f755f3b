"""`grace`: run the bot, show a demo, check the config, verify the audit log."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
from slack_sdk.errors import SlackApiError

from bot.preflight import SlackUnreachable, StoreUnreachable
from bot.settings import ConfigError, Settings, load_settings
from bot.stats_text import stats_json, stats_text
from engine.api import CatalogError, SystemClock, survey
from engine.models import AuditEntry
from engine.records import StoreInfo

if TYPE_CHECKING:
    from bot.app import Grace
    from engine.storage_ports import GraceStore

EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 75
"""sysexits' EX_TEMPFAIL: Slack could not be asked at start-up. Unlike a config
mistake (2), trying again later may work, so a supervisor should restart GRACE
on 75 and may stop restarting it on 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="grace", description="GRACE, the Slack bot that heals.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "run", help="serve Slack (HTTP, or Socket Mode when SLACK_APP_TOKEN is set)"
    )
    demo = commands.add_parser("demo", help="one whole incident against a local Slack stand-in")
    demo.add_argument(
        "--socket-mode", action="store_true", help="deliver over Socket Mode, not HTTP"
    )
    devslack = commands.add_parser(
        "devslack", help="a local Slack stand-in with a web page, to try GRACE before installing"
    )
    devslack.add_argument("--port", type=int, default=3001, help="its port on 127.0.0.1")
    devslack.add_argument(
        "--request-url", help="POST deliveries to GRACE's /slack/events here (default: Socket Mode)"
    )
    commands.add_parser("check", help="validate the config and every playbook")
    simulate = commands.add_parser(
        "simulate", help="how GRACE would read an alert (a payload, a Slack message, a line)"
    )
    simulate.add_argument("file", help="the payload, Slack message event or text; - for stdin")
    simulate.add_argument(
        "--source", help="the webhook source, slack or text (default: guessed from the file)"
    )
    simulate.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME:VALUE",
        help="a request header reading needs (Sentry-Hook-Resource: issue)",
    )
    audit = commands.add_parser("audit", help="the hash-chained audit log")
    audit.add_argument("action", choices=["verify", "export"])
    audit.add_argument("--since", help="export: rows at or after this ISO date or time (UTC)")
    audit.add_argument("--out", type=Path, help="export: write JSON lines here, not stdout")
    stats = commands.add_parser("stats", help="what GRACE did over the last days")
    stats.add_argument("--days", type=_days, default=7, help="the period, in days (default 7)")
    stats.add_argument("--json", action="store_true", help="the numbers as JSON")
    report = commands.add_parser("report", help="post the report of the last 7 days to Slack")
    report.add_argument("--now", action="store_true", required=True, help="post it now")
    report.add_argument("--channel", help="the channel ID (default: weekly_report.channel)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # slack_sdk logs every retry of a failed connection at INFO; GRACE says it once, itself.
    logging.getLogger("slack_sdk.web").setLevel(logging.WARNING)
    try:
        if args.command == "demo":
            from bot.demo import run_demo

            return asyncio.run(run_demo(socket_mode=args.socket_mode))
        settings = load_settings()
        if args.command == "devslack":
            return asyncio.run(_devslack(settings, args.port, args.request_url))
        if args.command == "run":
            with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
                return runner.run(_run(settings))
        if args.command == "check":
            return _check(settings)
        if args.command == "simulate":
            return asyncio.run(_simulate(settings, args.file, args.source, args.header))
        if args.command == "stats":
            return asyncio.run(_stats(settings, args.days, as_json=args.json))
        if args.command == "report":
            return asyncio.run(_report_now(settings, args.channel))
        if args.action == "export":
            return _audit_export(settings, _since(args.since), args.out)
        return asyncio.run(_audit_verify(settings))
    except (ConfigError, CatalogError) as exc:
        print(f"grace: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (SlackUnreachable, StoreUnreachable) as exc:
        print(f"grace: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:  # Ctrl-C where GRACE does not listen for it: a quiet exit
        return 130


async def _run(settings: Settings) -> int:
    from bot.app import build

    # From here on a signal stops GRACE cleanly. Start-up is bounded (each call to
    # Slack has a timeout): a signal during it takes effect as soon as it is done.
    stop = _stop_on_signals()
    grace = await build(settings)
    try:
        await grace.start()
        freeze_startup_heap()
        print(f"GRACE is running on {grace.url} (Ctrl-C to stop)", flush=True)
        await _serve_until_signalled(grace, stop)
    finally:
        await grace.stop()
    return 0


async def _devslack(settings: Settings, port: int, request_url: str | None) -> int:
    from bot.devslack.serve import serve

    return await serve(settings, port, request_url, _stop_on_signals())


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed: it serves the same webhooks with ~5% less CPU
    (bench/RESULTS.md). None means asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def freeze_startup_heap() -> None:
    """Keep the garbage collector off everything GRACE built to start.

    Modules, models, catalogs and connections live as long as the process. A
    full collection walks them all, and in an alert storm one such walk held
    requests up for ~50 ms (bench/RESULTS.md); frozen, collections walk only
    what requests create.
    """
    gc.collect()
    gc.freeze()


def _stop_on_signals() -> asyncio.Event:
    """An event SIGINT and SIGTERM set, in place of dying half-way through a heal."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _serve_until_signalled(grace: Grace, stop: asyncio.Event) -> None:
    """Serve until `stop`; in Socket Mode, keep the link to Slack up meanwhile.

    The link runs beside the wait rather than before it, so a signal ends a
    connection attempt or a wait between attempts as promptly as a served one.
    """
    if grace.settings.slack_app_token is None:
        await stop.wait()
        return
    from bot.socket_mode import SocketModeLink

    link = SocketModeLink(grace.bolt, grace.settings.slack_app_token.get_secret_value())
    running = asyncio.ensure_future(link.run())
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({running, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if running.done():
            running.result()  # a refused SLACK_APP_TOKEN: raised as the ConfigError it is
    finally:
        for task in (running, stopped):
            task.cancel()
        await asyncio.gather(running, stopped, return_exceptions=True)
        await link.close()


def _check(settings: Settings) -> int:
    from bot.app import load_playbooks, make_executors, survey_grace_store

    executors = make_executors(settings, SystemClock())
    catalog = load_playbooks(settings, executors)
    print(f"config ok: {len(catalog.patterns)} patterns, {len(catalog.playbooks)} playbooks")
    print(_store_line(asyncio.run(survey_grace_store(settings))))
    for name, availability in asyncio.run(survey(executors)).items():
        print(f"executor {name}: {'ready' if availability.ok else availability.reason}")
    warnings = []
    if not settings.alert_channels:
        warnings.append("GRACE_ALERT_CHANNELS is empty: no Slack message will be read as an alert")
    for tier in (2, 3):
        if not settings.approval_policy.approvers.get(tier):
            warnings.append(f"approvers.tier{tier} is empty: tier {tier} plans cannot be approved")
    for playbook in catalog.playbooks:
        if not settings.targets.get(playbook.target.executor):
            executor = playbook.target.executor
            warnings.append(f"targets.{executor} is empty: {playbook.id} will refuse every target")
    for warning in warnings:
        print(f"warning: {warning}")
    return 0


def _store_line(info: StoreInfo) -> str:
    server = f", PostgreSQL {info.server}" if info.server else ""
    if info.current == 0:
        schema = f"not created yet (start-up applies migrations 1-{info.newest})"
    elif info.current < info.newest:
        schema = f"schema {info.current}, start-up applies up to {info.newest}"
    elif info.current > info.newest:
        schema = f"schema {info.current}, newer than this GRACE's {info.newest}"
    else:
        schema = f"schema {info.current}, up to date"
    return f"store: {info.kind} {info.where}{server}; {schema}"


async def _simulate(settings: Settings, file: str, source: str | None, header: list[str]) -> int:
    """Exit 0 when a plan was found, 1 when none was, 2 when the input cannot be read."""
    from bot.simulate import SimulationError, Simulator, exit_status, report

    raw = _read_input(file)
    headers = dict(_header(entry) for entry in header)
    simulator = Simulator(settings)
    try:
        simulation = await simulator.simulate(raw, source, headers)
    except SimulationError as exc:
        raise ConfigError(f"{file}: {exc}") from None
    finally:
        await simulator.aclose()
    report(simulation)
    return exit_status(simulation)


def _read_input(file: str) -> bytes:
    if file == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(file).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror or exc}") from None


def _header(entry: str) -> tuple[str, str]:
    name, sep, value = entry.partition(":")
    if not sep or not name.strip():
        raise ConfigError(f"--header {entry!r}: expected NAME:VALUE")
    return name.strip(), value.strip()


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--since {text!r}: not an ISO date or time, e.g. 2026-11-24") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _audit_export(settings: Settings, since: datetime | None, out: Path | None) -> int:
    """Every audit row (since a time) as one JSON object a line, in chain order."""
    entries = asyncio.run(_audit_entries(settings, since))
    lines = "".join(entry.model_dump_json() + "\n" for entry in entries)
    if out is None:
        sys.stdout.write(lines)
    else:
        out.write_text(lines)
        print(f"wrote {len(entries)} audit rows to {out}", file=sys.stderr)
    return 0


async def _audit_entries(settings: Settings, since: datetime | None) -> list[AuditEntry]:
    store = await _open_existing(settings)
    try:
        return await store.audit_entries(since=since)
    finally:
        await store.close()


MAX_STATS_DAYS = 3650


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of days: {text!r}") from None
    if not 1 <= days <= MAX_STATS_DAYS:
        raise argparse.ArgumentTypeError(f"between 1 and {MAX_STATS_DAYS} days, not {days}")
    return days


async def _stats(settings: Settings, days: int, *, as_json: bool) -> int:
    """`grace stats`: the period's numbers against the period before, as text or JSON."""
    store = await _open_existing(settings)
    try:
        report = await store.stats(until=SystemClock().now(), days=days)
        changes = await store.playbook_tiers()
    finally:
        await store.close()
    if as_json:
        print(json.dumps(stats_json(report, days), indent=2))
        return 0
    from bot.app import load_playbooks, make_executors

    catalog = load_playbooks(settings, make_executors(settings, SystemClock()))
    print(stats_text(report, days, catalog.playbooks, changes))
    return 0


async def _report_now(settings: Settings, channel: str | None) -> int:
    from bot.app import load_playbooks, make_executors
    from bot.report_now import on_demand_schedule, post_now

    settings.require("slack_bot_token", why="to post the report")
    schedule = on_demand_schedule(settings, channel)
    catalog = load_playbooks(settings, make_executors(settings, SystemClock()))
    store = await _open_existing(settings)
    try:
        ts = await post_now(settings, schedule, store, catalog.playbooks, SystemClock())
    except SlackApiError as exc:
        print(f"grace: Slack refused the report: {exc.response.get('error')}", file=sys.stderr)
        return 1
    except (OSError, aiohttp.ClientError) as exc:
        print(f"grace: could not reach Slack to post the report: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    finally:
        await store.close()
    print(f"report posted in {schedule.channel} (ts {ts}), its chart in the thread")
    return 0


async def _open_existing(settings: Settings) -> GraceStore:
    from bot.app import open_grace_store

    return await open_grace_store(settings, SystemClock(), create=False)


async def _audit_verify(settings: Settings) -> int:
    store = await _open_existing(settings)
    try:
        report = await store.verify_audit()
        digests = await store.verify_alert_digests() if report.ok else None
    finally:
        await store.close()
    if not report.ok:
        print(f"audit chain BROKEN at row {report.first_bad_seq}: {report.problem}")
        return 1
    print(f"audit chain ok: {report.rows} rows")
    assert digests is not None
    if not digests.ok:
        for problem in digests.problems:
            print(f"stored alerts do not match their audit row: {problem}")
        return 1
    print(f"stored alerts match their audit rows: {digests.rows} deliveries")
    return 0
