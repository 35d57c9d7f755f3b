"""Every action, block and callback ID GRACE puts in Slack, in one place, so a
listener and the builder that made its button or form can never disagree."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal


class ActionId(StrEnum):
    APPROVE = "grace.approve"
    REJECT = "grace.reject"
    DRY_RUN = "grace.dry_run"
    REJECT_REASON = "grace.reject.reason_input"
    PAUSE = "grace.home.pause"
    RESUME = "grace.home.resume"
    PAUSE_REASON = "grace.pause.reason_input"
    SHOW_CARD = "grace.rollup.show"
    """A rollup's Show menus; each is this and its number (Slack wants them unique)."""
    PROMOTION_ACCEPT = "grace.promotion.accept"
    PROMOTION_DISMISS = "grace.promotion.dismiss"


class BlockId(StrEnum):
    DECISION = "grace.decision"
    ROLLUP_SHOW = "grace.rollup.show"
    REJECT_REASON = "grace.reject.reason"
    HOME_DECISION = "grace.home.decision"
    """A waiting approval's buttons on App Home; each is this and its incident's number."""
    HOME_SWITCH = "grace.home.switch"
    PAUSE_REASON = "grace.pause.reason"
    PROMOTION = "grace.promotion"
    """A proposed promotion's record: every proposal message has it."""
    PROMOTION_DECISION = "grace.promotion.decision"


class CallbackId(StrEnum):
    REJECT = "grace.reject_form"
    HEAL_THIS = "grace.heal_this"
    PAUSE = "grace.pause_form"


class Command(StrEnum):
    GRACE = "/grace"


_CHANNEL_ID = re.compile(r"[CDG][A-Z0-9]{2,30}")
_PLAN_HASH = re.compile(r"[0-9a-f]{1,64}")

# Slack's shapes for what a request names. A request is signed by Slack, but a
# value that goes into a Slack call, a stored row or a `<@…>` mention is checked
# all the same: a forged or broken one is refused where it arrives.
_SHAPES: dict[str, re.Pattern[str]] = {
    "user": re.compile(r"[UW][A-Z0-9]{2,30}"),
    "channel": _CHANNEL_ID,
    "team": re.compile(r"[TE][A-Z0-9]{2,30}"),
    "trigger": re.compile(r"[0-9]{1,20}\.[0-9]{1,20}\.[0-9a-f]{1,64}"),
    "view": re.compile(r"V[A-Z0-9]{2,30}"),
    "ts": re.compile(r"[0-9]{1,12}\.[0-9]{1,9}"),
    "team domain": re.compile(r"[a-z0-9][a-z0-9-]{0,62}"),
}


Shape = Literal["user", "channel", "team", "trigger", "view", "ts", "team domain"]


def slack_id(kind: Shape, value: object) -> str | None:
    """`value` when it has the shape of a Slack `kind`, else None."""
    if isinstance(value, str) and _SHAPES[kind].fullmatch(value):
        return value
    return None


def slack_id_at(document: Mapping[str, Any], kind: Shape, *path: str) -> str | None:
    """The `kind` of ID at `path` in a request's document (`"user", "id"`), or None
    when anything on the way is missing or not an object, or the ID has not its shape."""
    value: object = document
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return slack_id(kind, value)


def is_user_id(value: object) -> bool:
    return slack_id("user", value) is not None


def _decode(value: str, what: str) -> tuple[int, str, dict[str, object]]:
    """The incident and plan every GRACE value carries, checked; raises ValueError."""
    try:
        data = json.loads(value)
        incident_id, plan = data["incident"], data["plan"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"not a GRACE {what}: {value[:80]!r}") from exc
    if not (
        type(incident_id) is int
        and incident_id > 0
        and isinstance(plan, str)
        and _PLAN_HASH.fullmatch(plan)
    ):
        raise ValueError(f"not a GRACE {what}: {value[:80]!r}")
    return incident_id, plan, data


@dataclass(frozen=True)
class CardButton:
    """What an Approve/Reject/Dry run button carries: the incident and the exact plan."""

    incident_id: int
    plan_hash: str

    def encode(self) -> str:
        return json.dumps({"incident": self.incident_id, "plan": self.plan_hash})

    @classmethod
    def decode(cls, value: str) -> CardButton:
        """Raises ValueError for anything GRACE did not put on a button."""
        incident_id, plan, _ = _decode(value, "button value")
        return cls(incident_id=incident_id, plan_hash=plan)


@dataclass(frozen=True)
class ProposalButton:
    """What Accept and Dismiss on a proposed promotion carry: the proposal."""

    proposal_id: int

    def encode(self) -> str:
        return json.dumps({"proposal": self.proposal_id})

    @classmethod
    def decode(cls, value: str) -> ProposalButton:
        """Raises ValueError for anything GRACE did not put on a proposal's button."""
        try:
            proposal_id = json.loads(value)["proposal"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"not a GRACE proposal button: {value[:80]!r}") from exc
        if type(proposal_id) is not int or proposal_id <= 0:
            raise ValueError(f"not a GRACE proposal button: {value[:80]!r}")
        return cls(proposal_id)


@dataclass(frozen=True)
class RejectForm:
    """The private_metadata of the rejection modal: which plan it rejects, and the
    channel of its card, where GRACE answers the person privately."""

    incident_id: int
    plan_hash: str
    channel: str

    def encode(self) -> str:
        return json.dumps(
            {"incident": self.incident_id, "plan": self.plan_hash, "channel": self.channel}
        )

    @classmethod
    def decode(cls, value: str) -> RejectForm:
        """Raises ValueError for anything GRACE did not put in a rejection form."""
        incident_id, plan, data = _decode(value, "rejection form")
        channel = data.get("channel")
        if not (isinstance(channel, str) and _CHANNEL_ID.fullmatch(channel)):
            raise ValueError(f"not a GRACE rejection form: {value[:80]!r}")
        return cls(incident_id=incident_id, plan_hash=plan, channel=channel)


@dataclass(frozen=True)
class HomeView:
    """The private_metadata of a published App Home: its channel (the person's IM
    with GRACE), where a click on the Home is answered. Slack sends such a click
    with the view and no channel."""

    channel: str

    def encode(self) -> str:
        return json.dumps({"home": self.channel})

    @classmethod
    def decode(cls, value: str) -> HomeView:
        """Raises ValueError for anything GRACE did not put on a Home."""
        try:
            channel = json.loads(value)["home"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"not a GRACE Home: {value[:80]!r}") from exc
        if not (isinstance(channel, str) and _CHANNEL_ID.fullmatch(channel)):
            raise ValueError(f"not a GRACE Home: {value[:80]!r}")
        return cls(channel=channel)


def home_channel(body: Mapping[str, Any]) -> str | None:
    """The App Home channel of a click on GRACE's Home; None for a click elsewhere
    or on a view GRACE did not publish."""
    view = body.get("view")
    container = body.get("container")
    if not (isinstance(view, Mapping) and isinstance(container, Mapping)):
        return None
    if container.get("type") != "view" or view.get("type") != "home":
        return None
    try:
        return HomeView.decode(str(view.get("private_metadata") or "")).channel
    except ValueError:
        return None
