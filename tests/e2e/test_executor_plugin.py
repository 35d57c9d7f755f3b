"""Adding an executor is one module: this test registers one of its own (`note`)
without touching any other file, and GRACE reads its settings, loads a playbook
for it and heals through it, end to end, through the real server."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field

from bot.app import make_executors
from bot.settings import ConfigError, load_settings
from engine.clock import SystemClock
from engine.executors import plugin
from engine.executors.common import name_matches, not_allowlisted, own, refused
from engine.executors.plugin import (
    Context,
    ExecutorPlugin,
    Operations,
    executor_plugins,
    register_executor,
    specs,
)
from engine.models import (
    Availability,
    CheckResult,
    PlannedBenchmark,
    PlannedCheck,
    PlannedStep,
    Snapshot,
    StepResult,
    Target,
)
from engine.models import IncidentState as S
from engine.ports import Params

NAME = "note"
OPS = Operations(NAME)


class NoteConfig(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    note_folder: Path | None = Field(None, description="where notes are written")


class WriteParams(Params):
    text: str = Field(min_length=1)


class SaysParams(Params):
    text: str


class NoteExecutor:
    """Writes a note file per target; a snapshot remembers what the file held."""

    name = NAME

    def __init__(self, folder: Path, clock: SystemClock) -> None:
        self.folder, self.clock = folder, clock

    @property
    def spec(self):
        return OPS.spec

    def resolve_target(self, value: str, allowlist) -> Target:
        if not value.isalnum():
            raise refused(NAME, value, "a note is named by letters and digits")
        if not any(name_matches(value, pattern) for pattern in allowlist):
            raise not_allowlisted(NAME, value)
        return Target(executor=NAME, name=value)

    async def available(self) -> Availability:
        return Availability(ok=True)

    def describe_snapshot(self, target: Target) -> str:
        return f"what note {target.name} held"

    def _path(self, target: Target) -> Path:
        return self.folder / f"{target.name}.note"

    async def snapshot(self, target: Target, incident_id: int) -> Snapshot:
        own(NAME, target)
        path = self._path(target)
        held = path.read_text() if path.exists() else ""
        return Snapshot(
            incident_id=incident_id,
            target=target,
            location=held,
            size_bytes=len(held),
            taken_at=self.clock.now(),
        )

    async def run(self, step: PlannedStep, target: Target, snapshot: Snapshot) -> StepResult:
        own(NAME, target)
        handler, params = OPS.actions.resolve(step.action, step.params)
        ok, detail = handler(self, params, self._path(target))
        return StepResult(action=step.action, ok=ok, detail=detail, seconds=0.0)

    @OPS.actions("write", WriteParams)
    def _write(self, params: WriteParams, path: Path) -> tuple[bool, str]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(params.text)
        return True, f"wrote {len(params.text)} characters"

    async def check(self, check: PlannedCheck, target: Target) -> CheckResult:
        handler, params = OPS.checks.resolve(check.check, check.params)
        ok, detail = handler(self, params, self._path(target))
        return CheckResult(check=check.check, ok=ok, detail=detail)

    @OPS.checks("says", SaysParams)
    def _says(self, params: SaysParams, path: Path) -> tuple[bool, str]:
        held = path.read_text() if path.exists() else ""
        return held == params.text, f"the note says {held!r}"

    async def measure(self, benchmark: PlannedBenchmark, target: Target) -> float:
        OPS.benchmarks.resolve(benchmark.benchmark, benchmark.params)
        raise AssertionError("unreachable: the note executor has no benchmarks")

    async def restore(self, snapshot: Snapshot) -> None:
        self._path(snapshot.target).write_text(snapshot.location)


def _build(config: NoteConfig, context: Context) -> NoteExecutor:
    return NoteExecutor(config.note_folder or context.snapshots / "notes", SystemClock())


PLUGIN = ExecutorPlugin(name=NAME, operations=OPS, config=NoteConfig, factory=_build)


@pytest.fixture(autouse=True)
def registered():
    """Registered for these tests only: the rest of the suite knows the six it ships."""
    executor_plugins()
    assert register_executor(PLUGIN) is PLUGIN
    yield
    del plugin.EXECUTORS.entries[NAME]


PLAYBOOKS = """
patterns:
  - id: note-stale
    problem: note_stale
    alertname: [NoteStale]
    target: {note: {labels: [note], value: '(\\w+)', text: 'note=(\\w+)'}}
    explanation: Note {note} is stale.
playbooks:
  - id: note-refresh
    title: Write the note again
    treats: [note_stale]
    tier: 1
    target: {executor: note, from_label: note}
    steps: [{action: write, params: {text: fresh}}]
    checks: [{check: says, params: {text: fresh}}]
"""


def test_its_settings_are_read_and_checked_with_the_rest(monkeypatch, tmp_path):
    config = tmp_path / "grace.yml"
    config.write_text(f"note_folder: {tmp_path / 'notes'}\ntargets: {{note: ['*']}}\n")
    monkeypatch.setenv("GRACE_CONFIG", str(config))
    settings = load_settings()
    executor = make_executors(settings, SystemClock())[NAME]
    assert isinstance(executor, NoteExecutor) and executor.folder == tmp_path / "notes"
    assert set(specs()[NAME].actions) == {"write"} and set(specs()[NAME].checks) == {"says"}

    config.write_text("note_folder: [not, a, path]\n")
    with pytest.raises(ConfigError, match=f"{config}: note_folder: "):
        load_settings()


async def test_an_alert_is_healed_through_it_end_to_end(make_harness, tmp_path):
    h = await make_harness(playbooks=PLAYBOOKS, targets={"note": ["greeting*"]})
    await h.integration_alert("[FIRING:1] NoteStale note=greeting severity=warning")
    incident = await h.finished(await h.card())
    assert incident.state is S.RESOLVED and incident.plan.target == Target(
        executor=NAME, name="greeting"
    )
    notes = h.grace.settings.snapshots / "notes"
    assert (notes / "greeting.note").read_text() == "fresh"
    [step] = await h.grace.store.actions(incident.id)
    assert step.ok and step.detail == "wrote 5 characters"
