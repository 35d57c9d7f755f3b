"""EC2 instances: started, stopped and rebooted with the state AWS reports
verified, their status checks read, and started or stopped back on rollback."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from engine.executors.aws.api import Aws
from engine.executors.aws.operations import OPS, Service, Within, state_is
from engine.executors.aws.targets import Ref
from engine.models import Snapshot
from engine.ports import Params, TargetRefused

_InstanceState = Literal["pending", "running", "stopping", "stopped", "shutting-down", "terminated"]


class Ec2RebootParams(Params):
    KIND: ClassVar[str] = "ec2"


class Ec2StartParams(Params):
    KIND: ClassVar[str] = "ec2"


class Ec2StopParams(Params):
    KIND: ClassVar[str] = "ec2"


class Ec2StateIsParams(Within):
    KIND: ClassVar[str] = "ec2"
    state: _InstanceState


class Ec2StatusOkParams(Within):
    KIND: ClassVar[str] = "ec2"


# -- actions -----------------------------------------------------------------------


@OPS.actions("ec2_reboot", Ec2RebootParams)
async def _reboot(
    aws: Aws, ref: Ref, params: Ec2RebootParams, snapshot: Snapshot, deadline: float
) -> tuple[bool, str]:
    state = await _state(aws, ref)
    if state != "running":
        return False, f"refused: {ref} is {state}; a reboot needs it running"
    await aws.call(ref, "ec2", "reboot_instances", InstanceIds=[ref.name])
    state, waited = await aws.poll(lambda: _state(aws, ref), lambda s: s == "running", deadline)
    if state != "running":
        return False, f"{ref} was rebooted but is {state} after {waited:.0f} s, not running"
    return True, f"{ref} was rebooted and is running (checked after {waited:.1f} s)"


@OPS.actions("ec2_start", Ec2StartParams)
async def _start(
    aws: Aws, ref: Ref, params: Ec2StartParams, snapshot: Snapshot, deadline: float
) -> tuple[bool, str]:
    return await _power(aws, ref, "running", deadline)


@OPS.actions("ec2_stop", Ec2StopParams)
async def _stop(
    aws: Aws, ref: Ref, params: Ec2StopParams, snapshot: Snapshot, deadline: float
) -> tuple[bool, str]:
    return await _power(aws, ref, "stopped", deadline)


async def _power(
    aws: Aws, ref: Ref, wanted: Literal["running", "stopped"], deadline: float
) -> tuple[bool, str]:
    """Start or stop the instance and wait until AWS reports `wanted`."""
    before = await _state(aws, ref)
    if before == wanted:
        return True, f"{ref} is already {wanted}: nothing to do"
    start = wanted == "running"
    needed = "stopped" if start else "running"
    verb = "start" if start else "stop"
    if before != needed:
        return False, f"refused: {ref} is {before}; to {verb} it must be {needed}"
    await aws.call(ref, "ec2", f"{verb}_instances", InstanceIds=[ref.name])
    state, waited = await aws.poll(lambda: _state(aws, ref), lambda s: s == wanted, deadline)
    if state != wanted:
        return False, f"asked {ref} to {verb}; it is still {state} after {waited:.0f} s"
    return True, f"{ref} was {before} and is now {wanted} (verified after {waited:.1f} s)"


# -- checks ------------------------------------------------------------------------


@OPS.checks("ec2_state_is", Ec2StateIsParams)
async def _state_is(
    aws: Aws, ref: Ref, params: Ec2StateIsParams, deadline: float
) -> tuple[bool, str]:
    return await state_is(aws, ref, "state", lambda: _state(aws, ref), params.state, deadline)


@OPS.checks("ec2_status_ok", Ec2StatusOkParams)
async def _status_ok(
    aws: Aws, ref: Ref, params: Ec2StatusOkParams, deadline: float
) -> tuple[bool, str]:
    """Both EC2 status checks: the instance's own and the host system's."""

    async def read() -> tuple[str, str]:
        reply = await aws.call(
            ref, "ec2", "describe_instance_status", InstanceIds=[ref.name], IncludeAllInstances=True
        )
        statuses = reply["InstanceStatuses"]
        if not statuses:
            raise TargetRefused(aws.missing(ref))
        found = statuses[0]
        return found["InstanceStatus"]["Status"], found["SystemStatus"]["Status"]

    (instance, system), waited = await aws.poll(read, lambda s: s == ("ok", "ok"), deadline)
    shown = f"instance status {instance}, system status {system}"
    if (instance, system) == ("ok", "ok"):
        return True, f"{ref}: {shown}"
    return False, f"{ref}: {shown} after {waited:.0f} s, not both ok"


# -- snapshot and restore ----------------------------------------------------------


def _describe(ref: Ref) -> str:
    return (
        f"the state of {ref} (running or stopped) just before each step; rollback "
        "starts or stops it back to that state"
    )


async def _snapshot(
    aws: Aws, ref: Ref, incident_id: int, taken_at: datetime
) -> tuple[dict[str, Any], str]:
    state = await _state(aws, ref)
    return {"state": state}, f"aws ec2 {ref.name}: {state}"


async def _restore(aws: Aws, ref: Ref, state: dict[str, Any], deadline: float) -> None:
    wanted = state["state"]
    if wanted not in ("running", "stopped"):
        raise RuntimeError(
            f"cannot bring {ref} back to {wanted!r}: GRACE only starts and stops instances"
        )
    ok, detail = await _power(aws, ref, wanted, deadline)
    if not ok:
        raise RuntimeError(f"cannot bring {ref} back to {wanted}: {detail}")


SERVICE = Service(describe=_describe, snapshot=_snapshot, restore=_restore)


# -- reading -----------------------------------------------------------------------


async def _state(aws: Aws, ref: Ref) -> str:
    reply = await aws.call(ref, "ec2", "describe_instances", InstanceIds=[ref.name])
    instances = [i for r in reply["Reservations"] for i in r["Instances"]]
    if not instances:
        raise TargetRefused(aws.missing(ref))
    return str(instances[0]["State"]["Name"])
