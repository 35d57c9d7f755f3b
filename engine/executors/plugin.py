"""One executor, declared in one place: its name, its slice of the config, its
operations and its factory.

An executor module builds an `Operations` and decorates each handler with the
name and parameter model it answers to, so the spec a playbook is checked
against at load time and the handler that runs are one declaration and cannot
drift apart. It then registers an `ExecutorPlugin`; `executor_plugins()` imports
every module of this package first, so adding an executor is adding a module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from engine.ports import Clock, Executor, ExecutorSpec
from engine.registry import Registry

H = TypeVar("H", bound=Callable[..., Any])


class Table(Generic[H]):
    """One kind of operation of one executor (its actions, checks or benchmarks):
    each name with its parameter model and its handler."""

    def __init__(self, executor: str, kind: str) -> None:
        self.executor, self.kind = executor, kind
        self._entries: dict[str, tuple[type[BaseModel], H]] = {}

    def __call__(self, name: str, params: type[BaseModel]) -> Callable[[H], H]:
        """Decorate the handler of `name`, whose parameters `params` validates."""

        def declare(handler: H) -> H:
            if name in self._entries:
                raise ValueError(f"{self.executor} {self.kind} {name!r} is declared twice")
            self._entries[name] = (params, handler)
            return handler

        return declare

    @property
    def models(self) -> Mapping[str, type[BaseModel]]:
        return {name: params for name, (params, _) in self._entries.items()}

    def resolve(self, name: str, raw: Mapping[str, Any]) -> tuple[H, Any]:
        """The handler of `name` and its validated parameters; an unknown name is
        refused naming the ones there are."""
        entry = self._entries.get(name)
        if entry is None:
            known = ", ".join(sorted(self._entries)) or "none"
            raise ValueError(f"unknown {self.executor} {self.kind} {name!r}; known: {known}")
        params, handler = entry
        return handler, params.model_validate(raw)


class Operations:
    """An executor's actions, checks and benchmarks."""

    def __init__(self, executor: str) -> None:
        self.actions: Table[Callable[..., Any]] = Table(executor, "action")
        self.checks: Table[Callable[..., Any]] = Table(executor, "check")
        self.benchmarks: Table[Callable[..., Any]] = Table(executor, "benchmark")

    @property
    def spec(self) -> ExecutorSpec:
        return ExecutorSpec(
            actions=self.actions.models,
            checks=self.checks.models,
            benchmarks=self.benchmarks.models,
        )


class NoConfig(BaseModel):
    """The config of an executor that reads no keys of its own."""

    model_config = ConfigDict(extra="ignore", frozen=True)


@dataclass(frozen=True)
class Context:
    """What GRACE gives every executor it builds."""

    clock: Clock
    snapshots: Path
    """GRACE's snapshot folder; an executor keeps its snapshots in it."""


@dataclass(frozen=True)
class ExecutorPlugin:
    """An executor's registration. `config`'s fields are top-level keys of GRACE's
    configuration (`GRACE_<KEY>` in the environment), validated with the rest."""

    name: str
    operations: Operations
    factory: Callable[[Any, Context], Executor]
    config: type[BaseModel] = NoConfig
    summary: str = field(default="", compare=False)

    def build(self, settings: object, context: Context) -> Executor:
        """The executor, from GRACE's settings (its own fields only)."""
        return self.factory(self.config.model_validate(settings, from_attributes=True), context)


EXECUTORS: Registry[ExecutorPlugin] = Registry("executor", "engine.executors")


def register_executor(plugin: ExecutorPlugin) -> ExecutorPlugin:
    return EXECUTORS.register(plugin.name, plugin)


def executor_plugins() -> Mapping[str, ExecutorPlugin]:
    """Every registered executor, by name."""
    return EXECUTORS.all()


def specs() -> Mapping[str, ExecutorSpec]:
    """What each executor's playbooks may ask of it."""
    return {name: plugin.operations.spec for name, plugin in executor_plugins().items()}
