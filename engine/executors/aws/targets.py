"""The aws executor's targets: `kind:name` strings built from a CloudWatch alarm's
dimensions (`asg:web-prod`, `ec2:i-0abc…`, `rds:orders-db`), untrusted until
`resolve` has checked their shape and matched them against the allowlist,
offline. Whether the thing exists is only known at the first call, which
refuses it with a clear message."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from engine.executors.common import name_matches, not_allowlisted, own, refused
from engine.models import Target

EXECUTOR_NAME = "aws"

_NOUNS = {"asg": "Auto Scaling group", "ec2": "EC2 instance", "rds": "RDS DB instance"}
_SHAPES = {
    "asg": re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}"),
    "ec2": re.compile(r"i-[0-9a-f]{8,17}"),
    "rds": re.compile(r"(?=.{1,63}\Z)[a-z](?:-?[a-z0-9])*"),
}
_SHAPE_HELP = {
    "asg": "letters, digits, '.', '_' and '-', at most 255",
    "ec2": "'i-' and 8 to 17 lowercase hex digits",
    "rds": "a lowercase letter, then lowercase letters, digits and single hyphens, at most 63",
}
# An alert's value is shown in the refusal, but not all of a huge one.
_SHOWN_CHARS = 120


@dataclass(frozen=True)
class Ref:
    """A resolved target split into its kind and AWS name."""

    kind: str
    name: str

    @property
    def noun(self) -> str:
        return _NOUNS[self.kind]

    def __str__(self) -> str:
        return f"{self.noun} {self.name}"


def resolve(value: str, allowlist: Sequence[str]) -> Target:
    """Accept `kind:name` of a known kind, a well-formed name and an allowlist match.

    Offline on purpose: the alert is untrusted, so nothing reaches AWS
    before the name has passed every check here.
    """
    shown = value if len(value) <= _SHOWN_CHARS else value[: _SHOWN_CHARS - 3] + "..."
    if not allowlist:
        raise refused(EXECUTOR_NAME, shown, "no aws targets are allowlisted")
    kind, sep, name = value.partition(":")
    if not sep or kind not in _SHAPES:
        raise refused(EXECUTOR_NAME, shown, "it must start with asg:, ec2: or rds:")
    if not _SHAPES[kind].fullmatch(name):
        raise refused(
            EXECUTOR_NAME, shown, f"not a valid {_NOUNS[kind]} name ({_SHAPE_HELP[kind]})"
        )
    if not any(name_matches(value, pattern) for pattern in allowlist):
        raise not_allowlisted(EXECUTOR_NAME, shown)
    return Target(executor=EXECUTOR_NAME, name=value)


def ref_of(target: Target) -> Ref:
    """The kind and name of a target `resolve` accepted."""
    own(EXECUTOR_NAME, target)
    kind, _, name = target.name.partition(":")
    if kind not in _SHAPES:
        raise ValueError(f"aws target {target.name!r} names no known kind (asg, ec2, rds)")
    return Ref(kind, name)
