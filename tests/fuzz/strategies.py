"""Hypothesis strategies for what reaches GRACE from outside: headers, bodies, Slack's
documents and every webhook's payload, each biased toward the shapes the code reads
so that the deep paths are reached, with hostile text in every string.

Hostile text carries MARKERS: mentions and links that must never reach Slack raw.
Every URL points at loopback or at `.invalid`, never at a host on the network.
"""

from __future__ import annotations

import gzip
import json
from datetime import timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from bot.ids import ActionId, BlockId, CallbackId, CardButton, RejectForm

MARKERS = (
    "<!channel>",
    "<!here>",
    "<!everyone>",
    "<!subteam^SFUZZ|fuzzers>",
    "<@fuzz>",
    "<@UFUZZ|fuzz>",
    "<#fuzz>",
    "<#CFUZZ|fuzz>",
    "<http://fuzz.invalid|click>",
    "<https://fuzz.invalid>",
    "<mailto:fuzz@fuzz.invalid|mail>",
)
"""Mentions and links, written as Slack writes them, that no input may make GRACE post."""

_VOCABULARY = (
    *MARKERS,
    "[FIRING:1]",
    "[RESOLVED]",
    "SQLiteWALTooLarge",
    "DiskFull",
    "alertname=FuzzAlert",
    "db_path=/tmp/fuzz.db",
    "severity=critical",
    "instance=web-1:9100",
    "\ud83d",  # a lone surrogate: no UTF-8 can hold it
    "\udc80",
    "😀",
    "&lt;!channel&gt;",
    "&amp;",
    "*bold*",
    "`code`",
    "```",
    "\n",
    "9999-12-31T23:59:59-00:01",
    "0001-01-01T00:00:00+01:00",
    "key=value",
    "%%%",
    "$EVENT_MSG",
    "\x00",
)


def mostly(usual: st.SearchStrategy[Any], odd: st.SearchStrategy[Any], one_in: int = 6):
    """`usual` but one time in `one_in`. (Not `one_of(usual, usual, …, odd)`: Hypothesis
    seeks new data, and a branch that yields one value is soon left for the others.)"""
    return st.sampled_from([False] * (one_in - 1) + [True]).flatmap(
        lambda odd_one: odd if odd_one else usual
    )


words = st.lists(st.sampled_from(_VOCABULARY) | st.text(max_size=12), min_size=1, max_size=8).map(
    " ".join
)
texts = st.one_of(words, st.text(max_size=60), st.sampled_from(MARKERS))
"""Hostile text: a sentence of alert words, markers and surrogates, or anything at all."""

_LATIN1 = st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f")
header_text = st.text(_LATIN1, max_size=40)
"""What an HTTP client can put in a header (latin-1, no control characters)."""

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | texts,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=10) | st.sampled_from(_VOCABULARY), children, max_size=4)
    ),
    max_leaves=12,
)

CONTENT_TYPES = (
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=bogus",
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=latin-1",
    "text/plain; charset=UTF-8",
    "text/plain",
    "multipart/form-data; boundary=fuzz",
    "application/octet-stream",
    "*/*",
)
content_types = st.sampled_from(CONTENT_TYPES) | header_text
encodings = st.sampled_from(
    (None, None, None, "identity", "gzip", "deflate", "br", "zstd", "bogus", "gzip, gzip")
)


def _deep(depth: int) -> bytes:
    return ("[" * depth + "]" * depth).encode()


def broken_bodies(valid: bytes) -> st.SearchStrategy[bytes]:
    """A body gone wrong: cut, compressed (whole or cut), not UTF-8, nested 10,000 deep."""
    return st.one_of(
        st.integers(0, max(len(valid) - 1, 0)).map(lambda n: valid[:n]),
        st.just(gzip.compress(valid)),
        st.just(gzip.compress(valid)[: max(len(valid) // 2, 1)]),
        st.just(b"\xff\xfe" + valid),
        st.sampled_from([_deep(100), _deep(10_000), b'"\\ud83d"', b"[]", b"null", b"1e999"]),
        st.binary(max_size=300),
    )


def json_body(documents: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """Mostly the document as JSON; sometimes that JSON broken one way or another."""
    valid = documents.map(lambda doc: json.dumps(doc).encode())
    return mostly(valid, valid.flatmap(broken_bodies), one_in=4)


# -- instants -------------------------------------------------------------------------------

_offsets = st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23))
instants = st.one_of(
    st.sampled_from(
        (
            "9999-12-31T23:59:59-00:01",
            "0001-01-01T00:00:00+01:00",
            "0001-01-01T00:00:00Z",
            "2024-02-30T00:00:00Z",
            "2024-11-26T03:00:00Z",
            "not a time",
        )
    ),
    st.builds(
        lambda when, offset: when.replace(tzinfo=timezone(offset)).isoformat(),
        st.datetimes(),
        _offsets,
    ),
    st.integers(),
)


# -- Slack's identities ---------------------------------------------------------------------

USERS = ("U0ONCALL", "U0MONITOR", "U0FUZZ1", "W0FUZZ2")
CHANNELS = ("C0ALERTS", "C0RANDOM", "C0NOPE")
_FORGED = ("", "U1><!channel", "u0lower", "C0ALERTS>", "<@U0ONCALL>", "U" * 60, "\ud83d")
user_ids = mostly(st.sampled_from(USERS), st.sampled_from(_FORGED), one_in=5)
channel_ids = mostly(st.sampled_from(CHANNELS), st.sampled_from(_FORGED), one_in=5)
slack_ts = st.one_of(
    st.builds(
        lambda s, us: f"{s}.{us:06d}",
        st.integers(1_600_000_000, 1_900_000_000),
        st.integers(0, 999_999),
    ),
    st.sampled_from(("", "1e9", "abc", "1.2.3")),
)
incident_ids = st.integers(min_value=-1, max_value=6)
plan_hashes = st.one_of(st.text("0123456789abcdef", min_size=1, max_size=64), header_text)


def card_values() -> st.SearchStrategy[str]:
    button = st.builds(
        lambda i, h: CardButton(i, h).encode(),
        st.integers(1, 6),
        st.text("0123456789abcdef", min_size=1, max_size=64),
    )
    return mostly(button, st.one_of(json_values.map(json.dumps), texts), one_in=3)


def reject_metadata() -> st.SearchStrategy[str]:
    form = st.builds(
        lambda i, h, c: RejectForm(i, h, c).encode(),
        st.integers(1, 6),
        st.text("0123456789abcdef", min_size=1, max_size=64),
        st.sampled_from(CHANNELS),
    )
    return mostly(form, st.one_of(json_values.map(json.dumps), texts), one_in=3)


# -- Slack documents ---------------------------------------------------------------------------


def _some_of(required: dict[str, Any], optional: dict[str, Any]) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(
        {k: v if isinstance(v, st.SearchStrategy) else st.just(v) for k, v in required.items()},
        optional={
            k: v if isinstance(v, st.SearchStrategy) else st.just(v) for k, v in optional.items()
        },
    )


def _usually(required: dict[str, Any], optional: dict[str, Any]) -> st.SearchStrategy[dict]:
    """Three times in four every key, as Slack sends them; else some keys missing."""
    return mostly(_some_of({**required, **optional}, {}), _some_of(required, optional), 4)


_blocks = st.lists(
    st.one_of(
        _some_of({"type": "section", "text": _some_of({"type": "mrkdwn", "text": texts}, {})}, {}),
        _some_of(
            {"type": "rich_text"},
            {
                "elements": st.lists(
                    _some_of(
                        {"type": "rich_text_section"},
                        {
                            "elements": st.lists(
                                _some_of(
                                    {"type": st.sampled_from(["text", "link", "user"])},
                                    {"text": texts, "url": texts, "user_id": user_ids},
                                ),
                                max_size=3,
                            )
                        },
                    ),
                    max_size=2,
                )
            },
        ),
        json_values,
    ),
    max_size=3,
)
_attachments = st.lists(
    _some_of(
        {},
        {
            "color": st.sampled_from(["danger", "good", "#FF0000"]),
            "title": texts,
            "title_link": st.sampled_from(["https://fuzz.invalid/x", "javascript:alert(1)"])
            | texts,
            "text": texts,
            "pretext": texts,
            "fallback": texts,
            "fields": st.lists(
                _some_of({"title": texts, "value": texts}, {"short": st.booleans()}), max_size=3
            ),
            "footer": texts,
        },
    )
    | json_values,
    max_size=2,
)


def message_event() -> st.SearchStrategy[dict]:
    """A message as Slack delivers one, anything in any field."""
    return _some_of(
        {"type": "message", "channel": channel_ids, "ts": slack_ts, "text": texts},
        {
            "user": user_ids,
            "bot_id": st.sampled_from(["B0ALERTMANAGER", "B0GRAFANA", "B0GRACE"]) | header_text,
            "username": st.sampled_from(
                ["Alertmanager", "Grafana", "Datadog", "Sentry", "AWS Chatbot"]
            )
            | texts,
            "subtype": st.sampled_from([None, "bot_message", "thread_broadcast", "message_changed"])
            | header_text,
            "thread_ts": slack_ts,
            "blocks": _blocks,
            "attachments": _attachments,
            "channel_type": st.sampled_from(["channel", "group", "im"]),
        },
    )


def events_documents() -> st.SearchStrategy[dict]:
    envelope = _some_of(
        {
            "type": "event_callback",
            "event": mostly(message_event(), json_values, one_in=4),
        },
        {
            "event_id": st.builds(lambda n: f"Ev{n:08X}", st.integers(0, 2**32)) | header_text,
            "team_id": st.sampled_from(["T0GRACE", "T0OTHER"]),
            "api_app_id": st.just("A0GRACE"),
            "event_time": st.integers(),
            "authorizations": st.lists(
                _some_of(
                    {}, {"user_id": user_ids, "team_id": header_text, "is_bot": st.booleans()}
                ),
                max_size=1,
            ),
        },
    )
    other = _some_of(
        {
            "type": st.sampled_from(["url_verification", "app_rate_limited", "event_callback"])
            | header_text
        },
        {"challenge": texts, "event": json_values, "token": header_text},
    )
    anything = st.dictionaries(st.text(max_size=8), json_values, max_size=4)
    return mostly(envelope, other | anything, one_in=4)


def command_forms(
    response_urls: st.SearchStrategy[str],
    triggers: st.SearchStrategy[str],
    playbooks: tuple[str, ...],
) -> st.SearchStrategy[dict]:
    target = st.sampled_from(["/tmp/fuzz.db", "web-1", "../../etc/passwd"]) | texts
    playbook = st.sampled_from(playbooks or ("none",)) | texts
    text = st.one_of(
        st.sampled_from(
            ["", "help", "playbooks", "playbooks x", "cloud", "status", "resume", "heal", "clear"]
        ),
        st.builds(
            lambda p, t, f: f"heal {p} {t}{f}",
            playbook,
            target,
            st.sampled_from(["", " --dry-run", " --bogus"]),
        ),
        st.builds(lambda w: f"pause {w}", words),
        st.builds(lambda t: f"clear {t}", target),
        words,
    )
    return _usually(
        {"command": st.sampled_from(["/grace", "/grace", "/other"]), "text": text},
        {
            "user_id": user_ids,
            "channel_id": channel_ids,
            "trigger_id": triggers,
            "response_url": response_urls,
            "team_id": st.just("T0GRACE"),
            "team_domain": st.sampled_from(["grace-dev", "evil.invalid/x?", "<!channel>"]),
            "user_name": texts,
        },
    )


def interaction_documents(
    response_urls: st.SearchStrategy[str], triggers: st.SearchStrategy[str]
) -> st.SearchStrategy[dict]:
    user = _usually({}, {"id": user_ids, "username": texts})
    channel = _usually({}, {"id": channel_ids, "name": texts})
    action = _usually(
        {"action_id": st.sampled_from([*ActionId, "other.action"])},
        {
            "block_id": st.just(BlockId.DECISION),
            "value": card_values(),
            "action_ts": slack_ts,
            "type": st.just("button"),
        },
    )
    block_actions = _usually(
        {"type": "block_actions", "actions": st.lists(action, min_size=0, max_size=2)},
        {
            "user": user,
            "channel": channel,
            "trigger_id": triggers,
            "response_url": response_urls,
            "state": _some_of({"values": st.just({})}, {}),
        },
    )
    reason = _usually(
        {},
        {
            BlockId.REJECT_REASON: _usually(
                {},
                {
                    ActionId.REJECT_REASON: _usually(
                        {}, {"type": st.just("plain_text_input"), "value": texts | json_values}
                    )
                },
            )
        },
    )
    view = _usually(
        {"callback_id": st.sampled_from([CallbackId.REJECT, CallbackId.REJECT, "other.form"])},
        {
            "id": st.builds(lambda n: f"V{n:08d}", st.integers(0, 10**8)) | header_text,
            "type": st.just("modal"),
            "private_metadata": reject_metadata(),
            "state": _usually({}, {"values": mostly(reason, st.none() | json_values, 3)}),
        },
    )
    view_submission = _usually(
        {"type": "view_submission", "view": view},
        {"user": user, "trigger_id": triggers, "response_urls": st.just([])},
    )
    shortcut = _usually(
        {
            "type": st.sampled_from(["message_action", "shortcut"]),
            "callback_id": st.sampled_from([CallbackId.HEAL_THIS, "other"]),
        },
        {
            "user": user,
            "channel": channel,
            "message": message_event(),
            "trigger_id": triggers,
            "response_url": response_urls,
            "message_ts": slack_ts,
        },
    )
    anything = st.dictionaries(st.text(max_size=8), json_values, max_size=4)
    return mostly(st.one_of(block_actions, view_submission, shortcut), anything, one_in=7)
