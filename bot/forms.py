"""Form bodies (`application/x-www-form-urlencoded`) decoded as `parse_qsl` decodes them, faster.

A click arrives as one form field holding its whole JSON, percent-encoded: a
few kilobytes with hundreds of `%22`s. `urllib.parse` decodes those escapes in
Python, one at a time, and that was a fifth of the CPU GRACE spent acking a
click (bench/ack_latency.py). Here a field in the usual shape (ASCII, no `=`
or line break, every `%` followed by two hex digits) is decoded in C by
binascii; any other field goes to `urllib.parse.unquote`, so the result
is always exactly `parse_qsl(text, keep_blank_values=True)`'s
(tests/bot/test_forms.py checks that on arbitrary text).
"""

from __future__ import annotations

import binascii
from urllib.parse import unquote

MAX_FIELDS = 1000
"""More fields than any form Slack sends (parse_qsl's `max_num_fields`)."""

_AS_QP = bytes.maketrans(b"+%", b" =")
"""A form's `+` is a space; its `%XX` is quoted-printable's `=XX`, which binascii decodes in C."""


class TooManyFields(ValueError):
    """The form has more than MAX_FIELDS fields."""


def form_pairs(text: str) -> list[tuple[str, str]]:
    """Every `name=value` pair in order, decoded; blank values kept."""
    if text.count("&") + 1 > MAX_FIELDS:
        raise TooManyFields(f"the form has more than {MAX_FIELDS} fields")
    pairs = []
    for field in text.split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        pairs.append((_unquote_plus(name), _unquote_plus(value)))
    return pairs


def _unquote_plus(text: str) -> str:
    if "%" not in text:
        return text.replace("+", " ")
    if text.isascii():
        raw = text.encode("ascii")
        # Without `=` or line breaks, quoted-printable decodes only the escapes; it
        # shrinks the text by 2 for each `%XX` and by less for any other `%`, so the
        # length proves that every `%` was a valid escape.
        if b"=" not in raw and b"\n" not in raw and b"\r" not in raw:
            decoded = binascii.a2b_qp(raw.translate(_AS_QP))
            if len(decoded) == len(raw) - 2 * raw.count(b"%"):
                return decoded.decode("utf-8", "replace")
    return unquote(text.replace("+", " "))
