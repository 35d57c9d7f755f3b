"""The executors GRACE ships, by name: what their playbooks may ask of them.

The built-in playbooks name every one of these, so loading them needs every
spec, whether or not its platform is configured here.
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.executors import aws, containers, files, k8s, service, sqlite
from engine.ports import ExecutorSpec

SPECS: Mapping[str, ExecutorSpec] = {
    sqlite.EXECUTOR_NAME: sqlite.SPEC,
    service.EXECUTOR_NAME: service.SPEC,
    files.EXECUTOR_NAME: files.SPEC,
    aws.EXECUTOR_NAME: aws.SPEC,
    containers.EXECUTOR_NAME: containers.SPEC,
    k8s.EXECUTOR_NAME: k8s.SPEC,
}
