"""Plugins that register themselves in the module that defines them.

Webhook sources, Slack layouts and executors each keep a `Registry`. Reading
one imports every module of its package first, once, so a plugin registers
itself on import and adding one is adding a module.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, package: str) -> None:
        self.kind, self.package = kind, package
        self.entries: dict[str, T] = {}
        self._discovered = False

    def register(self, name: str, entry: T) -> T:
        """Add `entry`; the same entry again is a no-op, another under its name an error."""
        if name in self.entries and self.entries[name] != entry:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self.entries[name] = entry
        return entry

    def all(self) -> dict[str, T]:
        """Every entry by name, in name order, once each module of the package is imported."""
        if not self._discovered:
            package = importlib.import_module(self.package)
            for module in pkgutil.iter_modules(package.__path__):
                importlib.import_module(f"{self.package}.{module.name}")
            self._discovered = True
        return dict(sorted(self.entries.items()))
