"""Approver lists may name Slack user groups; their members come from Slack.

Cached for a short while: approvals are rare, but a click must not wait on
Slack twice, and a person removed from the on-call group loses approval
rights within the TTL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)

TTL_S = 60.0


@dataclass
class SlackDirectory:
    client: AsyncWebClient
    ttl: float = TTL_S
    clock: Callable[[], float] = time.monotonic
    _cache: dict[str, tuple[float, frozenset[str]]] = field(default_factory=dict)

    async def members(self, group: str) -> frozenset[str]:
        cached = self._cache.get(group)
        if cached is not None and self.clock() - cached[0] < self.ttl:
            return cached[1]
        try:
            response = await self.client.usergroups_users_list(usergroup=group)
        except SlackApiError as exc:
            # Unknown group or no scope: nobody in it may approve, and an operator should know.
            log.error("cannot list user group %s: %s", group, exc.response.get("error"))
            return frozenset()
        users = frozenset(response.get("users") or [])
        self._cache[group] = (self.clock(), users)
        return users
