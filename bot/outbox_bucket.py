"""How fast one outbox lane may write: about one a second with short bursts, as
Slack allows a channel, and not at all while a 429's Retry-After runs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LaneBucket:
    """A token bucket per lane; a 429 closes it until Retry-After has passed."""

    rate: float
    burst: int
    tokens: float = 0.0
    at: float = 0.0
    closed_until: float = 0.0

    def wait(self, now: float) -> float:
        """Seconds until a write may go out (0 when it may go now)."""
        self.tokens = min(float(self.burst), self.tokens + (now - self.at) * self.rate)
        self.at = now
        return max(self.closed_until - now, (1 - self.tokens) / self.rate, 0.0)

    def take(self) -> None:
        self.tokens -= 1

    def settle(self, now: float) -> None:
        """Refill again only from Slack's answer: Slack counted the write when it
        arrived, somewhere before now, so this bucket never runs ahead of Slack's."""
        self.at = now
