"""The files executor: clears `__pycache__` trees and rotates logs under allowlisted roots.

A step never deletes. Each step gets its own quarantine folder (its snapshot):
every file the step removes or replaces is moved there after a manifest entry
naming it has been written and fsynced, and every file it creates is recorded,
so rollback can put the tree back as it was. `purge_quarantine` is the only
true deletion, of folders older than `quarantine_days`.

Symlinks are never followed: walks use lstat and `followlinks=False`, a
symlinked log or `__pycache__` is left alone and named in the step's detail,
files are opened with O_NOFOLLOW, and every move first checks that no directory
on either side has become a symlink since the walk.

`executor` resolves targets, keeps the quarantine folders and dispatches;
`pycache`, `logrotate` and `usage` hold the operations; `quarantine` records
and undoes a step's changes; `tree` looks at trees without following links.
"""

from engine.executors.files.executor import PLUGIN, SPEC, FilesConfig, FilesExecutor
from engine.executors.files.operations import EXECUTOR_NAME

__all__ = ["EXECUTOR_NAME", "PLUGIN", "SPEC", "FilesConfig", "FilesExecutor"]
