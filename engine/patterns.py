"""Patterns: how an alert becomes a diagnosis, declared in YAML.

A pattern is about alert names (as the common rule sets spell them), labels
and signatures in the text; it finds the facts a playbook acts on in the
first of several candidate labels or in the text, and says where it looked
when one is missing, so a known alert is never called unknown.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engine.models import Alert, Diagnosis

ID = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
"""What pattern, playbook and problem ids look like."""


class Spec(BaseModel):
    """A part of the catalog's YAML: closed (a typo is refused) and frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


MAX_CANDIDATES = 20
"""Candidates a text rule offers for one fact: a person's message names a few things."""


class TargetRule(Spec):
    """Where a pattern finds one thing a playbook acts on (a fact): the first of
    several candidate labels, else the alert's text. Written in YAML as a list of
    label names, or with `value` and `text` regexes (the fact is the first group
    that matched, or the whole match)."""

    labels: list[str] = Field(default_factory=list, description="candidate labels, in order")
    value: str | None = Field(
        default=None, description="full-match regex over the label's value, e.g. to drop a suffix"
    )
    text: str | None = Field(default=None, description="regex searched in the alert's text")

    @model_validator(mode="before")
    @classmethod
    def _label_list(cls, data: Any) -> Any:
        return {"labels": data} if isinstance(data, list) else data

    @field_validator("value", "text")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            compile_regex(value)
        return value

    def find(self, alert: Alert) -> tuple[str, ...]:
        """The candidates, best first: the first label that has one, else every
        distinct match in the text (the allowlist picks among those)."""
        for label in self.labels:
            raw = alert.labels.get(label)
            if raw and (found := _group(re.fullmatch(self.value, raw) if self.value else raw)):
                return (found,)
        if self.text is None:
            return ()
        matches = (_group(m) for m in re.finditer(self.text, alert.text))
        return tuple(dict.fromkeys(m for m in matches if m))[:MAX_CANDIDATES]

    def sought(self) -> tuple[str, ...]:
        """Where it looked, for a person: the labels, then the text."""
        text = ("the alert's text",) if self.text is not None else ()
        return (*(f"label `{label}`" for label in self.labels), *text)


class PatternSpec(Spec):
    """Turns an alert into a diagnosis. Every matcher given must match; `target`
    then finds the facts its playbooks act on, and says where it looked when
    one is missing, so a known alert is never called unknown."""

    id: str = Field(pattern=ID)
    problem: str = Field(pattern=ID)
    alertname: str | list[str] | None = Field(
        default=None, description="the alert's name, or any of several (as rule sets spell it)"
    )
    labels: dict[str, str] = Field(default_factory=dict, description="label -> full-match regex")
    text: str | None = Field(
        default=None, description="regex searched in the alert's name and text"
    )
    target: dict[str, TargetRule] = Field(
        default_factory=dict, description="fact -> where to find it (labels, text)"
    )
    explanation: str

    @field_validator("text")
    @classmethod
    def _text_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            compile_regex(value)
        return value

    @field_validator("labels")
    @classmethod
    def _labelscompile_regex(cls, value: dict[str, str]) -> dict[str, str]:
        for regex in value.values():
            compile_regex(regex)
        return value

    @property
    def alertnames(self) -> tuple[str, ...]:
        if self.alertname is None:
            return ()
        return (self.alertname,) if isinstance(self.alertname, str) else tuple(self.alertname)

    def names(self, alert: Alert) -> bool:
        """Whether the alert's name is one this pattern is about (or it names none)."""
        return not self.alertnames or alert.name in self.alertnames

    def mismatch(self, alert: Alert) -> str | None:
        """Why the alert does not match, in a person's words; None when it does."""
        if not self.names(alert):
            return f"it is about {_listed(self.alertnames)}, not `{alert.name}`"
        for label, regex in self.labels.items():
            if label not in alert.labels:
                return f"it needs the label `{label}`, which the alert does not have"
            if not re.fullmatch(regex, alert.labels[label]):
                return f"its label `{label}` must match `{regex}`"
        if self.text is not None and re.search(self.text, _said(alert)) is None:
            return f"the alert's text does not match `{self.text}`"
        return None

    def matches(self, alert: Alert) -> bool:
        return self.mismatch(alert) is None

    def because(self, alert: Alert) -> str:
        """What in the alert this pattern matched on, for a person checking it."""
        reasons = [f"its name is `{alert.name}`"] if self.alertnames else []
        reasons += [f"its label `{k}` matches `{regex}`" for k, regex in self.labels.items()]
        if self.text is not None and (found := re.search(self.text, _said(alert))):
            reasons.append(f"its text says `{found.group(0)[:80]}`")
        return ", ".join(reasons) or "it matches any alert"

    def diagnose(self, alert: Alert, chosen: Mapping[str, str] | None = None) -> Diagnosis:
        """The reading of an alert this pattern matches. `chosen` puts one of a
        fact's candidates first (the one the allowlist admitted)."""
        facts: dict[str, str] = {}
        others: dict[str, tuple[str, ...]] = {}
        looked_for: dict[str, tuple[str, ...]] = {}
        for fact, rule in self.target.items():
            found = rule.find(alert)
            if chosen and fact in chosen and chosen[fact] in found:
                found = (chosen[fact], *(f for f in found if f != chosen[fact]))
            if not found:
                looked_for[fact] = rule.sought()
                continue
            facts[fact] = found[0]
            if len(found) > 1:
                others[fact] = found[1:]
        return Diagnosis(
            pattern_id=self.id,
            problem=self.problem,
            explanation=_fill(self.explanation, {**alert.labels, **facts}),
            facts=facts,
            alternatives=others,
            looked_for=looked_for,
        )


def compile_regex(regex: str) -> re.Pattern[str]:
    try:
        return re.compile(regex)
    except re.error as exc:
        raise ValueError(f"invalid regex {regex!r}: {exc}") from None


def _said(alert: Alert) -> str:
    """What a text matcher reads: an integration's alert name (a rule titled in
    words, "SQLite WAL file too large") and its text; of a person's message,
    only the statements its text keeps (not a question in its first line)."""
    return alert.text if alert.reporter is not None else f"{alert.name}\n{alert.text}"


def _group(match: re.Match[str] | str | None) -> str | None:
    """A match's first group that matched (else the whole match); a str as it is."""
    if match is None or isinstance(match, str):
        return match or None
    found = next((g for g in match.groups() if g), None) if match.re.groups else match.group(0)
    return found or None


def _listed(names: Sequence[str]) -> str:
    return ", ".join(f"`{name}`" for name in names)


def _fill(template: str, labels: Mapping[str, str]) -> str:
    """`{label}` placeholders from the alert; unknown ones stay visible rather than crash."""
    return re.sub(r"\{(\w+)\}", lambda m: labels.get(m.group(1), m.group(0)), template)
