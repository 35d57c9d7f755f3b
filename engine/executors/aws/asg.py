"""Auto Scaling groups: capacity changed within the group's own bounds, healthy
InService instances counted, and desired, min and max put back on rollback."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from pydantic import Field, model_validator

from engine.executors.aws.api import Aws
from engine.executors.aws.operations import OPS, Service, Within
from engine.executors.aws.targets import Ref
from engine.models import Snapshot
from engine.ports import Params, TargetRefused


class SetDesiredCapacityParams(Params):
    KIND: ClassVar[str] = "asg"
    delta: int | None = Field(default=None, ge=-1000, le=1000)
    to: int | None = Field(default=None, ge=0)
    honor_cooldown: bool = False

    @model_validator(mode="after")
    def _exactly_one(self) -> SetDesiredCapacityParams:
        if (self.delta is None) == (self.to is None):
            raise ValueError("give exactly one of delta and to")
        if self.delta == 0:
            raise ValueError("delta 0 changes nothing")
        return self


class AsgInServiceAtLeastParams(Within):
    KIND: ClassVar[str] = "asg"
    count: int = Field(ge=0)


class AsgInServiceAtDesiredParams(Within):
    KIND: ClassVar[str] = "asg"


# -- actions -----------------------------------------------------------------------


@OPS.actions("set_desired_capacity", SetDesiredCapacityParams)
async def _set_desired(
    aws: Aws, ref: Ref, params: SetDesiredCapacityParams, snapshot: Snapshot, deadline: float
) -> tuple[bool, str]:
    """Refuses, before changing anything, a capacity outside the group's own bounds."""
    group = await _group(aws, ref)
    current, low, high = group["DesiredCapacity"], group["MinSize"], group["MaxSize"]
    wanted = params.to if params.to is not None else current + (params.delta or 0)
    how = f"{current} {params.delta:+d} = {wanted}" if params.delta else str(wanted)
    if not low <= wanted <= high:
        return False, (
            f"refused: desired capacity of {ref} would be {how}, outside its min {low} "
            f"and max {high}; nothing was changed"
        )
    bounds = f"(min {low}, max {high})"
    if wanted == current:
        return True, f"{ref} already wants {current} instances {bounds}: nothing to change"
    await aws.call(
        ref,
        "autoscaling",
        "set_desired_capacity",
        AutoScalingGroupName=ref.name,
        DesiredCapacity=wanted,
        HonorCooldown=params.honor_cooldown,
    )
    return True, f"{ref}: desired capacity {current} -> {wanted} {bounds}"


# -- checks ------------------------------------------------------------------------


@OPS.checks("asg_in_service_at_least", AsgInServiceAtLeastParams)
async def _in_service_at_least(
    aws: Aws, ref: Ref, params: AsgInServiceAtLeastParams, deadline: float
) -> tuple[bool, str]:
    return await _in_service(aws, ref, params.count, deadline)


@OPS.checks("asg_in_service_at_desired", AsgInServiceAtDesiredParams)
async def _in_service_at_desired(
    aws: Aws, ref: Ref, params: AsgInServiceAtDesiredParams, deadline: float
) -> tuple[bool, str]:
    return await _in_service(aws, ref, None, deadline)


async def _in_service(aws: Aws, ref: Ref, count: int | None, deadline: float) -> tuple[bool, str]:
    """Healthy InService instances, at least `count` (None: the desired capacity)."""

    def enough(group: dict[str, Any]) -> bool:
        wanted = group["DesiredCapacity"] if count is None else count
        return _healthy_in_service(group) >= wanted

    group, waited = await aws.poll(lambda: _group(aws, ref), enough, deadline)
    found, desired = _healthy_in_service(group), group["DesiredCapacity"]
    wanted = f"desired {desired}" if count is None else f"{count}; desired {desired}"
    if enough(group):
        return True, f"{ref} has {found} healthy InService instances (>= {wanted})"
    return False, (
        f"{ref} has {found} healthy InService instances after {waited:.0f} s, fewer than {wanted}"
    )


# -- snapshot and restore ----------------------------------------------------------


def _describe(ref: Ref) -> str:
    return (
        f"the desired, min and max capacity of {ref} as AWS reports them just "
        "before each step; rollback puts all three back"
    )


async def _snapshot(
    aws: Aws, ref: Ref, incident_id: int, taken_at: datetime
) -> tuple[dict[str, Any], str]:
    state = _capacity(await _group(aws, ref))
    location = (
        f"aws asg {ref.name}: desired {state['desired']} (min {state['min']}, max {state['max']})"
    )
    return state, location


async def _restore(aws: Aws, ref: Ref, state: dict[str, Any], deadline: float) -> None:
    await aws.call(
        ref,
        "autoscaling",
        "update_auto_scaling_group",
        AutoScalingGroupName=ref.name,
        MinSize=state["min"],
        MaxSize=state["max"],
        DesiredCapacity=state["desired"],
    )
    now = _capacity(await _group(aws, ref))
    if now != {key: state[key] for key in now}:
        raise RuntimeError(f"{ref} was not restored: it reports {now}, wanted {state}")


SERVICE = Service(describe=_describe, snapshot=_snapshot, restore=_restore)


# -- reading -----------------------------------------------------------------------


async def _group(aws: Aws, ref: Ref) -> dict[str, Any]:
    reply = await aws.call(
        ref, "autoscaling", "describe_auto_scaling_groups", AutoScalingGroupNames=[ref.name]
    )
    groups = reply["AutoScalingGroups"]
    if not groups:
        raise TargetRefused(aws.missing(ref))
    return dict(groups[0])


def _capacity(group: dict[str, Any]) -> dict[str, int]:
    return {"desired": group["DesiredCapacity"], "min": group["MinSize"], "max": group["MaxSize"]}


def _healthy_in_service(group: dict[str, Any]) -> int:
    return sum(
        1
        for instance in group.get("Instances", [])
        if instance.get("LifecycleState") == "InService"
        and instance.get("HealthStatus") == "Healthy"
    )
