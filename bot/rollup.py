"""A storm's rollup message: one line per incident, and menus to show any one's card.

It is rendered when it is sent (like a card), so one coalesced update shows
every change before it. Slack allows 50 blocks of at most 3,000 characters,
and menus of at most 100 options in an actions block of at most 25: about
1,400 lines and 2,500 incidents to pick from; beyond that the rest are counted.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    Option,
    SectionBlock,
    StaticSelectElement,
)

from bot.blocks import SECTION_LIMIT, STATE_LABEL, escaped_cap
from bot.ids import ActionId, BlockId
from engine.models import Incident
from engine.records import Rollup

MAX_BLOCKS = 50
MENU_OPTIONS, MENUS = 100, 25
OPTION_TEXT = 75
_TARGET_LABELS = (
    "instance", "host", "hostname", "pod", "container", "service", "deployment", "node",
    "db_path", "database", "job", "resource", "function_name",
)  # fmt: skip
"""Where an alert without a plan says what it is about, in the order asked."""


def rollup_message(rollup: Rollup) -> dict[str, Any]:
    """chat.postMessage / chat.update arguments (less the channel and ts)."""
    count = len(rollup.members)
    text = f"Alert storm: {count} incident(s) in this channel, one line each"
    return {"text": text, "blocks": [b.to_dict() for b in _blocks(rollup)]}


def _blocks(rollup: Rollup) -> list[Block]:
    members = rollup.members
    header = HeaderBlock(text=f"Alert storm: {len(members)} incident(s)")
    about = ContextBlock(
        elements=[
            MarkdownTextObject(
                text=(
                    f"{_counts(members)}\nShown here while cards would wait behind Slack's "
                    "rate limit. An incident someone must act on gets its own card; pick any "
                    "other below to show its card, or `/grace incidents N` for its story."
                )
            )
        ]
    )
    menus = _menus([m for m in members if m.id not in rollup.carded])
    room = MAX_BLOCKS - 2 - (1 if menus else 0)
    return [header, about, *_sections(members, rollup.carded, room), *menus]


def _counts(members: list[Incident]) -> str:
    by_state = Counter(m.state for m in members)
    return " · ".join(f"{STATE_LABEL[state]}: {n}" for state, n in by_state.most_common())


def _sections(members: list[Incident], carded: frozenset[int], room: int) -> list[SectionBlock]:
    """The lines, packed into sections; what does not fit is counted on the last one."""
    chunks: list[list[str]] = [[]]
    size = 0
    for n, member in enumerate(members):
        line = _line(member, member.id in carded)
        if size + len(line) + 1 > SECTION_LIMIT:
            if len(chunks) == room:
                rest = f"… and {len(members) - n} more: `/grace incidents` lists them"
                while size + len(rest) + 1 > SECTION_LIMIT:
                    size -= len(chunks[-1].pop()) + 1
                chunks[-1].append(rest)
                break
            chunks.append([])
            size = 0
        chunks[-1].append(line)
        size += len(line) + 1
    return [
        SectionBlock(text=MarkdownTextObject(text="\n".join(lines))) for lines in chunks if lines
    ]


def _line(incident: Incident, carded: bool) -> str:
    """#id, state, problem, target, how many alerts: a line stays short whatever the alert says."""
    target = _target(incident)
    on = f" on `{escaped_cap(target, 60)}`" if target else ""
    card = " · its own card below" if carded else ""
    return (
        f"• #{incident.id} {STATE_LABEL[incident.state]} · "
        f"{escaped_cap(_problem(incident), 80)}{on} · ×{incident.alert_count}{card}"
    )


def _problem(incident: Incident) -> str:
    return incident.diagnosis.problem if incident.diagnosis else incident.alert.name


def _target(incident: Incident) -> str | None:
    if incident.plan is not None:
        return incident.plan.target.name
    labels = incident.alert.labels
    return next((labels[k] for k in _TARGET_LABELS if labels.get(k)), None)


def _menus(members: list[Incident]) -> list[ActionsBlock]:
    """Show menus, 100 incidents each, newest storms' incidents in id order."""
    chunks = [members[i : i + MENU_OPTIONS] for i in range(0, len(members), MENU_OPTIONS)]
    menus = [
        StaticSelectElement(
            action_id=f"{ActionId.SHOW_CARD}:{k}",
            placeholder=f"Show #{chunk[0].id}–#{chunk[-1].id}",
            options=[Option(value=str(m.id), text=_option(m)) for m in chunk],
        )
        for k, chunk in enumerate(chunks[:MENUS])
    ]
    return [ActionsBlock(block_id=BlockId.ROLLUP_SHOW, elements=menus)] if menus else []


def _option(incident: Incident) -> str:
    target = _target(incident)
    words = f"#{incident.id} {_problem(incident)}" + (f" · {target}" if target else "")
    return escaped_cap(words, OPTION_TEXT)
