"""`/grace`: what GRACE knows, and asking it to heal something by name.

A dispatcher: the answers are built in bot/reports.py and bot/blocks.py.
Answers that are instant are the ack itself (Slack shows them to the person
alone); a heal, and anything that asks the executors, is acked at once and
answered through the command's response_url when it is done. Command text is
untrusted: it is escaped wherever it is echoed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.blocks import STATE_LABEL, TEXT_LIMIT, cap, escape, readiness_text
from bot.ids import Command, slack_id, slack_id_at
from bot.inbox import Inbox
from bot.listeners.errors import refuse
from bot.playbook_text import dry_run_text, playbooks_text
from bot.reports import (
    LIST_LIMIT,
    Status,
    incidents_text,
    status_text,
    story_answer,
)
from bot.stats_text import STATS_USAGE, stats_text
from engine.api import PERIODS, Healer, TierChange
from engine.models import Incident
from engine.storage_ports import ReportStore

log = logging.getLogger(__name__)

DRY_RUN_FLAG = "--dry-run"
HEAL_USAGE = f"`/grace heal PLAYBOOK TARGET [{DRY_RUN_FLAG}]`"
CLEAR_USAGE = "`/grace clear TARGET`"
INCIDENTS_USAGE = "`/grace incidents [open|all|N]`"
NO_ARGUMENTS = ("status", "playbooks", "resume", "cloud")
ECHO_LIMIT = 60  # characters of a person's own words quoted back in an error
INCIDENT_ID = re.compile(r"#?([0-9]{1,9})")

HELP = "\n".join(
    [
        "*GRACE* heals production systems from Slack. `/grace` commands:",
        "• `/grace help`: this list",
        "• `/grace status`: paused or not, open incidents, approvals waiting and their "
        "deadlines, executors that cannot act, open breakers, held targets, Slack writes queued",
        f"• {INCIDENTS_USAGE}: the latest incidents (open ones, or all) with a link to each "
        "card; with an incident's number, its whole story",
        "• `/grace playbooks`: the playbooks GRACE knows, with their tier and executor",
        "• `/grace heal PLAYBOOK TARGET`: open an incident that runs PLAYBOOK on TARGET in this "
        "channel; its card asks for approval as its tier requires",
        f"• `/grace heal PLAYBOOK TARGET {DRY_RUN_FLAG}`: what that would do, touching nothing",
        "• `/grace pause [reason]`: the kill switch (admins): nothing new runs, tier 1 included",
        "• `/grace resume`: lift it (admins); approved plans that waited then run",
        "• `/grace clear TARGET`: after a safe hold or an interrupted run, say TARGET is checked "
        "(admins); GRACE may act on it again",
        "• `/grace cloud`: which executors can act here and why not; open breakers; held targets",
        "• `/grace stats [7d|30d|90d]`: what GRACE did in the last 7 (30, 90) days: incidents "
        "and how they ended, heals and their success, times to resolve and to approve, top "
        "alerts and each playbook's record, against the period before",
    ]
)


@dataclass(frozen=True)
class HealRequest:
    playbook: str
    target: str
    dry_run: bool


@dataclass(frozen=True)
class Where:
    """Who typed the command, and where."""

    user: str
    channel: str
    team_domain: str


KIND = "command"
"""Commands that change something (heal, pause, resume, clear) go through the inbox."""


def register(app: AsyncApp, healer: Healer, inbox: Inbox, reports: ReportStore) -> None:
    """`reports` is the store's reads for people: status, incidents, stats, tiers."""
    app.command(Command.GRACE)(_on_grace(healer, inbox, reports))
    inbox.handle(KIND, lambda payload: _carry_out(healer, app.client, payload))


def _on_grace(healer: Healer, inbox: Inbox, store: ReportStore) -> Any:
    async def on_grace(
        ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond
    ) -> BoltResponse | None:
        user = slack_id_at(command, "user", "user_id")
        channel = slack_id_at(command, "channel", "channel_id")
        trigger_id = slack_id_at(command, "trigger", "trigger_id")
        response_url = command.get("response_url")
        if user is None or channel is None or trigger_id is None or not response_url:
            return refuse("a command needs Slack's user_id, channel_id, trigger_id, response_url")
        words = slack_unescape(str(command.get("text") or "")).split()
        sub, args = (words[0].lower(), words[1:]) if words else ("help", [])
        # Only ever part of a link to a card: a domain of Slack's shape, or none.
        team_domain = slack_id("team domain", command.get("team_domain")) or ""
        refusal = _argument_error(sub, args)
        if refusal is not None:
            await _answer(ack, refusal)
            return None
        if sub in ("heal", "pause", "resume", "clear"):
            # Committed before Slack's answer: a command Slack delivered is carried out
            # even if GRACE dies right after answering, and only once.
            payload = {
                "sub": sub,
                "args": args,
                "user": user,
                "channel": channel,
                "team_domain": team_domain,
                "response_url": str(response_url),
                "trigger_id": trigger_id,
            }
            await inbox.accept(f"command:{payload['trigger_id']}", KIND, payload)
            await ack()
            return None
        if sub in ("cloud", "status", "incidents", "stats"):
            # After the ack: asking the executors may take seconds, and the ack of every
            # other request must not wait behind a report's reads.
            await ack()
            reports = {
                "cloud": partial(_cloud, healer),
                "status": partial(_status, healer, store, team_domain),
                "incidents": partial(_incidents, healer, store, args, team_domain),
                "stats": partial(_stats, healer, store, args),
            }
            inbox.later(partial(_later, respond, sub, reports[sub]))
            return None
        changes = await store.playbook_tiers() if sub == "playbooks" else {}
        await _answer(ack, _instant(healer, sub, changes))
        return None

    return on_grace


def _argument_error(sub: str, args: list[str]) -> str | None:
    """What is wrong with the words, with the command's usage; None when they are right."""
    if sub == "heal" and isinstance(request := parse_heal(args), str):
        return request
    if sub == "clear" and len(args) != 1:
        return f"`clear` takes one TARGET. Usage: {CLEAR_USAGE}"
    if sub == "incidents" and parse_incidents(args) is None:
        return f"`incidents` takes `open`, `all` or an incident's number. Usage: {INCIDENTS_USAGE}"
    if sub == "stats" and parse_stats(args) is None:
        return f"`stats` takes one period: `7d`, `30d` or `90d`. {STATS_USAGE}"
    if sub in NO_ARGUMENTS and args:
        return f"`/grace {sub}` takes no arguments; got {_quoted(args)}. Usage: `/grace {sub}`"
    return None


async def _carry_out(healer: Healer, client: AsyncWebClient, payload: dict[str, Any]) -> None:
    """A committed command, answered through its response_url (valid for 30 minutes,
    so a command carried out after a restart is still answered)."""
    respond = AsyncRespond(response_url=payload["response_url"] or None)
    sub, args, user = payload["sub"], list(payload["args"]), str(payload["user"])
    if sub == "heal":
        request = parse_heal(args)
        assert not isinstance(request, str), "the listener refused a malformed heal"
        where = Where(user, str(payload["channel"]), str(payload["team_domain"]))
        await _heal(healer, client, respond, request, where, str(payload["trigger_id"]))
    elif sub in ("pause", "resume"):
        await _switch(healer, respond, sub, user, " ".join(args)[:500] or None)
    else:
        await _clear(healer, respond, user, args[0])


async def _later(respond: AsyncRespond, sub: str, report: Callable[[], Awaitable[str]]) -> None:
    """An answer built after the ack, sent through the command's response_url."""
    try:
        answer = await report()
    except Exception:
        log.exception("/grace %s failed", sub)
        answer = "GRACE could not answer that: something failed inside it (its log says what)."
    try:
        await respond(text=cap(answer, TEXT_LIMIT), response_type="ephemeral")
    except Exception:
        log.exception("could not answer /grace %s through its response_url", sub)


async def _cloud(healer: Healer) -> str:
    return readiness_text(await healer.readiness(), healer.playbooks())


async def _status(healer: Healer, store: ReportStore, team_domain: str) -> str:
    readiness = await healer.readiness()  # first: it takes longest, the rest is then fresh
    status = Status(
        pause=await store.paused(),
        rows=await store.status_rows(LIST_LIMIT),
        readiness=readiness,
        now=healer.now(),
    )
    return status_text(status, team_domain)


async def _incidents(healer: Healer, store: ReportStore, args: list[str], team_domain: str) -> str:
    which = parse_incidents(args)
    if isinstance(which, int):
        story = await store.incident_story(which)
        if story is None:
            return f"There is no incident #{which}. `/grace incidents all` lists them."
        return story_answer(story, team_domain)
    open_only = which == "open"
    page = await store.incident_page(open_only=open_only, limit=LIST_LIMIT)
    return incidents_text(page, open_only, healer.now(), team_domain)


async def _stats(healer: Healer, store: ReportStore, args: list[str]) -> str:
    days = parse_stats(args)
    assert days is not None, "the listener refused a period it cannot read"
    report = await store.stats(until=healer.now(), days=days)
    return stats_text(report, days, healer.playbooks(), await store.playbook_tiers())


def parse_stats(args: list[str]) -> int | None:
    """The period's days: 7 with no word; None for anything but one known period."""
    if not args:
        return PERIODS["7d"]
    return PERIODS.get(args[0].lower()) if len(args) == 1 else None


def parse_incidents(args: list[str]) -> str | int | None:
    """`open` (also no word), `all`, or an incident's number (`12` or `#12`); None otherwise."""
    if not args:
        return "open"
    if len(args) != 1:
        return None
    word = args[0].lower()
    if word in ("open", "all"):
        return word
    number = INCIDENT_ID.fullmatch(word)
    return int(number[1]) if number and int(number[1]) > 0 else None


async def _clear(healer: Healer, respond: AsyncRespond, user: str, target: str) -> None:
    text = await healer.clear_target(user, target)
    await respond(text=cap(escape(text), TEXT_LIMIT), response_type="ephemeral")


async def _switch(
    healer: Healer, respond: AsyncRespond, sub: str, user: str, reason: str | None
) -> None:
    """The kill switch, after the ack: storing it is a write, and Slack waits for no one."""
    text = await (healer.pause(user, reason) if sub == "pause" else healer.resume(user))
    await respond(text=text, response_type="ephemeral")


def _instant(healer: Healer, sub: str, changes: Mapping[str, TierChange]) -> str:
    if sub == "help":
        return HELP
    if sub == "playbooks":
        return playbooks_text(healer.playbooks(), changes)
    return f"Unknown subcommand {_quoted([sub])}.\n{HELP}"


def parse_heal(args: list[str]) -> HealRequest | str:
    """`heal PLAYBOOK TARGET [--dry-run]`; a str says what was wrong with the words."""
    flags = [a for a in args if a.startswith("--")]
    unknown = [f for f in flags if f.lower() != DRY_RUN_FLAG]
    if unknown:
        return f"Unknown option {_quoted(unknown)} for `heal`. Usage: {HEAL_USAGE}"
    positional = [a for a in args if not a.startswith("--")]
    if len(positional) != 2:
        missing = ["PLAYBOOK", "TARGET"][len(positional) :]
        what = (
            f"is missing {' and '.join(missing)}"
            if missing
            else f"takes two arguments, got {len(positional)}: {_quoted(positional)}"
        )
        return f"`heal` {what}. Usage: {HEAL_USAGE}"
    return HealRequest(positional[0], positional[1], dry_run=bool(flags))


async def _heal(
    healer: Healer,
    client: AsyncWebClient,
    respond: AsyncRespond,
    request: HealRequest,
    where: Where,
    key: str,
) -> None:
    try:
        text = await _heal_text(healer, client, request, where, key)
    except Exception:
        log.exception("/grace heal %s failed", request)
        text = "GRACE could not do that: something failed inside it (its log says what)."
    try:
        sent = await respond(text=text, response_type="ephemeral")
        if sent.status_code != 200:
            log.warning("response_url refused the answer: %s %s", sent.status_code, sent.body)
    except Exception:
        log.exception("could not answer /grace heal through its response_url")


async def _heal_text(
    healer: Healer, client: AsyncWebClient, request: HealRequest, where: Where, key: str
) -> str:
    if request.dry_run:
        dry = await healer.dry_run_request(request.playbook, request.target, user=where.user)
        return escape(dry) if isinstance(dry, str) else dry_run_text(dry)
    absent = await _not_a_member(client, where.channel)
    if absent is not None:
        return absent
    opened = await healer.request_heal(
        request.playbook, request.target, user=where.user, channel=where.channel, key=key
    )
    return escape(opened) if isinstance(opened, str) else _opened_text(opened, where)


async def _not_a_member(client: AsyncWebClient, channel: str) -> str | None:
    """An incident's card and thread live in its channel: GRACE must be able to post there."""
    try:
        info = await client.conversations_info(channel=channel)
        why = None if info["channel"].get("is_member") else "GRACE is not a member"
    except SlackApiError as exc:
        why = f"Slack says {exc.response.get('error', 'unknown error')}"
    if why is None:
        return None
    return (
        f"GRACE cannot open an incident here ({escape(why)}): its card would have nowhere to go. "
        "Invite GRACE to this channel or use one it is in. Nothing was done."
    )


def _opened_text(incident: Incident, where: Where) -> str:
    plan = incident.plan
    what = f" ({escape(plan.title)} on `{escape(plan.target.name)}`)" if plan else ""
    card = "its card follows here"
    if incident.card_ts and incident.channel and where.team_domain:
        # Usually the card is still in the outbox; when it is already posted, link it.
        ts = incident.card_ts.replace(".", "")
        url = f"https://{where.team_domain}.slack.com/archives/{incident.channel}/p{ts}"
        card = f"<{url}|see its card>"
    return cap(
        f"Opened incident #{incident.id}{what}: {card}. {STATE_LABEL[incident.state]}.",
        TEXT_LIMIT,
    )


async def _answer(ack: AsyncAck, text: str) -> None:
    await ack(text=cap(text, TEXT_LIMIT), response_type="ephemeral")


def _quoted(words: list[str]) -> str:
    return ", ".join(f"`{escape(cap(w, ECHO_LIMIT))}`" for w in words)


def slack_unescape(text: str) -> str:
    """Slack escapes &, < and > in command text; the words themselves are wanted."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
