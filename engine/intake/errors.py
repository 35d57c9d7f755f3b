"""Refusals of webhook input, and how they are worded.

limits.py *cuts* what is too long; this module *refuses* what does not fit the
documented schema at all. The webhook handlers answer an IntakeError with HTTP
400 and its message, so the message must tell an integrator exactly which field
is wrong without echoing their (untrusted, possibly huge) input back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Iterable, Sequence

from pydantic import ValidationError
from pydantic_core import ErrorDetails

MAX_ALERTS = 1000
"""Alerts per request; more is refused, not cut, so the sender learns to split."""

MAX_BODY_BYTES = 4 * 1024 * 1024
"""Request bodies the webhook handlers read before answering 413 (docs/alerts.md)."""

_MAX_SEGMENT = 64
_MAX_MESSAGE = 500
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class IntakeError(ValueError):
    """Input that does not fit the documented schema; the message names the field.

    For example 'alerts[3].labels: Input should be an object'.
    """


def intake_error(
    error: ValidationError,
    *,
    tags: Collection[str] = (),
    unknown_hint: Callable[[Sequence[str | int]], str] | None = None,
    root: str | None = None,
) -> IntakeError:
    """One IntakeError for the first problem pydantic found.

    Only the first is reported: a broken integration usually repeats one mistake
    a thousand times, and one precise line is what a person fixes first.
    `tags` are the union tags pydantic puts first in a location (plumbing, not
    fields), and `unknown_hint(location)` is appended to 'unknown field' errors
    so a typo is easy to see. `root` names a body that is a bare array, so its
    items read as `alerts[3]` rather than `[3]`.
    """
    first: ErrorDetails = error.errors(include_url=False, include_input=False)[0]
    kind = first["type"]
    if kind == "json_invalid":
        return IntakeError(_cut(f"invalid JSON: {first.get('ctx', {}).get('error', first['msg'])}"))
    raw = first["loc"]
    loc = list(raw[1:] if raw and raw[0] in tags else raw)
    if root is not None:
        loc.insert(0, root)
    message = first["msg"]
    if kind == "value_error":  # our own validators: their words, without pydantic's prefix
        message = str(first.get("ctx", {}).get("error", message))
    elif kind == "extra_forbidden":
        message = "unknown field" + (unknown_hint(raw) if unknown_hint else "")
    elif loc == ["alerts"] and kind == "too_short":
        message = "empty; send at least one alert"
    elif loc == ["alerts"] and kind == "too_long":
        message = f"more than {MAX_ALERTS} alerts in one request; send them in several"
    return IntakeError(_cut(f"{field_path(loc)}: {message}"))


def field_path(loc: Iterable[str | int]) -> str:
    """pydantic's location tuple as a person writes it: alerts[3].labels["app.kubernetes.io/name"].

    Keys come from the sender, so each is quoted when it is not a plain name and
    cut short: a 10 MB label key must not become a 10 MB error message.
    """
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif len(part) <= _MAX_SEGMENT and _IDENTIFIER.match(part):
            path += f".{part}" if path else part
        else:
            short = part if len(part) <= _MAX_SEGMENT else part[:_MAX_SEGMENT] + "…"
            path += f"[{json.dumps(short, ensure_ascii=False)}]"
    return path or "body"


def _cut(message: str) -> str:
    return message if len(message) <= _MAX_MESSAGE else message[:_MAX_MESSAGE] + "…"
