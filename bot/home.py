"""App Home: GRACE as one person sees it, rebuilt whenever something on it changes.

For whoever opens it: GRACE's last answer to them there, whether GRACE is
paused (Pause and Resume for admins), the approvals waiting for them with the
card's own buttons bound to the same plan, the open incidents with links to
their cards, which executors can act, and this week's numbers. Built with
slack_sdk's view models, so Slack's limits (100 blocks, text lengths) are
checked before `views.publish`; every list is capped to fit and says what it
leaves out. Times are Slack dates, shown in each reader's time zone, and
nothing says "minutes ago": a Home rebuilt with nothing new is the same view,
which bot/home_publisher.py then does not publish again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot.blocks import (
    FIELD_LIMIT,
    SECTION_LIMIT,
    STATE_LABEL,
    TRUNCATED,
    approval_rule,
    cap,
    chunks,
    escape,
    escaped_cap,
    mention,
    sections,
    slack_date,
    span,
)
from bot.cards import decision_buttons
from bot.ids import ActionId, BlockId, HomeView
from bot.reports import card_url
from engine.api import Readiness
from engine.models import Incident, IncidentState, Pause
from engine.records import HomeRows, Page, Pending, WeekNumbers

S = IncidentState
MAX_WAITING = 20
"""Approvals shown with their buttons: two blocks each, 40 of a view's 100."""
OPEN_SHOWN = 15
LISTED = 5  # open breakers, and held targets, each
NOTICE_SECTIONS = 4
"""An answer (a dry run can be long) in at most this many sections of 3,000 characters."""
WORDS = 120  # characters of a name or target from an alert in one line

RESUME_CONFIRM = ConfirmObject(
    title="Resume GRACE?",
    text=(
        "Approved plans that waited run now, each checked again first; tier 1 plans that "
        "waited run too. Every alert channel is told."
    ),
    confirm="Resume",
    deny="Cancel",
    style="primary",
)


@dataclass(frozen=True)
class HomeFacts:
    """What every Home shows, gathered once for a round of publishing."""

    rows: HomeRows
    readiness: Readiness | None
    """The executors' last answer; None until they first answered."""
    team_domain: str
    """For links to cards; empty when unknown (no links then)."""


@dataclass(frozen=True)
class Notice:
    """GRACE's answer to the reader's last click on their Home."""

    text: str
    """Slack mrkdwn, escaped by whoever wrote it (as an ephemeral answer is)."""
    at: datetime


@dataclass(frozen=True)
class Reader:
    """Whose Home it is, and what is theirs alone."""

    user: str
    channel: str
    """Their App Home's channel, carried in the view so a click there says where it was."""
    admin: bool
    waiting: tuple[Pending, ...]
    """The approvals they may give now, the soonest to expire first."""
    notice: Notice | None = None


def home_view(facts: HomeFacts, reader: Reader) -> View:
    rows = facts.rows
    blocks: list[Block] = [HeaderBlock(text="GRACE")]
    if reader.notice is not None:
        blocks += [*notice_blocks(reader.notice), DividerBlock()]
    blocks += switch_blocks(rows.pause, reader.admin)
    blocks += [DividerBlock(), *waiting_blocks(reader.waiting, facts.team_domain)]
    blocks += [DividerBlock(), *sections(open_lines(rows.open, facts.team_domain))]
    blocks += [DividerBlock(), *sections(readiness_lines(facts.readiness))]
    blocks += [DividerBlock(), week_block(rows.week)]
    return View(type="home", blocks=blocks, private_metadata=HomeView(reader.channel).encode())


def notice_blocks(notice: Notice) -> list[Block]:
    """The answer, whole lines to a section, as much as NOTICE_SECTIONS hold."""
    head = f":speech_balloon: *GRACE's answer* ({slack_date(notice.at, seconds=True)})"
    pieces = chunks([head, *notice.text.splitlines()], SECTION_LIMIT)
    if len(pieces) > NOTICE_SECTIONS:
        last = pieces[NOTICE_SECTIONS - 1]
        if len(last) + 1 + len(TRUNCATED) > SECTION_LIMIT:
            # Whole lines, so a mention or link is never cut (a single long line is capped).
            last = cap(last.rsplit("\n", 1)[0], SECTION_LIMIT - 1 - len(TRUNCATED))
        pieces = [*pieces[: NOTICE_SECTIONS - 1], f"{last}\n{TRUNCATED}"]
    return [_section(piece) for piece in pieces]


def switch_blocks(pause: Pause | None, admin: bool) -> list[Block]:
    """The kill switch as it stands; admins can throw it from here."""
    if pause is None:
        state = ":arrow_forward: *GRACE is running*: approved plans run at once."
        button = ButtonElement(text="Pause", action_id=ActionId.PAUSE, style="danger")
    else:
        why = f": {escaped_cap(pause.reason, 600)}" if pause.reason else " (no reason given)"
        state = (
            f":double_vertical_bar: *GRACE is paused* by <@{pause.by}> since "
            f"{slack_date(pause.at)}{why}. Nothing new runs until an admin resumes it; "
            "approvals still count."
        )
        button = ButtonElement(
            text="Resume", action_id=ActionId.RESUME, style="primary", confirm=RESUME_CONFIRM
        )
    blocks: list[Block] = [_section(state)]
    if admin:
        blocks.append(ActionsBlock(block_id=BlockId.HOME_SWITCH, elements=[button]))
    return blocks


def waiting_blocks(waiting: Sequence[Pending], team_domain: str) -> list[Block]:
    """Each approval waiting for the reader, with the card's buttons for its plan."""
    if not waiting:
        return [_section("*Waiting for your approval:* nothing.")]
    blocks: list[Block] = [_section(f"*Waiting for your approval:* {len(waiting)}")]
    for pending in waiting[:MAX_WAITING]:
        incident, plan = pending.incident, pending.incident.plan
        if plan is None:
            continue
        blocks.append(_section(_waiting_text(pending, team_domain)))
        block_id = f"{BlockId.HOME_DECISION}.{incident.id}"
        blocks.append(decision_buttons(incident.id, plan, block_id))
    if len(waiting) > MAX_WAITING:
        more = f"… and {len(waiting) - MAX_WAITING} more: `/grace status` lists them all."
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=more)]))
    return blocks


def _waiting_text(pending: Pending, team_domain: str) -> str:
    incident = pending.incident
    assert incident.plan is not None
    plan = incident.plan
    lines = [
        f"*{_ref(incident, team_domain)}* `{escaped_cap(incident.alert.name, WORDS)}`",
        f"{escaped_cap(plan.title, WORDS)} on {escape(plan.target.executor)} "
        f"`{escaped_cap(plan.target.name, WORDS)}` · tier {plan.tier} "
        f"({approval_rule(plan.required_approvals)})",
    ]
    if pending.approved_by:
        lines.append(f"Approved so far by {', '.join(mention(u) for u in pending.approved_by)}")
    if incident.deadline is not None:
        lines.append(f"*Expires* {slack_date(incident.deadline)}")
    return cap("\n".join(lines), SECTION_LIMIT)


def open_lines(page: Page[Incident], team_domain: str) -> list[str]:
    if not page.items:
        return ["*Open incidents:* none."]
    lines = [f"*Open incidents:* {page.total}"]
    for incident in page.items[:OPEN_SHOWN]:
        target = f" · `{escaped_cap(incident.plan.target.name, WORDS)}`" if incident.plan else ""
        lines.append(
            f"• {_ref(incident, team_domain)} {STATE_LABEL[incident.state]} · "
            f"`{escaped_cap(incident.alert.name, WORDS)}`{target} · "
            f"since {slack_date(incident.created_at)}"
        )
    hidden = page.total - min(len(page.items), OPEN_SHOWN)
    if hidden > 0:
        lines.append(f"… and {hidden} more: `/grace incidents` lists them.")
    return lines


def readiness_lines(readiness: Readiness | None) -> list[str]:
    """Which executors can act, and what holds GRACE's hands (`/grace cloud` says all)."""
    if readiness is None:
        return ["*Executors:* asking each whether it can act…"]
    able = [f"`{escape(n)}`" for n, a in readiness.executors.items() if a.ok]
    lines = ["*Executors*", f"• :white_check_mark: can act: {', '.join(able) or 'none'}"]
    lines += [
        f"• :x: `{escape(n)}` cannot act: {escaped_cap(a.reason, 300)}"
        for n, a in readiness.executors.items()
        if not a.ok
    ]
    breakers = list(readiness.open_breakers.items())
    lines += [
        f"• :electric_plug: breaker `{escaped_cap(circuit, WORDS)}` is open; "
        f"GRACE tries it again {slack_date(at)}"
        for circuit, at in breakers[:LISTED]
    ]
    lines += [
        f"• :octagonal_sign: `{escaped_cap(h.target.name, WORDS)}` held since "
        f"{slack_date(h.held_at)} (incident #{h.incident_id}); an admin runs "
        f"`/grace clear {escaped_cap(h.target.name, WORDS)}` once it is checked"
        for h in readiness.holds[:LISTED]
    ]
    hidden = max(len(breakers) - LISTED, 0) + max(len(readiness.holds) - LISTED, 0)
    if hidden:
        lines.append(f"… and {hidden} more open breaker(s) or held target(s): `/grace cloud`.")
    return lines


def week_block(week: WeekNumbers) -> SectionBlock:
    """This ISO week's numbers, in UTC (the week every reader shares)."""
    iso = week.start.isocalendar()
    title = f"*This week* (ISO week {iso.week} of {iso.year}, from Monday 00:00 UTC)"
    median = span(week.median_to_resolve) if week.median_to_resolve is not None else "–"
    pairs = [
        ("Opened", week.opened),
        ("Healed", week.entered[S.RESOLVED]),
        ("Rolled back", week.entered[S.ROLLED_BACK]),
        ("Safe hold", week.entered[S.SAFE_HOLD]),
        ("Needed a human", week.entered[S.NEEDS_HUMAN]),
        ("Cleared by itself", week.entered[S.AUTO_RESOLVED]),
        ("Approvals given", week.approvals),
        ("Median time to resolve", median),
    ]
    fields = [MarkdownTextObject(text=cap(f"*{k}*\n{v}", FIELD_LIMIT)) for k, v in pairs]
    return SectionBlock(text=MarkdownTextObject(text=title), fields=fields)


def _ref(incident: Incident, team_domain: str) -> str:
    url = card_url(incident, team_domain)
    return f"<{url}|#{incident.id}>" if url else f"#{incident.id}"


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=text))
