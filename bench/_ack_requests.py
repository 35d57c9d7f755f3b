"""The request mix of bench/ack_latency.py: what Slack sends when people click and type.

Built by the Slack stand-in itself (DevSlack's `click` and `slash_command`,
held instead of sent: tests/crash_harness.py), so every click carries the
card it was made on (its real buttons, plan and message), a fresh trigger_id,
action_ts and response_url: GRACE commits each one to its inbox as a new
delivery, none is recognised as a retry. The same bodies go to GRACE and to
the bare app; each server's copy is signed when its phase starts (Slack's
v0 scheme), so no signature nears its five-minute expiry.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from _load import request_bytes
from slack_sdk.signature import SignatureVerifier

from bot.demo import CHANNEL
from bot.devslack import Message
from bot.ids import ActionId
from tests.crash_harness import Slack

PATH = "/slack/events"
USER_AGENT = "Slackbot 1.0 (+https://api.slack.com/robots)"

APPROVER = "U0ONCALL"
"""The only tier-2 approver: nobody in the mix approves, so every round meets the
same state (the cards stay awaiting approval)."""
PEOPLE = tuple(f"U0DEV{n:02}" for n in range(1, 16))
"""Channel members who click and type; their Approve is refused privately after the ack."""

MIX: tuple[tuple[str, int], ...] = (
    ("approve", 3),  # Approve on a card: committed to the inbox, then refused (not an approver)
    ("dry_run", 3),  # Dry run on a card: committed, then the plan is shown privately
    ("help", 1),  # /grace help: answered in the ack itself
    ("status", 1),  # /grace status
    ("incidents", 1),  # /grace incidents
    ("heal_dry", 1),  # /grace heal sqlite-wal-checkpoint <db> --dry-run: committed, answered later
)
"""Kinds of request and their weights: 60% clicks, 40% `/grace` commands."""

COMMITTED = frozenset({"approve", "dry_run", "heal_dry"})
"""Kinds GRACE commits to its inbox before it acks."""


@dataclass(frozen=True)
class Delivery:
    """One request as Slack would send it, not yet signed."""

    kind: str
    body: bytes
    content_type: str


async def build_mix(
    slack: Slack, cards: Sequence[Message], targets: Sequence[str], count: int, rng: random.Random
) -> list[Delivery]:
    """`count` deliveries in a seeded random order of MIX's kinds."""
    kinds = [kind for kind, weight in MIX for _ in range(weight)]
    out = []
    with slack.held() as held:
        for _ in range(count):
            kind = rng.choice(kinds)
            await _one(slack, kind, rng.randrange(len(cards)), cards, targets, rng)
            out.append((kind, held[-1]))
    return [Delivery(k, d.request_body.encode(), d.request_headers["Content-Type"]) for k, d in out]


async def _one(
    slack: Slack,
    kind: str,
    n: int,
    cards: Sequence[Message],
    targets: Sequence[str],
    rng: random.Random,
) -> None:
    if kind in ("approve", "dry_run"):
        action = ActionId.APPROVE if kind == "approve" else ActionId.DRY_RUN
        user = rng.choice(PEOPLE if kind == "approve" else (APPROVER, *PEOPLE))
        await slack.click(CHANNEL, cards[n].ts, action, user=user)
        return
    text = f"heal sqlite-wal-checkpoint {targets[n]} --dry-run" if kind == "heal_dry" else kind
    await slack.slash_command(text, user=rng.choice((APPROVER, *PEOPLE)), channel=CHANNEL)


def signed_requests(
    deliveries: Sequence[Delivery], secret: str, host: str, port: int
) -> list[bytes]:
    """Each delivery as the HTTP request Slack sends, signed now."""
    verifier = SignatureVerifier(secret)
    timestamp = str(int(time.time()))
    out = []
    for delivery in deliveries:
        signature = verifier.generate_signature(timestamp=timestamp, body=delivery.body)
        headers = {
            "Content-Type": delivery.content_type,
            "User-Agent": USER_AGENT,
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": signature or "",
        }
        out.append(request_bytes(host, port, PATH, delivery.body, headers))
    return out
