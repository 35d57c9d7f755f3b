"""The words GRACE posts: an incident's thread, its notices, and the helpers
every message shares (escaping, caps, mentions, dates).

Alert text is untrusted: it is escaped and capped here. The card's blocks
are in bot/cards.py, the answers about playbooks and dry runs in
bot/playbook_text.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from slack_sdk.models.blocks import MarkdownTextObject, SectionBlock

from bot.ids import is_user_id
from engine.api import (
    Approved,
    BreakerChanged,
    Cleared,
    Demoted,
    Expired,
    Held,
    HoldCleared,
    Interrupted,
    Learned,
    NeedsHuman,
    Paused,
    Planned,
    PlaybookSpec,
    PromotionProposed,
    Readiness,
    Rejected,
    Reminder,
    RestoreFailed,
    Resumed,
    RolledBack,
    SnapshotTaken,
    StepFinished,
    StoryEvent,
    TierProposal,
    Verified,
    record,
)
from engine.models import REQUIRED_APPROVALS, IncidentState, Pause, Plan

S = IncidentState
TRUNCATED = "… (truncated)"
SECTION_LIMIT = 3000
FIELD_LIMIT = 2000
HEADER_LIMIT = 150
TEXT_LIMIT = 40_000  # a message's text: Slack truncates anything longer

STATE_LABEL = {
    S.OPEN: ":new: Open",
    S.DIAGNOSED: ":mag: Diagnosed",
    S.AWAITING_APPROVAL: ":hourglass_flowing_sand: Awaiting approval",
    S.APPROVED: ":+1: Approved",
    S.EXECUTING: ":gear: Executing",
    S.VERIFYING: ":microscope: Verifying",
    S.RESOLVED: ":white_check_mark: Resolved",
    S.NEEDS_HUMAN: ":raising_hand: Needs a human",
    S.REJECTED: ":no_entry_sign: Rejected",
    S.EXPIRED: ":alarm_clock: Expired",
    S.AUTO_RESOLVED: ":sparkles: Cleared by itself",
    S.ROLLED_BACK: ":leftwards_arrow_with_hook: Rolled back",
    S.SAFE_HOLD: ":octagonal_sign: Safe hold",
    S.INTERRUPTED: ":warning: Interrupted",
    S.CLEARED: ":ballot_box_with_check: Cleared by a person",
}


def escape(text: str) -> str:
    """Slack's three control characters, so alert text cannot mention or link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - len(TRUNCATED)] + TRUNCATED


def chunks(lines: Sequence[str], limit: int) -> list[str]:
    """Lines joined into pieces of at most `limit` characters, a line never split
    unless it alone is longer (then it is capped)."""
    pieces: list[str] = []
    current = ""
    for line in lines:
        line = cap(line, limit)
        if current and len(current) + 1 + len(line) > limit:
            pieces.append(current)
            current = ""
        current = f"{current}\n{line}" if current else line
    return [*pieces, current] if current else pieces


def sections(lines: Sequence[str]) -> list[SectionBlock]:
    """Lines packed into as few mrkdwn sections as Slack's section length allows."""
    return [
        SectionBlock(text=MarkdownTextObject(text=piece)) for piece in chunks(lines, SECTION_LIMIT)
    ]


def escaped_cap(text: str, limit: int) -> str:
    """`escape(text)` in at most `limit` characters, never cut inside an entity:
    for a limit Slack enforces, such as a header's 150, and counts escaped."""
    escaped = escape(text)
    if len(escaped) <= limit:
        return escaped
    room, kept = limit - len(TRUNCATED), ""
    for char in text:
        piece = escape(char)
        if len(kept) + len(piece) > room:
            break
        kept += piece
    return kept + TRUNCATED


def slack_date(at: datetime, *, seconds: bool = False) -> str:
    """A time each reader sees in their own time zone (Slack's date formatting),
    with the UTC time as the fallback where Slack cannot format it. A story's
    steps take seconds, so it shows them; a deadline does not need them."""
    if seconds:
        fallback = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time_secs}}|{fallback}>"
    fallback = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} at {{time}}|{fallback}>"


def span(delta: timedelta) -> str:
    """A duration as people say it: 40 s, 12 min, 3 h 5 min, 2 d 4 h."""
    seconds = max(int(delta.total_seconds()), 0)
    if seconds < 60:
        return f"{seconds} s"
    minutes, hours = seconds // 60, seconds // 3600
    if hours == 0:
        return f"{minutes} min"
    if hours < 48:
        return f"{hours} h {minutes % 60} min" if minutes % 60 else f"{hours} h"
    return f"{hours // 24} d {hours % 24} h" if hours % 24 else f"{hours // 24} d"


def approval_rule(required: int) -> str:
    """What a plan needs before it runs: its tier's rule, or its playbook's stricter one."""
    if required <= 0:
        return "heals at once"
    return {1: "one approver", 2: "two approvers"}.get(required, f"{required} approvers")


def story_text(event: StoryEvent) -> str:
    """One thread reply per stage of the incident, in mrkdwn."""
    return cap(_story(event), SECTION_LIMIT)


def _story(event: StoryEvent) -> str:
    match event:
        case Planned(diagnosis=diagnosis, plan=plan):
            return f"*Diagnosis:* {escape(diagnosis.explanation)}\n{plan_text(plan)}"
        case Cleared():
            return ":sparkles: The alert resolved by itself before anything was done. Closed."
        case Reminder(deadline=deadline, approvers=approvers):
            who = ", ".join(mention(a) for a in approvers) or "the approvers"
            return (
                f":alarm_clock: Reminder for {who}: this plan expires "
                f"{slack_date(deadline)} unless someone decides."
            )
        case Expired():
            return ":hourglass: Expired: nobody decided in time. Nothing was done."
        case Held(pause=pause):
            why = f": {escape(pause.reason)}" if pause.reason else ""
            return (
                f":double_vertical_bar: Approved, but GRACE is paused by <@{pause.by}>{why}. "
                "Nothing was touched; this plan runs when GRACE is resumed."
            )
        case NeedsHuman(reason=reason, held=held):
            clear = f" An admin clears it with `/grace clear {escape(held)}`." if held else ""
            return f":raising_hand: *Needs a human.* {escape(reason)}{clear}"
        case Approved(automatic=True):
            return ":zap: Tier 1: healing at once, no approval needed."
        case Approved(user=user, waits=True):
            return f":+1: Approved by <@{user}>. It runs once GRACE is resumed."
        case Approved(user=user):
            return f":+1: Approved by <@{user}>. Executing."
        case Paused(pause=pause):
            why = f": {escape(pause.reason)}" if pause.reason else ""
            return (
                f":double_vertical_bar: *GRACE is paused* by <@{pause.by}>{why}. Nothing new "
                "runs, tier 1 included, until an admin runs `/grace resume`; approvals are "
                "still taken and count then."
            )
        case Resumed(user=user, waiting=waiting):
            return (
                f":arrow_forward: *GRACE is resumed* by <@{user}>. "
                f"{waiting} approved plan(s) that waited now run."
            )
        case Rejected(user=user, reason=reason):
            return f":no_entry_sign: Rejected by <@{user}>" + (
                f": {escape(reason)}" if reason else "."
            )
        case SnapshotTaken(snapshot=snap):
            size = f" ({_size(snap.size_bytes)})" if snap.size_bytes else ""
            return f":camera: Snapshot taken: `{escape(snap.location)}`{size}."
        case StepFinished(result=result):
            mark = ":white_check_mark:" if result.ok else ":x:"
            verdict = "succeeded" if result.ok else "failed"
            return (
                f"{mark} Step `{result.action}` {verdict} in {result.seconds:.2f} s: "
                f"{escape(result.detail)}"
            )
        case Verified(verification=verification):
            head = "passed" if verification.ok else "FAILED"
            lines = [f"*Verification {head}:*"]
            lines += [f"{_mark(c.ok)} `{c.check}`: {escape(c.detail)}" for c in verification.checks]
            lines += [
                f"{_mark(b.ok)} `{b.benchmark}`: {b.before_s * 1000:.1f} ms before, "
                f"{b.after_s * 1000:.1f} ms after (tolerance {b.tolerance:.0%})"
                for b in verification.benchmarks
            ]
            return "\n".join(lines)
        case RolledBack(why=why, restored=restored):
            where = ", ".join(f"`{escape(s.location)}`" for s in restored) or "nothing to restore"
            return f":leftwards_arrow_with_hook: Rolled back ({escape(why)}). Restored: {where}."
        case RestoreFailed(
            why=why, error=error, target=target, restored=restored, not_restored=pending
        ):
            shown = escape(target)
            done = ", ".join(f"`{escape(s.location)}`" for s in restored) or "nothing"
            left = ", ".join(f"`{escape(s.location)}`" for s in pending)
            return (
                f":octagonal_sign: *Safe hold.* {escape(why)}, and restoring a snapshot failed: "
                f"{escape(error)}. Restored: {done}. *Not restored* (kept, newest first): "
                f"{left}. `{shown}` may be part-way changed; GRACE will not touch it until a "
                f"person checks it and runs `/grace clear {shown}`."
            )
        case BreakerChanged(circuit=circuit, opened=True, retry_at=retry_at, cause=cause):
            when = retry_at.strftime("%H:%M:%S") if retry_at else "later"
            return (
                f":electric_plug: Circuit breaker for `{escape(circuit)}` *opened* after "
                f"repeated failures ({escape(cause or 'unknown')}). Calls to it fail fast; "
                f"GRACE will try it again after {when} UTC."
            )
        case BreakerChanged(circuit=circuit):
            return (
                f":electric_plug: Circuit breaker for `{escape(circuit)}` closed: it answers again."
            )
        case Interrupted(was=was, target=target, snapshots=snapshots, touched=touched):
            kept = "\n".join(
                f"• `{escape(s.location)}` ({_size(s.size_bytes)}, {s.taken_at:%H:%M:%S} UTC)"
                for s in snapshots
            )
            listed = f"\nSnapshots kept, nothing restored:\n{kept}" if snapshots else ""
            shown = escape(target)
            after = (
                f"`{shown}` may be part-way changed and is in safe hold: check it, restore a "
                f"snapshot if needed, then `/grace clear {shown}`. Nothing will be re-run."
                if touched
                else "Nothing was changed. Ask again with `/grace heal` if it is still needed."
            )
            return (
                f":warning: *Interrupted:* GRACE stopped while this plan was {escape(was)}. "
                f"{after}{listed}"
            )
        case HoldCleared(user=user, target=target):
            return f":unlock: <@{user}> cleared `{escape(target)}`: GRACE may act on it again."
        case Learned(stats=stats, success=success):
            verdict = "success" if success else "failure"
            return f":brain: Learned: {verdict} recorded. This playbook: {stats.summary()}."
        case Demoted(change=change):
            rule = approval_rule(REQUIRED_APPROVALS[change.tier])
            # Always one tier: from its catalog tier, or from the one it was promoted to.
            return (
                f":arrow_down: Demoted `{escape(change.playbook_id)}` from tier {change.tier - 1}"
                f" to tier {change.tier} ({rule}) from now on: {escape(change.reason)}."
                " `/grace playbooks` shows it."
            )
        case PromotionProposed(proposal=proposal):
            return (
                f":arrow_up: `{escape(proposal.playbook_id)}` has earned a promotion:"
                f" {record(proposal.stats)}. Tier {promotion_step(proposal)}."
                " An admin decides."
            )
    raise TypeError(f"no text for {type(event).__name__}")


def approval_waits_text(pause: Pause) -> str:
    """The private answer to an approval that counts while GRACE is paused."""
    why = f": {escape(pause.reason)}" if pause.reason else ""
    return (
        f"Your approval is recorded and counts. GRACE is paused by <@{pause.by}>{why}; "
        "nothing runs until `/grace resume`, and the plan is checked again then."
    )


def promotion_step(proposal: TierProposal) -> str:
    """`2 → 1: heals without asking anyone`."""
    required = REQUIRED_APPROVALS[proposal.to_tier]
    rule = "heals without asking anyone" if required == 0 else f"needs {approval_rule(required)}"
    return f"{proposal.from_tier} → {proposal.to_tier}: {rule}"


def plan_text(plan: Plan) -> str:
    steps = "\n".join(
        f"{n}. `{s.action}`{params_text(s.params)} (deadline {s.timeout_s:g} s)"
        for n, s in enumerate(plan.steps, 1)
    )
    checks = ", ".join(f"`{c.check}`{params_text(c.params)}" for c in plan.checks)
    lines = [
        f"*Plan:* {escape(plan.title)} (tier {plan.tier}) on `{escape(plan.target.name)}`",
        "Snapshot first, then:",
        steps,
        f"Verify: {checks}",
    ]
    if plan.benchmarks:
        lines.append(
            "Benchmarks: "
            + ", ".join(f"`{b.benchmark}` (tolerance {b.tolerance:.0%})" for b in plan.benchmarks)
        )
    lines.append("If verification fails, the snapshot is restored.")
    return "\n".join(lines)


def params_text(params: dict[str, object]) -> str:
    """A step's, check's or benchmark's parameters, escaped: ` k=v, k=v`, or nothing."""
    return f" {escape(', '.join(f'{k}={v}' for k, v in params.items()))}" if params else ""


def mention(entry: str) -> str:
    """Approvers are user IDs or user group IDs (S…); each is mentioned its own way."""
    return f"<!subteam^{entry}>" if entry.startswith("S") else f"<@{entry}>"


def _mark(ok: bool) -> str:
    return ":white_check_mark:" if ok else ":x:"


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def who(actor: str) -> str:
    """A person GRACE names (a user ID), or GRACE itself."""
    return f"<@{actor}>" if is_user_id(actor) else "GRACE"


def readiness_text(readiness: Readiness, playbooks: Sequence[PlaybookSpec]) -> str:
    """`/grace cloud`: which executors can act, which targets GRACE keeps off, and why."""
    lines = ["*What GRACE can act on here:*"]
    for name, availability in readiness.executors.items():
        used = sorted(p.id for p in playbooks if p.target.executor == name)
        books = f" · playbooks: {', '.join(f'`{escape(b)}`' for b in used)}" if used else ""
        state = "ready" if availability.ok else f"*unavailable*: {escape(availability.reason)}"
        lines.append(f"{_mark(availability.ok)} `{escape(name)}` {state}{books}")
    for circuit, retry_at in readiness.open_breakers.items():
        lines.append(
            f":electric_plug: breaker open for `{escape(circuit)}`: "
            f"trying again after {retry_at:%H:%M:%S} UTC"
        )
    for hold in readiness.holds:
        lines.append(
            f":octagonal_sign: `{escape(hold.target.name)}` in safe hold since incident "
            f"#{hold.incident_id}: `/grace clear {escape(hold.target.name)}` once checked"
        )
    return cap("\n".join(lines), TEXT_LIMIT)
