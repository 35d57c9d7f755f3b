"""Which channel a webhook alert is posted into: the config's label matchers, in order."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator


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

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(
            label in labels and re.fullmatch(regex, labels[label]) is not None
            for label, regex in self.match.items()
        )


ChannelFor = Callable[[Mapping[str, str]], str | None]
"""Given an alert's labels, the channel its incident lives in (None: nowhere)."""


def nowhere(labels: Mapping[str, str]) -> None:
    """No routing: the caller decides the channel later (or there is none)."""
    return None


def router(routes: Sequence[Route], default: str | None) -> ChannelFor:
    """The first matching route's channel, else the default."""

    def channel_for(labels: Mapping[str, str]) -> str | None:
        return next((r.channel for r in routes if r.matches(labels)), default)

    return channel_for
