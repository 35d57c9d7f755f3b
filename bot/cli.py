"""`grace`: run the bot, show a demo, check the config, verify the audit log."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bot.settings import ConfigError, Settings, load_settings
from engine.catalog import CatalogError

if TYPE_CHECKING:
    from bot.app import Grace

EXIT_CONFIG = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="grace", description="GRACE, the Slack bot that heals.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "run", help="serve Slack (HTTP, or Socket Mode when SLACK_APP_TOKEN is set)"
    )
    commands.add_parser("demo", help="one whole incident against a local Slack stand-in")
    commands.add_parser("check", help="validate the config and every playbook")
    audit = commands.add_parser("audit", help="the hash-chained audit log")
    audit.add_argument("action", choices=["verify"])
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        if args.command == "demo":
            from bot.demo import run_demo

            return asyncio.run(run_demo())
        settings = load_settings()
        if args.command == "run":
            return asyncio.run(_run(settings))
        if args.command == "check":
            return _check(settings)
        return asyncio.run(_audit_verify(settings))
    except (ConfigError, CatalogError) as exc:
        print(f"grace: {exc}", file=sys.stderr)
        return EXIT_CONFIG


async def _run(settings: Settings) -> int:
    from bot.app import build

    grace = await build(settings)
    try:
        await grace.start()
        await _serve_until_signalled(grace)
    finally:
        await grace.stop()
    return 0


async def _serve_until_signalled(grace: Grace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    socket_mode = None
    if grace.settings.slack_app_token is not None:
        from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

        token = grace.settings.slack_app_token.get_secret_value()
        socket_mode = AsyncSocketModeHandler(grace.bolt, token)
        await socket_mode.connect_async()
    print(f"GRACE is running on {grace.url} (Ctrl-C to stop)", flush=True)
    await stop.wait()
    if socket_mode is not None:
        await socket_mode.close_async()


def _check(settings: Settings) -> int:
    from bot.app import load_playbooks, make_executors
    from engine.clock import SystemClock

    catalog = load_playbooks(settings, make_executors(settings, SystemClock()))
    print(f"config ok: {len(catalog.patterns)} patterns, {len(catalog.playbooks)} playbooks")
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


async def _audit_verify(settings: Settings) -> int:
    from engine.clock import SystemClock
    from storage.store import SqliteStore

    if not settings.db.is_file():
        raise ConfigError(f"GRACE_DB={settings.db}: no such database")
    store = await SqliteStore.open(settings.db, SystemClock())
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
