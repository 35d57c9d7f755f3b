"""Requests refused for their signature, told to the operator without their bodies.

A request whose signature does not match SLACK_SIGNING_SECRET is refused with a
401, by bot/server.py before anything is parsed (it calls `refused()`), and
by Bolt behind it, which logs at INFO with the whole body: a wrong secret would
flood the log with Slack's payloads (user ids, message text) and never say
what to fix. `watch_signature_refusals` drops Bolt's line and says instead, at
WARNING and at most once a minute, how many were refused and what to check.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

BOLT_LOGGER = "slack_bolt.RequestVerification"
"""Where Bolt's RequestVerification middleware logs each refusal."""

BOLT_REFUSAL = "Invalid request signature detected"
EVERY = 60.0


class SignatureRefusals(logging.Filter):
    """Counts refusals and warns at most once every `every` seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, every: float = EVERY) -> None:
        super().__init__()
        self._clock, self._every = clock, every
        self._unreported = 0
        self._warned_at: float | None = None

    def refused(self) -> None:
        """One request refused for its signature (a hook for any check that refuses one)."""
        self._unreported += 1
        now = self._clock()
        if self._warned_at is not None and now - self._warned_at < self._every:
            return
        log.warning(
            "refused %d request(s) to /slack/events whose signature does not match: "
            "check SLACK_SIGNING_SECRET is the app's Signing Secret (Basic Information), "
            "and this host's clock (Slack's signatures expire after 5 minutes)",
            self._unreported,
        )
        self._warned_at, self._unreported = now, 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(BOLT_REFUSAL):
            return True
        self.refused()
        return False  # the line carries the request body: it is never written


def watch_signature_refusals(clock: Callable[[], float] = time.monotonic) -> SignatureRefusals:
    """Put a fresh watcher on Bolt's logger, in place of any earlier one, and return it."""
    bolt = logging.getLogger(BOLT_LOGGER)
    for old in [f for f in bolt.filters if isinstance(f, SignatureRefusals)]:
        bolt.removeFilter(old)
    refusals = SignatureRefusals(clock)
    bolt.addFilter(refusals)
    # Bolt gives this logger the root's level when the app is built; a filter only
    # sees the records the level lets through, and the refusal is logged at INFO.
    bolt.setLevel(logging.INFO)
    return refusals


def refused() -> None:
    """One request refused for its signature by a check before Bolt's (bot/server.py):
    tell the watcher `watch_signature_refusals` installed, if any."""
    for watcher in logging.getLogger(BOLT_LOGGER).filters:
        if isinstance(watcher, SignatureRefusals):
            watcher.refused()
