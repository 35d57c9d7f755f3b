"""`grace simulate FILE [--source NAME]`: how GRACE would read an alert, touching nothing.

A playbook author's question is "what does GRACE make of this payload?", and
posting it into a channel to find out is no answer. The file is read exactly
as its source would deliver it (a webhook body, a Slack message event, or a
line a person types), without authentication, storage, Slack or any call to
a target: executors are asked only whether their allowlist admits the target,
which they answer offline.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.app import load_playbooks, make_executors
from bot.settings import Settings
from bot.webhooks import build_sources
from engine.api import (
    Catalog,
    IntakeError,
    Reading,
    SystemClock,
    WebhookSource,
    parse_slack_message,
    read,
    webhook_plugins,
)
from engine.models import Alert, AlertStatus, Availability
from engine.ports import Executor

SLACK = "slack"
"""A Slack `message` event, as an alert channel delivers it."""
TEXT = "text"
"""A line a person types in an alert channel."""
CHANNEL = "C0SIMULATE"
PERSON = "U0SIMULATE"


class SimulationError(Exception):
    """The input cannot be read as the source asked for; the message says why."""


@dataclass(frozen=True)
class Simulation:
    """What one delivery would become: its source and each alert's reading."""

    source: str
    readings: list[Reading]

    @property
    def opening(self) -> Reading | None:
        """The reading of the alert that would open the incident: the first firing one."""
        return next((r for r in self.readings if r.alert.status is AlertStatus.FIRING), None)

    @property
    def planned(self) -> bool:
        return any(r.proposal is not None for r in self.readings)


class Simulator:
    """GRACE's catalog, executors and sources, built from the settings, touching nothing."""

    def __init__(self, settings: Settings) -> None:
        clock = SystemClock()
        self._clock = clock
        self._settings = settings
        self._executors: dict[str, Executor] = make_executors(settings, clock)
        self._catalog: Catalog = load_playbooks(settings, self._executors)
        self._sources: dict[str, WebhookSource] = build_sources(settings)

    @property
    def sources(self) -> list[str]:
        return [*self._sources, SLACK, TEXT]

    async def simulate(
        self, raw: bytes, source: str | None = None, headers: Mapping[str, str] | None = None
    ) -> Simulation:
        """Read `raw` as `source` delivers it (guessed when None); SimulationError if it cannot."""
        headers = {name.lower(): value for name, value in (headers or {}).items()}
        name = source or self._guess(raw, headers)
        alerts = self._alerts(name, raw, headers)
        readings = [await self._read(alert) for alert in alerts]
        return Simulation(name, readings)

    async def aclose(self) -> None:
        for source in self._sources.values():
            await source.aclose()

    def _alerts(self, source: str, raw: bytes, headers: Mapping[str, str]) -> list[Alert]:
        now = self._clock.now()
        if source == TEXT:
            return self._slack({"type": "message", "user": PERSON, "text": _text(raw), "ts": "1"})
        if source == SLACK:
            return self._slack(_json_object(raw, "a Slack message event"))
        webhook = self._sources.get(source)
        if webhook is None:
            raise SimulationError(f"unknown source {source!r} (known: {', '.join(self.sources)})")
        try:
            return webhook.read(raw, received_at=now, channel_for=_nowhere, headers=headers)
        except IntakeError as exc:
            raise SimulationError(f"as {source}: {exc}") from None

    def _slack(self, event: dict[str, Any]) -> list[Alert]:
        event.setdefault("ts", "1")
        alert = parse_slack_message(event, channel=CHANNEL, received_at=self._clock.now())
        return [] if alert is None else [alert]

    def _guess(self, raw: bytes, headers: Mapping[str, str]) -> str:
        """A Slack event, a webhook body one source reads, or a person's line."""
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return TEXT
        if isinstance(body, dict) and body.get("type") == "message":
            return SLACK
        plugins = webhook_plugins()
        ordered = sorted(self._sources, key=lambda n: plugins[n].lenient if n in plugins else 1)
        for name in ordered:
            try:
                if self._sources[name].read(
                    raw, received_at=self._clock.now(), channel_for=_nowhere, headers=headers
                ):
                    return name
            except IntakeError:
                continue
        if isinstance(body, dict) and any(k in body for k in ("text", "blocks", "attachments")):
            return SLACK
        raise SimulationError(
            f"no source reads this JSON; name one with --source ({', '.join(self.sources)})"
        )

    async def _read(self, alert: Alert) -> Reading:
        return await read(
            alert, self._catalog, self._executors, self._settings.targets, _not_checked
        )


async def _not_checked(executor: Executor) -> Availability:
    """Whether an executor can reach its platform is not asked: that would touch it."""
    return Availability(ok=True)


def _nowhere(labels: Mapping[str, str]) -> str:
    return CHANNEL


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise SimulationError("the text is not UTF-8") from None


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise SimulationError(f"not {what}: invalid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise SimulationError(f"not {what}: expected a JSON object")
    return body


# -- the report -------------------------------------------------------------------


def report(simulation: Simulation, out: Callable[[str], None] = print) -> None:
    """The simulation as a person reads it in a terminal."""
    count = len(simulation.readings)
    out(f"Read as: {simulation.source} ({count} alert{'s' if count != 1 else ''})")
    if not count:
        out("  Not an alert: GRACE would ignore it quietly (chatter, or no report it knows).")
    for index, reading in enumerate(simulation.readings, 1):
        out("")
        _alert_lines(index, count, reading.alert, out)
        _reading_lines(reading, out)
    out("")
    out("Result: a plan was found." if simulation.planned else "Result: no plan.")


def _alert_lines(index: int, count: int, alert: Alert, out: Callable[[str], None]) -> None:
    out(f"Alert {index} of {count}: {alert.name} ({alert.status.value})")
    labels = " ".join(f"{k}={v}" for k, v in alert.labels.items())
    out(f"  labels: {labels or '(none)'}")
    if alert.severity:
        out(f"  severity: {alert.severity}")
    if alert.text:
        first = alert.text.splitlines()[0]
        out(f"  text: {_short(first)}{' …' if len(alert.text) > len(first) else ''}")
    if alert.link:
        out(f"  link: {alert.link}")
    out(f"  fingerprint: {alert.fingerprint}  group: {alert.group}")


def _reading_lines(reading: Reading, out: Callable[[str], None]) -> None:
    for n, diagnosis in enumerate(reading.diagnoses):
        lead = "recognised" if n == 0 else "also recognised"
        out(f"  {lead}: {diagnosis.problem} (pattern {diagnosis.pattern_id})")
        out(f"    because {reading.because.get(diagnosis.pattern_id, '?')}")
        out(f"    {_short(diagnosis.explanation, 300)}")
        for fact, value in diagnosis.facts.items():
            others = diagnosis.alternatives.get(fact, ())
            more = f" (or {', '.join(others)})" if others else ""
            out(f"    found {fact} = {value}{more}")
        for fact, places in diagnosis.looked_for.items():
            out(f"    no {fact}: looked in {', '.join(places)}")
    for pattern, why in reading.misses:
        out(f"  not pattern {pattern}: {why}")
    if not reading.diagnoses and not reading.misses and reading.alert.source != "manual":
        out("  no pattern recognises it")
    if reading.alert.status is AlertStatus.RESOLVED:
        out("  resolved: GRACE never heals on a resolved alert; it closes what it opened")
        return
    if reading.proposal is None:
        out(f"  no plan: {reading.refusal}")
        return
    plan = reading.proposal.plan
    out(f"  reading used: pattern {reading.proposal.diagnosis.pattern_id}")
    out(f"  target: {plan.target.executor} {plan.target.name} (the allowlist admits it)")
    approvals = plan.required_approvals
    rule = "heals at once" if approvals == 0 else f"needs {approvals} approval(s)"
    out(f"  playbook: {plan.playbook_id} ({plan.title}), tier {plan.tier}: {rule}")
    for step in plan.steps:
        out(f"    step {step.action} {_params(step.params)} (deadline {step.timeout_s:g} s)")
    for check in plan.checks:
        out(f"    check {check.check} {_params(check.params)}")
    for benchmark in plan.benchmarks:
        out(f"    benchmark {benchmark.benchmark} (tolerance {benchmark.tolerance:.0%})")
    out(f"  plan hash: {plan.hash}")


def _params(params: Mapping[str, object]) -> str:
    return json.dumps(params, sort_keys=True) if params else ""


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def exit_status(simulation: Simulation) -> int:
    """0 when a plan was found, 1 when none was."""
    return 0 if simulation.planned else 1
