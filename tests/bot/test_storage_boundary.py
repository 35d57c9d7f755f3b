"""The storage boundary: `bot/` reaches storage only through the ports, and opens
a store in one place; the engine imports neither bot nor storage."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[2]


def imported(package: str) -> dict[str, set[str]]:
    """Every module `package`'s files import, by file."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
        found[str(path.relative_to(ROOT))] = names
    return found


def test_bot_imports_storage_only_where_the_store_is_opened() -> None:
    reaching = {
        path: sorted(n for n in names if n == "storage" or n.startswith("storage."))
        for path, names in imported("bot").items()
    }
    assert {path: names for path, names in reaching.items() if names} == {
        "bot/app.py": ["storage.factory"]
    }


def test_the_engine_imports_neither_bot_nor_storage() -> None:
    for path, names in imported("engine").items():
        wrong = [n for n in names if n.split(".")[0] in ("bot", "storage")]
        assert wrong == [], path
