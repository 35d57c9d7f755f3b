"""What every part of the Web API stand-in answers with: a call as it was seen,
and a refusal as Slack words it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass
class ApiCall:
    """One Web API call as the stand-in saw it (refused calls included)."""

    method: str
    args: dict[str, Any]
    response: dict[str, Any]
    at: float = 0.0  # the stand-in's clock when it answered, to measure write rates


class SlackError(Exception):
    """A Web API refusal: ``{"ok": false, "error": code, **extra}``."""

    def __init__(
        self, error: str, status: int = 200, headers: Mapping[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(error)
        self.error, self.status, self.extra = error, status, extra
        self.headers = dict(headers or {})
