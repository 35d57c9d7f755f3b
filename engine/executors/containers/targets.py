"""What a docker target is: `container:NAME` or `compose:PROJECT/SERVICE` (a bare
name means a container), checked for its characters and against the allowlist
before any call is made, since it comes from an untrusted alert label."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from engine.executors.common import name_matches, not_allowlisted, own, refused
from engine.models import Target

EXECUTOR_NAME = "docker"
CONTAINER = "container"
COMPOSE = "compose"

# Docker's own rules for names (container names may also hold dots); a compose
# v2 project name is lower case.
_CONTAINER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_PROJECT = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_SERVICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


@dataclass(frozen=True)
class Ref:
    """A parsed target: one container, or one service of a compose project."""

    kind: str
    name: str
    project: str = ""

    @property
    def target_name(self) -> str:
        if self.kind == COMPOSE:
            return f"{COMPOSE}:{self.project}/{self.name}"
        return f"{CONTAINER}:{self.name}"

    @property
    def shown(self) -> str:
        if self.kind == COMPOSE:
            return f"compose service {self.project}/{self.name}"
        return f"docker container {self.name!r}"


def parse_target(value: str) -> Ref:
    """`container:NAME`, `compose:PROJECT/SERVICE` or a bare NAME (a container).

    Raises ValueError saying what is wrong with it."""
    kind, sep, rest = value.partition(":")
    if not sep:
        kind, rest = CONTAINER, value
    if kind == CONTAINER:
        if not _CONTAINER_NAME.fullmatch(rest):
            raise ValueError(
                f"{rest!r} is not a container name (letters, digits, '_', '.' and '-', "
                "starting with a letter or digit)"
            )
        return Ref(CONTAINER, rest)
    if kind == COMPOSE:
        project, slash, service = rest.partition("/")
        if not slash or not _PROJECT.fullmatch(project) or not _SERVICE.fullmatch(service):
            raise ValueError(
                f"{rest!r} is not PROJECT/SERVICE (a lower-case project name, a service name)"
            )
        return Ref(COMPOSE, service, project)
    raise ValueError(f"unknown kind {kind!r} (known: {CONTAINER}, {COMPOSE})")


def allowlisted(target_name: str, pattern: str) -> bool:
    """Whether an allowlist glob admits a canonical `kind:name` target name.

    A glob without a kind means containers. The kind must be equal, and the
    rest is matched part by part between `/`, so `*` never crosses a `:` or a
    `/`: `compose:shop/*` admits `compose:shop/web` but no other project.
    """
    return name_matches(target_name, pattern if ":" in pattern else f"{CONTAINER}:{pattern}")


def allowlisted_ref(value: str, allowlist: Sequence[str]) -> Ref:
    """A well-formed target some allowlist entry admits; refused otherwise."""
    if not allowlist:
        raise refused(EXECUTOR_NAME, value, "no docker targets are allowlisted")
    try:
        ref = parse_target(value)
    except ValueError as exc:
        raise refused(EXECUTOR_NAME, value, str(exc)) from None
    if not any(allowlisted(ref.target_name, pattern) for pattern in allowlist):
        raise not_allowlisted(EXECUTOR_NAME, value)
    return ref


def ref_of(target: Target) -> Ref:
    own(EXECUTOR_NAME, target)
    return parse_target(target.name)
