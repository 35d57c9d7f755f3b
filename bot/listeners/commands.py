"""`/grace`: what GRACE knows, and asking it to heal something by name.

Answers that are instant are the ack itself (Slack shows them to the person
alone); a heal is acked at once and answered through the command's
response_url when it is done. Command text is untrusted: it is escaped
wherever it is echoed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.blocks import (
    STATE_LABEL,
    TEXT_LIMIT,
    cap,
    dry_run_text,
    escape,
    playbooks_text,
    readiness_text,
)
from bot.ids import Command, slack_id, slack_id_at
from bot.inbox import Inbox
from bot.listeners.errors import refuse
from engine.healer import Healer
from engine.models import Incident

log = logging.getLogger(__name__)

DRY_RUN_FLAG = "--dry-run"
HEAL_USAGE = f"`/grace heal PLAYBOOK TARGET [{DRY_RUN_FLAG}]`"
CLEAR_USAGE = "`/grace clear TARGET`"
COMING = ("status", "incidents", "stats")
ECHO_LIMIT = 60  # characters of a person's own words quoted back in an error

HELP = "\n".join(
    [
        "*GRACE* heals production systems from Slack. `/grace` commands:",
        "• `/grace help`: this list",
        "• `/grace playbooks`: the playbooks GRACE knows, with their tier and executor",
        "• `/grace heal PLAYBOOK TARGET`: open an incident that runs PLAYBOOK on TARGET in this "
        "channel; its card asks for approval as its tier requires",
        f"• `/grace heal PLAYBOOK TARGET {DRY_RUN_FLAG}`: what that would do, touching nothing",
        "• `/grace pause [reason]`: the kill switch (admins): nothing new runs, tier 1 included",
        "• `/grace resume`: lift it (admins); approved plans that waited then run",
        "• `/grace clear TARGET`: after a safe hold or an interrupted run, say TARGET is checked "
        "(admins); GRACE may act on it again",
        "• `/grace cloud`: which executors can act here and why not; open breakers; held targets",
        "Coming, not built yet: `status`, `incidents`, `stats [days]`.",
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


def register(app: AsyncApp, healer: Healer, inbox: Inbox) -> None:
    app.command(Command.GRACE)(_on_grace(healer, inbox))
    inbox.handle(KIND, lambda payload: _carry_out(healer, app.client, payload))


def _on_grace(healer: Healer, inbox: Inbox) -> Any:
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
        if sub == "heal" and isinstance(request := parse_heal(args), str):
            await _answer(ack, request)
            return None
        if sub == "clear" and len(args) != 1:
            await _answer(ack, f"`clear` takes one TARGET. Usage: {CLEAR_USAGE}")
            return None
        if sub in ("heal", "pause", "resume", "clear"):
            # Committed before Slack's answer: a command Slack delivered is carried out
            # even if GRACE dies right after answering, and only once.
            payload = {
                "sub": sub,
                "args": args,
                "user": user,
                "channel": channel,
                # Only ever part of a link to the card: a domain of Slack's shape, or none.
                "team_domain": slack_id("team domain", command.get("team_domain")) or "",
                "response_url": str(response_url),
                "trigger_id": trigger_id,
            }
            await inbox.accept(f"command:{payload['trigger_id']}", KIND, payload)
            await ack()
            return None
        if sub == "cloud":
            await ack()
            healer.spawn(_cloud(healer, respond))
            return None
        await _answer(ack, _instant(healer, sub, args))
        return None

    return on_grace


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


async def _cloud(healer: Healer, respond: AsyncRespond) -> None:
    """After the ack: an executor may take seconds to say whether its platform answers."""
    text = readiness_text(await healer.readiness(), healer.catalog.playbooks)
    await respond(text=text, response_type="ephemeral")


async def _clear(healer: Healer, respond: AsyncRespond, user: str, target: str) -> None:
    text = await healer.clear_target(user, target)
    await respond(text=cap(escape(text), TEXT_LIMIT), response_type="ephemeral")


async def _switch(
    healer: Healer, respond: AsyncRespond, sub: str, user: str, reason: str | None
) -> None:
    """The kill switch, after the ack: storing it is a write, and Slack waits for no one."""
    text = await (healer.pause(user, reason) if sub == "pause" else healer.resume(user))
    await respond(text=text, response_type="ephemeral")


def _instant(healer: Healer, sub: str, args: list[str]) -> str:
    if sub == "help":
        return HELP
    if sub == "playbooks":
        if args:
            return f"`/grace playbooks` takes no arguments; got {_quoted(args)}."
        return playbooks_text(healer.catalog.playbooks)
    if sub in COMING:
        return f"`/grace {sub}` is coming but not built yet. `/grace help` lists what works today."
    return f"Unknown subcommand {_quoted([sub])}. `/grace help` lists the commands."


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
