"""The catalog: patterns and playbooks, declarative YAML validated when loaded.

A mistake in a playbook must surface when GRACE starts (or in `grace check`),
never at 3 a.m. when the playbook first runs, so every error names the file,
the line and the field.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    model_validator,
)

from engine.models import REQUIRED_APPROVALS, Alert, Diagnosis
from engine.patterns import ID, PatternSpec, Spec
from engine.ports import ExecutorSpec


class TargetSpec(Spec):
    """Which alert labels name the target. The executor's allowlist decides
    whether the name they make may be touched."""

    executor: str
    from_label: str = Field(description="the alert label naming the target")
    scope_label: str | None = Field(
        default=None,
        description="a label naming what the target lives in (a namespace, a compose project)",
    )
    kind: str | None = Field(
        default=None,
        pattern=r"^[a-z][a-z0-9_-]{0,31}$",
        description="what sort of thing it is, for executors that act on several (asg, ec2)",
    )

    def name_from(self, labels: Mapping[str, str]) -> str | None:
        """`[kind:][scope/]name` from the labels; None when one is missing."""
        name = labels.get(self.from_label)
        scope = labels.get(self.scope_label) if self.scope_label else ""
        if not name or scope is None or (self.scope_label and not scope):
            return None
        scoped = f"{scope}/{name}" if self.scope_label else name
        return f"{self.kind}:{scoped}" if self.kind else scoped

    def labels_for(self, typed: str) -> dict[str, str]:
        """The labels a person means by typing TARGET: `name`, or `scope/name`."""
        if self.scope_label is None:
            return {self.from_label: typed}
        scope, _, name = typed.partition("/")
        return {self.scope_label: scope, self.from_label: name}

    def typed_from(self, labels: Mapping[str, str]) -> str | None:
        """What a person types as TARGET for these labels: `name` or `scope/name`."""
        name = labels.get(self.from_label)
        if not name:
            return None
        if self.scope_label is None:
            return name
        scope = labels.get(self.scope_label)
        return f"{scope}/{name}" if scope else None

    @property
    def shape(self) -> str:
        """How a person types the target, for help texts."""
        return f"{self.scope_label}/{self.from_label}" if self.scope_label else self.from_label


class StepSpec(Spec):
    action: str
    params: dict[str, Any] = Field(default_factory=dict)
    timeout: float = Field(default=60.0, gt=0, le=3600)


class CheckSpec(Spec):
    check: str
    params: dict[str, Any] = Field(default_factory=dict)


class BenchmarkSpec(Spec):
    benchmark: str
    params: dict[str, Any] = Field(default_factory=dict)
    tolerance: float = Field(default=0.5, ge=0, le=10)


class ApprovalSpec(Spec):
    """A playbook's own approval rule: only ever stricter than its tier's."""

    approvers: list[str] = Field(
        default_factory=list, description="a subset of the tier's approvers (users or groups)"
    )
    required: int | None = Field(default=None, ge=1, le=10, description="distinct approvals")


class PlaybookSpec(Spec):
    id: str = Field(pattern=ID)
    title: str = Field(min_length=1, max_length=120)
    treats: list[str] = Field(min_length=1)
    tier: Literal[1, 2, 3]
    target: TargetSpec
    steps: list[StepSpec] = Field(min_length=1)
    checks: list[CheckSpec] = Field(min_length=1)
    benchmarks: list[BenchmarkSpec] = Field(default_factory=list)
    approval: ApprovalSpec | None = None

    @model_validator(mode="after")
    def _stricter_only(self) -> PlaybookSpec:
        required = self.approval.required if self.approval else None
        if required is not None and required < REQUIRED_APPROVALS[self.tier]:
            raise ValueError(
                f"approval.required {required} is below tier {self.tier}'s "
                f"{REQUIRED_APPROVALS[self.tier]}: a playbook may only be stricter than its tier"
            )
        if self.tier == 1 and self.approval is not None:
            raise ValueError("a tier 1 playbook heals at once: raise its tier to require approval")
        return self

    @property
    def required_approvals(self) -> int:
        own = self.approval.required if self.approval else None
        return own if own is not None else REQUIRED_APPROVALS[self.tier]


class CatalogFile(Spec):
    patterns: list[PatternSpec] = Field(default_factory=list)
    playbooks: list[PlaybookSpec] = Field(default_factory=list)


@dataclass(eq=False)  # exceptions must stay mutable: Python sets their traceback
class CatalogError(Exception):
    file: str
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


@dataclass(frozen=True)
class Catalog:
    patterns: tuple[PatternSpec, ...]
    playbooks: tuple[PlaybookSpec, ...]
    sources: Mapping[str, str]  # pattern or playbook id -> file it came from

    def diagnose(self, alert: Alert) -> Diagnosis | None:
        """The first pattern's reading of the alert, if any pattern matches."""
        return next(iter(self.diagnoses(alert)), None)

    def diagnoses(self, alert: Alert) -> list[Diagnosis]:
        """Every matching pattern's reading, in the catalog's order."""
        return [p.diagnose(alert) for p in self.patterns if p.matches(alert)]

    def with_fact(self, diagnosis: Diagnosis, alert: Alert, fact: str, value: str) -> Diagnosis:
        """The diagnosis told of `value` for `fact`, one of the candidates it found."""
        pattern = next(p for p in self.patterns if p.id == diagnosis.pattern_id)
        return pattern.diagnose(alert, chosen={fact: value})

    def near_misses(self, alert: Alert) -> list[tuple[PatternSpec, str]]:
        """Patterns about this alert's name that did not match, each with why:
        what to tell a person when no pattern recognises it."""
        return [
            (pattern, why)
            for pattern in self.patterns
            if alert.name in pattern.alertnames and (why := pattern.mismatch(alert)) is not None
        ]

    def playbook_for(
        self, problem: str, labels: Mapping[str, str] | None = None
    ) -> PlaybookSpec | None:
        """The first of `playbooks_for`: the catalog's own preference."""
        return next(iter(self.playbooks_for(problem, labels)), None)

    def playbooks_for(
        self, problem: str, labels: Mapping[str, str] | None = None
    ) -> list[PlaybookSpec]:
        """The playbooks that treat the problem and fit `labels` best, in catalog order
        (user playbooks were loaded first). Fitting best: those that find their target
        in the labels with a scope (an OOM-killed container is a pod or a Docker
        container, and a namespace/pod is the more specific reading), else those that
        find it at all, else every playbook that treats the problem. Only playbooks
        that fit equally well compete on their record (engine/evidence.py)."""
        treating = [p for p in self.playbooks if problem in p.treats]
        if labels is None:
            return treating
        fitting = [p for p in treating if p.target.name_from(labels) is not None]
        scoped = [p for p in fitting if p.target.scope_label is not None]
        return scoped or fitting or treating

    def playbook(self, playbook_id: str) -> PlaybookSpec | None:
        return next((p for p in self.playbooks if p.id == playbook_id), None)


def builtin_dir() -> Path:
    return Path(str(resources.files("engine") / "builtin"))


def load_catalog(
    dirs: Sequence[Path], executors: Mapping[str, ExecutorSpec], *, builtins: bool = True
) -> Catalog:
    """Load every *.yml/*.yaml under `dirs` (then the built-ins) or raise CatalogError."""
    folders = [*dirs, builtin_dir()] if builtins else list(dirs)
    patterns: list[PatternSpec] = []
    playbooks: list[PlaybookSpec] = []
    sources: dict[str, str] = {}
    for folder in folders:
        if not folder.is_dir():
            raise CatalogError(str(folder), None, None, "playbook folder does not exist")
        for path in sorted([*folder.rglob("*.yml"), *folder.rglob("*.yaml")]):
            loaded = _load_file(path, executors)
            pattern_ids = [pattern.id for pattern in loaded.patterns]
            playbook_ids = [playbook.id for playbook in loaded.playbooks]
            for kind, ids in (("patterns", pattern_ids), ("playbooks", playbook_ids)):
                for index, item_id in enumerate(ids):
                    key = f"{kind}:{item_id}"
                    if key in sources:
                        raise CatalogError(
                            str(path),
                            None,
                            f"{kind}[{index}].id",
                            f"{item_id!r} is already defined in {sources[key]}",
                        )
                    sources[key] = str(path)
            patterns.extend(loaded.patterns)
            playbooks.extend(loaded.playbooks)
    _check_treats(patterns, playbooks, sources)
    return Catalog(tuple(patterns), tuple(playbooks), sources)


def _load_file(path: Path, executors: Mapping[str, ExecutorSpec]) -> CatalogFile:
    try:
        text = path.read_text(encoding="utf-8")
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise CatalogError(str(path), line, None, f"invalid YAML: {exc.problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(str(path), None, None, f"cannot read: {exc}") from None
    try:
        loaded = CatalogFile.model_validate(data if data is not None else {})
    except ValidationError as exc:
        loc, message = _most_useful(exc)
        raise CatalogError(str(path), _line_of(root, loc), _dotted(loc), message) from None
    for loc, message in _executor_problems(loaded, executors):
        raise CatalogError(str(path), _line_of(root, loc), _dotted(loc), message)
    return loaded


def _executor_problems(
    loaded: CatalogFile, executors: Mapping[str, ExecutorSpec]
) -> Iterable[tuple[tuple[Any, ...], str]]:
    """Steps, checks and benchmarks must name what their executor can do, with valid params."""
    for p_index, playbook in enumerate(loaded.playbooks):
        base: tuple[Any, ...] = ("playbooks", p_index)
        spec = executors.get(playbook.target.executor)
        if spec is None:
            known = ", ".join(sorted(executors)) or "none"
            yield (
                (*base, "target", "executor"),
                (f"unknown executor {playbook.target.executor!r} (known: {known})"),
            )
            continue
        groups: list[tuple[str, Mapping[str, type[BaseModel]], list[Any], str]] = [
            ("steps", spec.actions, playbook.steps, "action"),
            ("checks", spec.checks, playbook.checks, "check"),
            ("benchmarks", spec.benchmarks, playbook.benchmarks, "benchmark"),
        ]
        for group, models, items, name_field in groups:
            for index, item in enumerate(items):
                name = getattr(item, name_field)
                where = (*base, group, index)
                if name not in models:
                    known = ", ".join(sorted(models)) or "none"
                    yield (
                        (*where, name_field),
                        (
                            f"unknown {name_field} {name!r} for executor "
                            f"{playbook.target.executor} (known: {known})"
                        ),
                    )
                    continue
                try:
                    models[name].model_validate(item.params)
                except ValidationError as exc:
                    error = exc.errors()[0]
                    yield (*where, "params", *error["loc"]), error["msg"]


def _check_treats(
    patterns: Sequence[PatternSpec], playbooks: Sequence[PlaybookSpec], sources: Mapping[str, str]
) -> None:
    problems = {p.problem for p in patterns}
    for playbook in playbooks:
        for problem in playbook.treats:
            if problem not in problems:
                raise CatalogError(
                    sources[f"playbooks:{playbook.id}"],
                    None,
                    f"{playbook.id}.treats",
                    f"no pattern diagnoses {problem!r}",
                )


def _most_useful(exc: ValidationError) -> tuple[tuple[Any, ...], str]:
    """A misspelt key shows up both as missing and as extra; the extra one names the typo."""
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    loc = tuple(first["loc"])
    if first["type"] != "extra_forbidden":
        return loc, first["msg"]
    missing = [e["loc"][-1] for e in errors if e["type"] == "missing" and e["loc"][:-1] == loc[:-1]]
    hint = difflib.get_close_matches(str(loc[-1]), [str(m) for m in missing], n=1)
    return loc, f"unknown field{f' (did you mean {hint[0]!r}?)' if hint else ''}"


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """Walk the YAML node tree along a pydantic error location to its line."""
    node = root
    if node is None:
        return None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == key), None)
            if match is None:
                break
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            break
    return node.start_mark.line + 1


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for key in loc:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out
