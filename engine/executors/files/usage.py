"""What a tree takes up: the dir_size_at_most and disk_free_at_least checks, and
the walk_latency benchmark."""

from __future__ import annotations

import shutil
from pathlib import Path

from pydantic import Field

from engine.executors.common import RepeatParams, human_size, median_seconds
from engine.executors.files.operations import OPS
from engine.executors.files.tree import tree_usage, walk
from engine.ports import Params


class DirSizeAtMostParams(Params):
    bytes: int = Field(ge=0)


class DiskFreeAtLeastParams(Params):
    percent: float = Field(ge=0, le=100)


@OPS.checks("dir_size_at_most", DirSizeAtMostParams)
def dir_size_at_most(params: DirSizeAtMostParams, root: Path) -> tuple[bool, str]:
    files, size = tree_usage(root)
    shown = f"{root} holds {human_size(size)} in {files} files"
    if size <= params.bytes:
        return True, f"{shown} <= {human_size(params.bytes)}"
    return False, f"{shown} > {human_size(params.bytes)}"


@OPS.checks("disk_free_at_least", DiskFreeAtLeastParams)
def disk_free_at_least(params: DiskFreeAtLeastParams, root: Path) -> tuple[bool, str]:
    """Free as node_exporter counts it: space available to unprivileged users."""
    usage = shutil.disk_usage(root)
    free = 100 * usage.free / usage.total if usage.total else 0.0
    shown = (
        f"the file system of {root} has {free:.1f}% free "
        f"({human_size(usage.free)} of {human_size(usage.total)})"
    )
    if free >= params.percent:
        return True, f"{shown} >= {params.percent:g}%"
    return False, f"{shown} < {params.percent:g}%"


@OPS.benchmarks("walk_latency", RepeatParams)
def walk_latency(params: RepeatParams, root: Path) -> float:
    """Median seconds to walk the whole tree: what every check and step pays."""

    def walk_all() -> None:
        for _ in walk(root):
            pass

    return median_seconds(walk_all, params.repeat)
