"""What a Datadog monitor notification says, wherever it is read: Slack or the webhook.

Datadog titles every monitor notification the same way, in its Slack posts and
in the `$EVENT_TITLE` of its webhooks (Datadog's monitor notification docs and
the Webhooks integration's variables):

- `[Triggered] CPU load is high`, `[P1] [Triggered] …`, `[Triggered] [P1] …`;
- `[Triggered on {host:web-1,env:prod}] Disk usage above 90%` for a group of a
  multi-alert monitor, `[Recovered on {…}] …`, `[Re-Triggered] …`, `[Warn] …`,
  `[Re-Warn]`, `[No Data]`, `[Re-No Data]`, `[Renotify]`;
- `Triggered: [P2] CPU load is high` in older Slack attachments.

Its body carries `**metric** over **host:web-1,env:prod** was **> 0.9** …`
and links to the monitor (`https://app.datadoghq.com/monitors/ID?group=…`, or
the EU, US3/US5, AP1 and gov sites). These helpers read them once for both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.models import AlertStatus

_TRANSITION = (
    r"(?:Re-)?Triggered|Recovered|Warn Recovered|Re-Warn|Warn|(?:Re-)?No Data|Renotify|Resolved"
)
_TITLE = re.compile(
    r"^(?:\[(?P<p1>P[1-5])\]\s*)?"
    r"(?:\[(?P<t1>" + _TRANSITION + r")(?:\s+on\s+\{(?P<scope>[^{}]*)\})?\]"
    r"|(?P<t2>" + _TRANSITION + r"):)"
    r"\s*(?:\[(?P<p2>P[1-5])\]\s*)?(?P<name>.*)$",
    re.IGNORECASE | re.DOTALL,
)
_SITE = r"https?://(?:[\w-]+\.)*(?:datadoghq\.(?:com|eu)|ddog-gov\.com)"
MONITOR_URL = re.compile(r"^" + _SITE + r"/monitors(?:/|#)(\d+)", re.IGNORECASE)
"""A link to a monitor: group 1 is its id."""
DATADOG_URL = re.compile(r"^" + _SITE + r"/", re.IGNORECASE)
_MONITOR_IN_TEXT = re.compile(_SITE + r"/monitors(?:/|#)(\d+)[^\s()<>|\]]*", re.IGNORECASE)
_TAG = re.compile(r"(?<![\w.@/-])([A-Za-z][\w.\-/]{0,127}):([^\s,`'\"{}()\[\]*]{1,256})")
_QUERY = re.compile(
    r"\b(?:avg|sum|min|max|count|change|pct_change|percentile)\((?:last|current)_\w+\):[^\n`]{1,512}"
)
_METRIC = re.compile(r"\):(?:\w+):([A-Za-z][\w.]*)")
_OVER = re.compile(r"\bover \*{0,2}([^*\n]{1,512}?)\*{0,2} (?:was|is|has)\b")
_OVER_METRIC = re.compile(
    r"(?<![\w.])\*{0,2}([A-Za-z][\w.]{0,200})\*{0,2} over "
    r"\*{0,2}[^*\n]{1,512}?\*{0,2} (?:was|is|has)\b"
)
_PRIORITY = re.compile(r"^P[1-5]$", re.IGNORECASE)


@dataclass(frozen=True)
class Title:
    """A notification title, read: `[P1] [Triggered on {host:web-1}] Name`."""

    transition: str
    priority: str
    scope: str
    name: str

    @property
    def status(self) -> AlertStatus:
        return transition_status(self.transition)

    @property
    def severity(self) -> str | None:
        """The priority, else `warning` for a Warn transition: what the title says."""
        return self.priority or ("warning" if is_warning(self.transition) else None)


def read_title(text: str) -> Title | None:
    """The transition, priority, group and monitor name of a title; None if it is none."""
    match = _TITLE.match(text.strip())
    if match is None:
        return None
    return Title(
        transition=(match.group("t1") or match.group("t2")).strip(),
        priority=(match.group("p1") or match.group("p2") or "").upper(),
        scope=(match.group("scope") or "").strip(),
        name=match.group("name").strip().strip("*_").strip(),
    )


def transition_status(transition: str) -> AlertStatus:
    """Recovered (or Resolved) ends an alert; every other transition says it still fires."""
    word = transition.casefold()
    return AlertStatus.RESOLVED if "recovered" in word or word == "resolved" else AlertStatus.FIRING


def is_warning(transition: str) -> bool:
    word = transition.casefold()
    return word.startswith("warn") or word == "re-warn"


def is_priority(value: str) -> bool:
    return bool(_PRIORITY.match(value.strip()))


def tags(text: str) -> dict[str, str]:
    """`key:value` tags of a comma or space separated list; bare tags carry no label."""
    return {key: value for key, value in _TAG.findall(text)}


def scope_key(scope: str) -> str:
    """The group, written the same whatever order Datadog lists its tags in."""
    return ",".join(f"{key}:{value}" for key, value in sorted(tags(scope).items()))


def query_in(text: str) -> str:
    """The monitor's query as Datadog prints it, `avg(last_5m):avg:system.load.1{…} > 4`."""
    match = _QUERY.search(text)
    return match.group(0).strip() if match else ""


def metric_of(query: str) -> str:
    """The metric a query watches: `system.load.1` of `avg(last_5m):avg:system.load.1{…}`."""
    match = _METRIC.search(query)
    return match.group(1) if match else ""


def status_scope(text: str) -> str:
    """The group named in Datadog's status line, `**metric** over **host:web-1** was …`."""
    match = _OVER.search(text)
    return match.group(1).strip() if match and ":" in match.group(1) else ""


def status_metric(text: str) -> str:
    """The metric named in Datadog's status line, `**aws.rds.database_connections** over …`."""
    match = _OVER_METRIC.search(text)
    return match.group(1) if match and "." in match.group(1) else ""


def monitor_link_in(text: str) -> tuple[str, str] | None:
    """(id, url) of the first link to a monitor in a text (its status link, usually)."""
    match = _MONITOR_IN_TEXT.search(text)
    return (match.group(1), match.group(0)) if match else None
