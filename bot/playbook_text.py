"""What GRACE can run and what running it would do: the answers to `/grace
playbooks` and to a dry run, each for the one person who asked.

The plan as an incident's thread shows it is `plan_text` in bot/blocks.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bot.blocks import TEXT_LIMIT, approval_rule, cap, escape, params_text, slack_date, who
from engine.api import DryRun, PlaybookSpec, TierChange, tier_of
from engine.models import REQUIRED_APPROVALS


def dry_run_text(dry: DryRun) -> str:
    """Everything approving the plan would do, for the one person who asked."""
    plan = dry.plan
    steps = [
        f"   {n}. `{escape(s.action)}`{params_text(s.params)} (deadline {s.timeout_s:g} s)"
        for n, s in enumerate(plan.steps, 1)
    ]
    checks = [f"   • `{escape(c.check)}`{params_text(c.params)}" for c in plan.checks]
    benchmarks = [
        f"   • `{escape(b.benchmark)}`{params_text(b.params)}: may be at most "
        f"{b.tolerance:.0%} slower after than before"
        for b in plan.benchmarks
    ] or ["   none"]
    lines = [
        ":test_tube: *Dry run: nothing was touched.* This is what approving would do.",
        f"*Playbook:* {escape(plan.title)} (`{escape(plan.playbook_id)}`), tier {plan.tier}: "
        f"{approval_rule(plan.required_approvals)}",
        f"*Target:* {escape(plan.target.executor)} `{escape(plan.target.name)}`",
        f"*1. Snapshot:* {escape(dry.snapshot)}",
        "*2. Steps*, each stopped at its deadline:",
        *steps,
        "*3. Checks*, which must all pass:",
        *checks,
        "*4. Benchmarks*, measured before the steps and after:",
        *benchmarks,
        "*Rollback:* GRACE restores that snapshot if verification fails "
        "(a check fails or a benchmark regresses).",
        f"Plan `{plan.hash}`",
    ]
    return cap("\n".join(lines), TEXT_LIMIT)


def playbooks_text(
    playbooks: Sequence[PlaybookSpec], changes: Mapping[str, TierChange] | None = None
) -> str:
    """`/grace playbooks`: what GRACE can run at which tier now, and how to ask for it."""
    if not playbooks:
        return "GRACE knows no playbooks: add a folder of them to `playbook_dirs` in the config."
    lines = [f"*Playbooks GRACE knows* ({len(playbooks)}):"]
    lines += [
        f"• `{escape(p.id)}`: {escape(p.title)} · {_tier(p, (changes or {}).get(p.id))} · "
        f"executor `{escape(p.target.executor)}` · TARGET is its `{escape(p.target.shape)}`"
        for p in playbooks
    ]
    lines.append(
        "Ask for one with `/grace heal PLAYBOOK TARGET`; add `--dry-run` to see what it "
        "would do, touching nothing."
    )
    return cap("\n".join(lines), TEXT_LIMIT)


def _tier(playbook: PlaybookSpec, change: TierChange | None) -> str:
    tier = tier_of(playbook.tier, change)
    if change is None or tier == playbook.tier:
        return f"tier {playbook.tier} ({approval_rule(playbook.required_approvals)})"
    if tier < playbook.tier:
        return (
            f"*tier {tier}* ({approval_rule(REQUIRED_APPROVALS[tier])}; promoted from tier"
            f" {change.base_tier} by {who(change.by)} {slack_date(change.at)}:"
            f" {escape(change.reason)})"
        )
    rule = approval_rule(max(playbook.required_approvals, REQUIRED_APPROVALS[tier]))
    return (
        f"*tier {tier}* ({rule}; demoted from tier {change.base_tier}"
        f" {slack_date(change.at)}: {escape(change.reason)})"
    )
