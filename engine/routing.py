"""Which channel a webhook alert is posted into: the config's label matchers, in order."""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

from engine.models import Alert


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    match: dict[str, str] = Field(description="label -> regex that must match all of the value")
    channel: str = Field(min_length=1)

    @field_validator("match")
    @classmethod
    def _compiles(cls, value: dict[str, str]) -> dict[str, str]:
        for regex in value.values():
            try:
                re.compile(regex)
            except re.error as exc:
                raise ValueError(f"invalid regex {regex!r}: {exc}") from None
        return value

    def matches(self, alert: Alert) -> bool:
        return all(
            label in alert.labels and re.fullmatch(regex, alert.labels[label]) is not None
            for label, regex in self.match.items()
        )


def channel_for(alert: Alert, routes: Sequence[Route], default: str | None) -> str | None:
    """The first matching route's channel, else the default (None when there is neither)."""
    return next((r.channel for r in routes if r.matches(alert)), default)
