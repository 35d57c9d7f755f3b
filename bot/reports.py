"""What `/grace status` and `/grace incidents` answer: what GRACE is doing, for whoever asks.

Read-only views of the database and of `Healer.readiness()`. Every string
that came from an alert or a person is escaped and capped where it is put in
a line, and an answer is whole lines up to Slack's text limit, so a cut never
falls inside a mention, a link or a date. Times are Slack dates: each reader
sees them in their own time zone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.blocks import (
    STATE_LABEL,
    TEXT_LIMIT,
    approval_rule,
    cap,
    escape,
    escaped_cap,
    slack_date,
    span,
    story_text,
)
from bot.ids import is_user_id, slack_id
from bot.modals import REASON_MAX
from engine.api import Readiness, SnapshotTaken, StepFinished, Verified
from engine.models import Decision, Incident, IncidentState, Pause, Plan
from engine.records import Backlog, IncidentStory, Page, Pending, StatusRows

LIST_LIMIT = 20
"""Incidents, approvals and outbox lanes a list shows; the rest are counted."""
WORDS_LIMIT = REASON_MAX
"""Characters of one field from an alert or a person in a line: a rejection's reason whole."""


@dataclass(frozen=True)
class Status:
    pause: Pause | None
    rows: StatusRows
    readiness: Readiness
    now: datetime


def status_text(status: Status, team_domain: str) -> str:
    """`/grace status`: the switch, the work, what waits on people, what cannot act."""
    rows, readiness, now = status.rows, status.readiness, status.now
    lines = ["*GRACE status*", _pause_line(status.pause)]
    open_total = sum(rows.open_counts.values())
    by_state = " · ".join(f"{STATE_LABEL[s]} {n}" for s, n in _in_order(rows.open_counts))
    lines.append(
        f"*Open incidents:* {open_total} ({by_state})" if open_total else "*Open incidents:* none"
    )
    lines.append(_heading("Waiting for approval", rows.pending.total))
    lines += [_pending_line(p, now, team_domain) for p in rows.pending.items]
    lines += _more(rows.pending.total - len(rows.pending.items), "approval")
    cannot = {n: a for n, a in readiness.executors.items() if not a.ok}
    lines.append(_heading("Executors that cannot act", len(cannot)))
    lines += [f"• `{escape(n)}`: {escaped_cap(a.reason, WORDS_LIMIT)}" for n, a in cannot.items()]
    lines.append(_heading("Open breakers", len(readiness.open_breakers)))
    lines += [
        f"• `{escaped_cap(circuit, WORDS_LIMIT)}`: calls fail fast; "
        f"GRACE tries it again {slack_date(at)}"
        for circuit, at in readiness.open_breakers.items()
    ]
    lines.append(_heading("Held targets", len(readiness.holds)))
    lines += [
        f"• `{escaped_cap(h.target.name, WORDS_LIMIT)}` ({escape(h.target.executor)}) since "
        f"{slack_date(h.held_at)}, incident #{h.incident_id}: "
        f"{escaped_cap(h.reason, WORDS_LIMIT)}. An admin runs "
        f"`/grace clear {escaped_cap(h.target.name, WORDS_LIMIT)}` once it is checked."
        for h in readiness.holds
    ]
    lines += _backlog_lines(rows.backlog, now)
    return fit(lines)


def _pause_line(pause: Pause | None) -> str:
    if pause is None:
        return ":arrow_forward: *Running*: not paused."
    why = f": {escaped_cap(pause.reason, WORDS_LIMIT)}" if pause.reason else " (no reason given)"
    return (
        f":double_vertical_bar: *Paused* by {_person(pause.by)} since {slack_date(pause.at)}{why}. "
        "Nothing new runs until an admin runs `/grace resume`."
    )


def _pending_line(pending: Pending, now: datetime, team_domain: str) -> str:
    incident = pending.incident
    parts = [_incident_ref(incident, team_domain), _plan_words(incident.plan)]
    if incident.plan is not None:
        need = approval_rule(incident.plan.required_approvals)
        have = ", ".join(_person(u) for u in pending.approved_by)
        parts.append(f"needs {need}" + (f", approved so far by {have}" if have else ""))
    if incident.deadline is not None:
        left = incident.deadline - now
        due = f"in {span(left)}" if left > timedelta(0) else "now"
        parts.append(f"expires {slack_date(incident.deadline)} ({due})")
    return "• " + " · ".join(parts)


def _backlog_lines(backlog: Sequence[Backlog], now: datetime) -> list[str]:
    """Slack writes not delivered yet, per lane: a channel's, or one person's private answers."""
    waiting = sum(b.waiting for b in backlog)
    if not waiting:
        return ["*Slack outbox:* empty, everything is delivered"]
    lines = [f"*Slack outbox:* {waiting} write(s) waiting"]
    for lane in backlog[:LIST_LIMIT]:
        if lane.lane.startswith("@"):
            where = f"private answers to {_person(lane.lane.removeprefix('@'))}"
        else:
            where = _channel(lane.channel)
        lines.append(f"• {where}: {lane.waiting} waiting, the oldest for {span(now - lane.oldest)}")
    return lines + _more(len(backlog) - LIST_LIMIT, "lane")


def incidents_text(page: Page[Incident], open_only: bool, now: datetime, team_domain: str) -> str:
    """`/grace incidents [open|all]`: the newest first, each with a link to its card."""
    if not page.items:
        return (
            "No open incidents. `/grace incidents all` lists the ended ones too."
            if open_only
            else "GRACE has had no incidents yet."
        )
    which = "Open incidents" if open_only else "Incidents"
    shown = len(page.items)
    head = (
        f"*{which}* ({page.total}, newest first)"
        if shown == page.total
        else f"*{which}*: the {shown} newest of {page.total}"
    )
    lines = [head]
    for incident in page.items:
        age = f"opened {span(now - incident.created_at)} ago"
        what = f"`{escaped_cap(incident.alert.name, 80)}`"
        parts = [_incident_ref(incident, team_domain), STATE_LABEL[incident.state], age, what]
        lines.append("• " + " · ".join([*parts, _plan_words(incident.plan)]))
    lines.append("One incident's whole story: `/grace incidents N`.")
    return fit(lines)


def story_answer(story: IncidentStory, team_domain: str) -> str:
    """`/grace incidents N`: what happened to one incident, in order, from the records."""
    incident = story.incident
    url = card_url(incident, team_domain)
    card = f" · <{url}|its card>" if url else ""
    lines = [
        f"*Incident #{incident.id}: {escaped_cap(incident.alert.name, 150)}* · "
        f"{STATE_LABEL[incident.state]}{card}",
        _alert_line(story),
    ]
    if incident.plan is not None:
        plan = incident.plan
        lines.append(
            f"*Plan:* {escaped_cap(plan.title, WORDS_LIMIT)} (`{escape(plan.playbook_id)}`, "
            f"tier {plan.tier}: {approval_rule(plan.required_approvals)}) on "
            f"{escape(plan.target.executor)} `{escaped_cap(plan.target.name, WORDS_LIMIT)}` · "
            f"plan `{plan.hash}`"
        )
    lines.append("*States:*")
    lines.append(
        f"• {slack_date(incident.created_at, seconds=True)} {_state_name(IncidentState.OPEN)}"
    )
    for change in story.states:
        by = f" by {_person(change.actor)}" if is_user_id(change.actor) else ""
        until = f", expires {slack_date(change.deadline)}" if change.deadline else ""
        why = f": {escaped_cap(change.reason, WORDS_LIMIT)}" if change.reason else ""
        lines.append(
            f"• {slack_date(change.at, seconds=True)} {_state_name(change.state)}{by}{until}{why}"
        )
    lines.append(_heading("Decisions", len(story.approvals)))
    for approval in story.approvals:
        verb = "approved" if approval.decision is Decision.APPROVE else "rejected"
        why = f": {escaped_cap(approval.reason, WORDS_LIMIT)}" if approval.reason else ""
        lines.append(
            f"• {slack_date(approval.at, seconds=True)} {_person(approval.user)} {verb}{why}"
        )
    if story.snapshots or story.steps or story.verifications:
        lines.append("*What was done:*")
        lines += [
            f"• {slack_date(s.taken_at, seconds=True)} {story_text(SnapshotTaken(snapshot=s))}"
            for s in story.snapshots
        ]
        lines += [
            f"• {slack_date(s.at, seconds=True)} {story_text(StepFinished(result=s.result))}"
            for s in story.steps
        ]
        lines += [
            f"• {slack_date(v.at, seconds=True)} "
            f"{story_text(Verified(verification=v.verification))}"
            for v in story.verifications
        ]
    lines.append(_outcome_line(story))
    return fit(lines)


def _alert_line(story: IncidentStory) -> str:
    incident, alert = story.incident, story.incident.alert
    severity = f", severity `{escaped_cap(alert.severity, 40)}`" if alert.severity else ""
    firing = (
        "all resolved"
        if incident.firing_count == 0
        else f"{incident.firing_count} of {story.members} still firing"
    )
    seen = ""
    if incident.first_seen and incident.last_seen:
        seen = f" · first seen {slack_date(incident.first_seen)}"
        if incident.last_seen != incident.first_seen:
            seen += f", last {slack_date(incident.last_seen)}"
    return (
        f"*Alert:* `{escaped_cap(alert.name, 150)}` from `{escaped_cap(alert.source, 40)}`"
        f"{severity} · received {incident.alert_count} time(s) from {story.members} alert(s), "
        f"{firing}{seen}"
    )


def _outcome_line(story: IncidentStory) -> str:
    incident, outcome = story.incident, story.outcome
    told = any(change.reason == incident.reason for change in story.states)
    why = f" {escaped_cap(incident.reason, WORDS_LIMIT)}" if incident.reason and not told else ""
    if outcome is not None:
        verdict = ":white_check_mark: success" if outcome.success else ":x: failure"
        return (
            f"*Outcome:* {verdict}: ended {_state_name(outcome.final_state)} after "
            f"{outcome.seconds:.1f} s of healing, {slack_date(outcome.at, seconds=True)}.{why}"
        )
    if incident.state.holds_group:
        return f"*Outcome:* not yet: {STATE_LABEL[incident.state]}.{why}"
    ended = story.states[-1].at if story.states else incident.updated_at
    took = span(ended - incident.created_at)
    return f"*Outcome:* ended {_state_name(incident.state)} {took} after it opened.{why}"


def card_url(incident: Incident, team_domain: str) -> str | None:
    """The card's permalink (Slack's shape, a reply's with its thread), once it is posted."""
    domain = slack_id("team domain", team_domain)
    channel = slack_id("channel", incident.channel)
    ts = slack_id("ts", incident.card_ts)
    if domain is None or channel is None or ts is None:
        return None
    url = f"https://{domain}.slack.com/archives/{channel}/p{ts.replace('.', '')}"
    thread = slack_id("ts", incident.alert.thread_ts)
    return f"{url}?thread_ts={thread}&cid={channel}" if thread and thread != ts else url


def _incident_ref(incident: Incident, team_domain: str) -> str:
    url = card_url(incident, team_domain)
    return f"<{url}|#{incident.id}>" if url else f"#{incident.id} (no card yet)"


def _plan_words(plan: Plan | None) -> str:
    if plan is None:
        return "no plan"
    return (
        f"`{escape(plan.playbook_id)}` on {escape(plan.target.executor)} "
        f"`{escaped_cap(plan.target.name, 120)}`"
    )


def _person(user: str) -> str:
    """A mention only of what has a user's shape: anything else is shown as words."""
    return f"<@{user}>" if is_user_id(user) else f"`{escaped_cap(user, 40)}`"


def _channel(channel: str) -> str:
    return f"<#{channel}>" if slack_id("channel", channel) else f"`{escaped_cap(channel, 40)}`"


def _state_name(state: IncidentState) -> str:
    return state.value.replace("_", " ")


def _in_order(counts: dict[IncidentState, int]) -> list[tuple[IncidentState, int]]:
    """States in the order an incident goes through them."""
    return [(s, counts[s]) for s in IncidentState if counts.get(s)]


def _heading(title: str, count: int) -> str:
    return f"*{title}:* {count}" if count else f"*{title}:* none"


def _more(hidden: int, what: str) -> list[str]:
    return [f"• … and {hidden} more {what}(s)"] if hidden > 0 else []


def fit(lines: Sequence[str], limit: int = TEXT_LIMIT) -> str:
    """Whole lines up to Slack's limit, so no mention, link or date is cut in half;
    the lines left out are counted on the last one."""
    text = "\n".join(lines)
    if len(text) <= limit:
        return text
    kept: list[str] = []
    size, note = 0, ""
    for n, line in enumerate(lines):
        note = f"… and {len(lines) - n} more line(s), over Slack's message limit."
        if size + len(line) + 1 + len(note) > limit:
            break
        kept.append(line)
        size += len(line) + 1
    return cap("\n".join([*kept, note]), limit)
