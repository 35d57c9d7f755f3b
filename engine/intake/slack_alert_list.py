"""The alerts a custom Alertmanager Slack template lists, read from the message's text.

Templates range over `.Alerts` and print each alert's summary, description and
labels in one of a few shapes, all copied widely:

- Prometheus' notification example: `*Alert:* summary - `severity``,
  `*Description:* …`, `*Details:*` and one `• *name:* `value`` line per label;
- `*Summary:*` / `*Severity:*` blocks, `• *Alert:* Name` list items, under
  `*Alerts Firing:*` and `*Alerts Resolved:*` sections;
- `Labels:` and `Annotations:` with ` - name = value` lines (the default
  `__text_alert_list` of other receivers, reused in Slack text);
- `{{ .Labels }}` on one line: `name=value, …` since Alertmanager 0.26, Go's
  `map[name:value …]` before it, or `{name="value", …}`; the same map appears in
  the `LABELS = …` line of awesome-prometheus-alerts' descriptions;
- a header of the group's labels spelt in words, `*Namespace:* shop`.

The scanner reads line by line with anchored, bounded regexes, so a hostile
message costs linear time. It never decides what the alert *means*: it only
returns the alerts it found, and the labels shown before the first of them.
"""

from __future__ import annotations

import re
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from engine.models import AlertStatus

MAX_ALERTS = 200
"""Alerts read from one message; a group listing more is still one incident."""

NAME_LIKE = re.compile(r"[A-Za-z_][A-Za-z0-9_:]*")
"""What an alert name looks like (a Prometheus metric name)."""

_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BULLET = re.compile(r"[•·▪◦‣*-][ \t]+")
_FIELD = re.compile(
    r"[*_]{0,2}([A-Za-z][A-Za-z0-9_]{0,127}|[A-Za-z][A-Za-z0-9 _]{0,30}?)"
    r"[*_]{0,2}[ \t]*:(?:[*_]{1,2})?(?:\s|$)"
)
_PAIR = re.compile(
    r'[ \t]*([A-Za-z_][A-Za-z0-9_]*)[ \t]*=[ \t]*("(?:[^"\\\n]|\\.)*"|[^,\s"]*)[ \t]*,?'
)
_SET_PREFIX = re.compile(
    r"(?i)[*_]{0,2}(?:common[ _])?(?:labels|details)[*_]{0,2}[ \t]*[:=][*_]{0,2}"
)
_SECTION = re.compile(r"(?i)(?:alerts?[ \t]+)?(firing|resolved)(?:[ \t]+alerts?)?")
_ESCAPE = re.compile(r"\\(.)")

_SUMMARY = frozenset({"summary", "title", "message"})
_LABEL_HEADINGS = frozenset({"details", "labels", "common labels"})
STARTED = ("started", "starts at", "start time", "since", "started at", "fired at")
_FIELD_WORDS = (
    _SUMMARY | _LABEL_HEADINGS | {"alert", "description", "severity", "annotations", *STARTED}
)
_NOT_LABELS = frozenset(
    {"graph", "runbook", "dashboard", "source", "silence", "query", "link", "links", "value"}
    | {"status", "annotations", "time", "ended", "ends at", "duration"}
)
_WELL_KNOWN = frozenset(
    {"namespace", "pod", "container", "instance", "job", "cluster", "service", "deployment"}
    | {"node", "host", "name", "mountpoint", "device", "environment", "env", "team", "region"}
    | {"severity"}
)


@dataclass
class ListedAlert:
    """One alert as a custom template listed it."""

    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    """`summary`, `description`, `started`, and ` - name = value` lines under `Annotations:`."""
    severity: str = ""
    """From `*Alert:* … - `critical`` or a `*Severity:*` line."""
    status: AlertStatus | None = None
    """From the `*Alerts Firing:*` / `*Alerts Resolved:*` section it is listed under."""
    from_run: bool = False
    """Its labels came from a list of `• name: value` lines (one list per alert)."""

    def empty(self) -> bool:
        return not (self.labels or self.annotations)


def read_alerts(
    text: str,
    group_fields: AbstractSet[tuple[str, str]] = frozenset(),
) -> tuple[list[ListedAlert], dict[str, str]]:
    """The alerts listed in `text`, and the labels shown before the first of them.

    `group_fields` are the (casefolded title, value) pairs of the message's
    attachment fields, whose lines in the text are the group's, not an alert's.
    """
    scanner = _Scanner(group_fields)
    return scanner.read(text), scanner.group


def label_key(key: str, *, listed: bool) -> str | None:
    """The label a `Key: value` line names, if it names one.

    In a list of labels any label-shaped key is a label (`• *db_path:* …`); on
    its own line only a snake_case key or a well-known label name spelt in words
    (`*Namespace:* shop`), so prose with a colon stays prose.
    """
    word = key.strip()
    folded = word.casefold()
    if not _LABEL_NAME.fullmatch(word) or folded in _NOT_LABELS:
        return None
    if listed:
        return word
    if folded in _WELL_KNOWN or (word.islower() and "_" in word):
        return folded
    return None


def unquote(raw: str) -> str:
    """A label value as written in `name="value"`, quotes and escapes undone."""
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return _ESCAPE.sub(r"\1", raw[1:-1])
    return raw


class _Scanner:
    """Reads the alerts of a custom template line by line.

    A new alert starts at an `*Alert:*` line, at a summary or description when
    the current alert has one already, at a second list of labels, and at a set
    of labels that contradicts the current one.
    """

    def __init__(self, group_fields: AbstractSet[tuple[str, str]]) -> None:
        self.group_fields = group_fields
        self.alerts: list[ListedAlert] = []
        self.current = ListedAlert()
        self.run: dict[str, str] = {}
        self.section = ""
        self.status: AlertStatus | None = None
        self.group: dict[str, str] = {}
        """`*Namespace:* shop` lines before the first alert: the template's group header."""

    def read(self, text: str) -> list[ListedAlert]:
        for raw in text.split("\n"):
            if len(self.alerts) >= MAX_ALERTS:
                break
            self._line(raw.strip())
        self._commit_run()
        self._next()
        return self.alerts[:MAX_ALERTS]

    def _line(self, line: str) -> None:
        if not line:
            return  # a blank line neither ends a list of labels nor starts an alert
        bullet = _BULLET.match(line)
        body = line[bullet.end() :] if bullet else line
        if status := _section(body):
            self._commit_run()
            self.status = status  # before _next: the alerts from here on are listed under it
            self._next()
        elif (labels := _label_set(body)) is not None:
            self._commit_run()
            self._label_set(labels)
        elif (pair := _field(body) or (_equals(body) if bullet else None)) is None:
            self._commit_run()  # prose
        elif bullet or (pair[0].casefold(), _bare(pair[1])) not in self.group_fields:
            self._pair(*pair, bulleted=bullet is not None)

    def _pair(self, key: str, value: str, *, bulleted: bool) -> None:
        folded = key.casefold()
        listed = bulleted or self.section in _LABEL_HEADINGS
        if folded not in _FIELD_WORDS or (folded == "severity" and bulleted):
            label = None if self.section == "annotations" else label_key(key, listed=listed)
            if label:
                self._label(label, _bare(value), listed=bulleted)
                return
        self._commit_run()  # anything but a label ends a list of labels
        if folded == "alert":
            self._alert_line(value)
        elif folded in _SUMMARY or folded == "description":
            kind = "summary" if folded in _SUMMARY else "description"
            if kind in self.current.annotations:
                self._next()
            self.current.annotations[kind] = value
        elif not value and folded in _LABEL_HEADINGS | {"annotations"}:
            self.section = folded
        elif folded == "severity":
            self.current.severity = self.current.severity or _bare(value)
        elif folded in STARTED:
            self.current.annotations.setdefault("started", value)
        elif self.section == "annotations" and bulleted:
            self.current.annotations.setdefault(key, _bare(value))

    def _alert_line(self, value: str) -> None:
        if not self.current.empty():
            self._next()
        summary, severity = _summary_and_severity(value)
        if NAME_LIKE.fullmatch(summary) and not summary.islower():
            self.current.labels.setdefault("alertname", summary)  # `*Alert:* HighCPU`
        elif summary:
            self.current.annotations["summary"] = summary
        self.current.severity = severity

    def _label(self, key: str, value: str, *, listed: bool) -> None:
        if listed:
            if key in self.run:  # the list repeats a label: it is the next alert's
                self._commit_run()
            self.run[key] = value
        elif not self.alerts and self.current.empty():
            self.group.setdefault(key, value)
        else:
            self._label_set({key: value})

    def _label_set(self, labels: dict[str, str]) -> None:
        current = self.current.labels
        if any(current.get(key, value) != value for key, value in labels.items()):
            self._next()
        for key, value in labels.items():
            self.current.labels.setdefault(key, value)

    def _commit_run(self) -> None:
        if not self.run:
            return
        if self.current.from_run:
            self._next()
        self.current.labels.update(self.run)
        self.current.from_run = True
        self.run = {}

    def _next(self) -> None:
        if not self.current.empty():
            self.alerts.append(self.current)
        self.current = ListedAlert(status=self.status)
        self.section = ""


def _section(body: str) -> AlertStatus | None:
    """`*Alerts Firing:*`, `Resolved alerts`, `*Firing:*`: the status of the alerts below."""
    words = body.strip("*_:~ ").rstrip(":*_ ")
    match = _SECTION.fullmatch(words) if len(words) <= 24 else None
    return AlertStatus(match.group(1).lower()) if match else None


def _field(body: str) -> tuple[str, str] | None:
    """`*Key:* value`, `*Key*: value`, `Key: value` as (key, value); None for prose."""
    match = _FIELD.match(body)
    if match is None:
        return None
    key = match.group(1).strip()
    return (key, body[match.end() :].strip().lstrip("*_").strip()) if key else None


def _equals(body: str) -> tuple[str, str] | None:
    """A listed ` - name = value` (Labels: and Annotations: of the default text list)."""
    key, equals, value = body.partition("=")
    key = key.strip()
    return (key, value.strip()) if equals and _LABEL_NAME.fullmatch(key) else None


def _label_set(body: str) -> dict[str, str] | None:
    """A whole line of at least two labels, with an optional `Labels:` in front."""
    if prefix := _SET_PREFIX.match(body):
        body = body[prefix.end() :].strip()
    if body.startswith("map[") and body.endswith("]"):
        return _go_map(body[4:-1])
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    pairs: dict[str, str] = {}
    position = 0
    while position < len(body):
        match = _PAIR.match(body, position)
        if match is None or match.end() == position:
            return None
        pairs.setdefault(match.group(1), unquote(match.group(2)))
        position = match.end()
    return pairs if len(pairs) >= 2 else None


def _go_map(body: str) -> dict[str, str] | None:
    """`alertname:X instance:node-1:9100`: Go's print of a label map (keys never hold `:`)."""
    pairs: dict[str, list[str]] = {}
    last: list[str] | None = None
    for token in body.split(" "):
        key, colon, value = token.partition(":")
        if colon and _LABEL_NAME.fullmatch(key):
            last = pairs.setdefault(key, [value])
        elif last is not None:  # a value with a space in it
            last.append(token)
        else:
            return None
    return {key: " ".join(parts) for key, parts in pairs.items()} if len(pairs) >= 2 else None


def _summary_and_severity(line: str) -> tuple[str, str]:
    """`Pod is crash looping - `critical`` as (summary, severity), without regex backtracking."""
    line = line.strip()
    if line.endswith("`"):
        head, tick, severity = line[:-1].rpartition("`")
        head = head.rstrip()
        if tick and head.endswith("-"):
            return head[:-1].rstrip(), severity.strip()
    return line, ""


def _bare(value: str) -> str:
    """A value without the code, bold and italics marks around it."""
    return value.strip().strip("*_`").strip()
