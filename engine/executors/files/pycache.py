"""Python bytecode caches: the clear_pycache action and the no_pycache check."""

from __future__ import annotations

import stat
from pathlib import Path

from engine.executors.common import human_size
from engine.executors.files.operations import OPS, Step
from engine.executors.files.tree import left_alone_note, listed, lstat_or_none, walk
from engine.ports import Params

PYCACHE = "__pycache__"


class ClearPycacheParams(Params):
    pass


class NoPycacheParams(Params):
    pass


@OPS.actions("clear_pycache", ClearPycacheParams)
def clear_pycache(params: ClearPycacheParams, step: Step) -> str:
    root, changes = step.root, step.changes
    found, links = _pycaches(root)
    for path in found:
        changes.stash(path)
    left_alone = left_alone_note(links, root)
    if not found:
        return f"nothing to clear: no {PYCACHE} directory under {root}{left_alone}"
    names = listed([str(p.relative_to(root)) for p in found])
    return (
        f"moved {len(found)} {PYCACHE} director{'y' if len(found) == 1 else 'ies'} "
        f"({human_size(changes.moved_bytes)}) from {root} into {changes.folder}: "
        f"{names}{left_alone}"
    )


@OPS.checks("no_pycache", NoPycacheParams)
def no_pycache(params: NoPycacheParams, root: Path) -> tuple[bool, str]:
    found, links = _pycaches(root)
    left_alone = left_alone_note(links, root)
    if found:
        names = listed([str(p.relative_to(root)) for p in found])
        return False, f"{len(found)} {PYCACHE} left under {root}: {names}{left_alone}"
    return True, f"no {PYCACHE} directory under {root}{left_alone}"


def _pycaches(root: Path) -> tuple[list[Path], list[Path]]:
    """The real `__pycache__` directories under root, and the symlinks named so."""
    found: list[Path] = []
    links: list[Path] = []
    for directory, dirnames, filenames in walk(root):
        if PYCACHE not in dirnames and PYCACHE not in filenames:
            continue
        if PYCACHE in dirnames:
            dirnames.remove(PYCACHE)  # never descend: nothing of interest inside
        st = lstat_or_none(directory / PYCACHE)
        if st is not None and stat.S_ISDIR(st.st_mode):
            found.append(directory / PYCACHE)
        elif st is not None and stat.S_ISLNK(st.st_mode):
            links.append(directory / PYCACHE)
    return found, links
