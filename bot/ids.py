"""Every action and block ID GRACE puts in Slack, in one place, so a listener
and the builder that made its button can never disagree."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum


class ActionId(StrEnum):
    APPROVE = "grace.approve"
    REJECT = "grace.reject"


class BlockId(StrEnum):
    DECISION = "grace.decision"


@dataclass(frozen=True)
class CardButton:
    """What an Approve/Reject button carries: the incident and the exact plan it approves."""

    incident_id: int
    plan_hash: str

    def encode(self) -> str:
        return json.dumps({"incident": self.incident_id, "plan": self.plan_hash})

    @classmethod
    def decode(cls, value: str) -> CardButton:
        """Raises ValueError for anything GRACE did not put on a button."""
        try:
            data = json.loads(value)
            return cls(incident_id=int(data["incident"]), plan_hash=str(data["plan"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"not a GRACE button value: {value[:80]!r}") from exc
