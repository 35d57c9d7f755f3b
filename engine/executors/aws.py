"""The aws executor: Auto Scaling capacity, EC2 power state, RDS reboots.

Targets are `kind:name` strings built from a CloudWatch alarm's dimensions
(`asg:web-prod`, `ec2:i-0abc…`, `rds:orders-db`): untrusted until
`resolve_target` has checked their shape and matched them against the
allowlist, offline. Whether the thing exists is only known at the first call,
which refuses it with a clear message.

Every boto3 call runs in `asyncio.to_thread`, with botocore's own retries off:
the engine's resilience layer retries what this module marks transient
(throttling, 5xx, connection trouble) and nothing else. Credentials and the
region come from the standard boto3 chain and are never logged or shown.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal, TypeVar

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.parsers import ResponseParserError
from pydantic import Field, model_validator

from engine.executors.common import lookup, name_matches, own, shorten, utc
from engine.models import (
    Availability,
    CheckResult,
    PlannedBenchmark,
    PlannedCheck,
    PlannedStep,
    Snapshot,
    StepResult,
    Target,
)
from engine.ports import Clock, ExecutorSpec, Params, TargetRefused, TransientError, WaitingParams

EXECUTOR_NAME = "aws"

NO_CREDENTIALS = "no AWS credentials found (environment, shared config, instance role)"
NO_REGION = "no AWS region set (AWS_REGION or config)"

# Retries are the resilience layer's: two layers of them would multiply.
_CLIENT_CONFIG = Config(
    retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=10, read_timeout=60
)
_BUSY_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestThrottled",
        "RequestThrottledException",
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        # Auto Scaling: another change or a cooldown in progress; it passes.
        "ResourceContention",
        "ScalingActivityInProgress",
    }
)
# Codes that mean the target itself does not exist (an ASG just lists none).
_MISSING_CODES = frozenset(
    {"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed", "DBInstanceNotFound"}
)

# DB statuses that do not turn into `available` by waiting.
_DB_STUCK = frozenset(
    {
        "stopped",
        "stopping",
        "failed",
        "deleting",
        "storage-full",
        "incompatible-parameters",
        "incompatible-network",
        "inaccessible-encryption-credentials",
    }
)
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
_InstanceState = Literal["pending", "running", "stopping", "stopped", "shutting-down", "terminated"]
T = TypeVar("T")


# -- parameters ----------------------------------------------------------------------


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


class Ec2RebootParams(Params):
    KIND: ClassVar[str] = "ec2"


class Ec2StartParams(Params):
    KIND: ClassVar[str] = "ec2"


class Ec2StopParams(Params):
    KIND: ClassVar[str] = "ec2"


class RdsRebootParams(Params):
    KIND: ClassVar[str] = "rds"
    force_failover: bool = False


class _Within(WaitingParams):
    KIND: ClassVar[str]
    within_s: float = Field(default=0, ge=0, le=3600, description="keep polling this long")


class AsgInServiceAtLeastParams(_Within):
    KIND: ClassVar[str] = "asg"
    count: int = Field(ge=0)


class AsgInServiceAtDesiredParams(_Within):
    KIND: ClassVar[str] = "asg"


class Ec2StateIsParams(_Within):
    KIND: ClassVar[str] = "ec2"
    state: _InstanceState


class Ec2StatusOkParams(_Within):
    KIND: ClassVar[str] = "ec2"


class RdsStatusIsParams(_Within):
    KIND: ClassVar[str] = "rds"
    status: str = Field(default="available", pattern=r"^[a-z][a-z-]{0,63}$")


SPEC = ExecutorSpec(
    actions={
        "set_desired_capacity": SetDesiredCapacityParams,
        "ec2_reboot": Ec2RebootParams,
        "ec2_start": Ec2StartParams,
        "ec2_stop": Ec2StopParams,
        "rds_reboot": RdsRebootParams,
    },
    checks={
        "asg_in_service_at_least": AsgInServiceAtLeastParams,
        "asg_in_service_at_desired": AsgInServiceAtDesiredParams,
        "ec2_state_is": Ec2StateIsParams,
        "ec2_status_ok": Ec2StatusOkParams,
        "rds_status_is": RdsStatusIsParams,
    },
)


@dataclass(frozen=True)
class _Ref:
    """A resolved target split into its kind and AWS name."""

    kind: str
    name: str

    def __str__(self) -> str:
        return f"{_NOUNS[self.kind]} {self.name}"


class AwsExecutor:
    """Scales Auto Scaling groups within their bounds, starts, stops and
    reboots EC2 instances, and reboots RDS instances after a manual DB snapshot."""

    name = EXECUTOR_NAME
    spec = SPEC

    def __init__(
        self,
        clock: Clock,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        poll_s: float = 2.0,
        wait_s: float = 600.0,
    ) -> None:
        """`endpoint_url` points every client elsewhere (a test server); `wait_s`
        bounds each wait for a state, polled every `poll_s`."""
        self._clock = clock
        self._endpoint_url = endpoint_url
        # botocore itself reads only AWS_DEFAULT_REGION; AWS_REGION is the other SDKs' name.
        self._session = boto3.session.Session(region_name=region or os.environ.get("AWS_REGION"))
        self._poll_s = poll_s
        self._wait_s = wait_s
        self._clients: dict[str, BaseClient] = {}
        self._clients_lock = threading.Lock()  # boto3 sessions may not make clients concurrently

    # -- targets -----------------------------------------------------------

    def resolve_target(self, value: str, allowlist: Sequence[str]) -> Target:
        """Accept `kind:name` of a known kind, a well-formed name and an allowlist match.

        Offline on purpose: the alert is untrusted, so nothing reaches AWS
        before the name has passed every check here.
        """
        shown = shorten(repr(value), 120)
        if not allowlist:
            raise TargetRefused(f"aws target {shown} refused: no aws targets are allowlisted")
        kind, sep, name = value.partition(":")
        if not sep or kind not in _SHAPES:
            raise TargetRefused(
                f"aws target {shown} refused: it must start with asg:, ec2: or rds:"
            )
        if not _SHAPES[kind].fullmatch(name):
            raise TargetRefused(
                f"aws target {shown} refused: not a valid {_NOUNS[kind]} name ({_SHAPE_HELP[kind]})"
            )
        if not any(name_matches(value, pattern) for pattern in allowlist):
            raise TargetRefused(f"aws target {shown} is not in the aws allowlist")
        return Target(executor=EXECUTOR_NAME, name=value)

    async def available(self) -> Availability:
        """Credentials and a region from the standard chain; no AWS API is called."""
        try:
            credentials = await asyncio.to_thread(self._session.get_credentials)
        except BotoCoreError as exc:
            return Availability(ok=False, reason=f"AWS credentials could not be loaded: {exc}")
        if credentials is None:
            return Availability(ok=False, reason=NO_CREDENTIALS)
        if not self._session.region_name:
            return Availability(ok=False, reason=NO_REGION)
        return Availability(ok=True)

    # -- snapshot and restore ---------------------------------------------

    def describe_snapshot(self, target: Target) -> str:
        ref = _ref(target)
        if ref.kind == "asg":
            return (
                f"the desired, min and max capacity of {ref} as AWS reports them just "
                "before each step; rollback puts all three back"
            )
        if ref.kind == "ec2":
            return (
                f"the state of {ref} (running or stopped) just before each step; rollback "
                "starts or stops it back to that state"
            )
        return (
            f"the status of {ref}; before a reboot a manual DB snapshot "
            "grace-<incident>-<instance>-<time> is taken and kept. A reboot cannot be "
            "undone: rollback only confirms the instance is available again"
        )

    async def snapshot(self, target: Target, incident_id: int) -> Snapshot:
        """What rollback needs, in `state`; a target that does not exist is refused here."""
        ref = _ref(target)
        taken_at = self._clock.now()
        state: dict[str, Any]
        if ref.kind == "asg":
            state = _capacity(await self._group(ref))
            location = (
                f"aws asg {ref.name}: desired {state['desired']} "
                f"(min {state['min']}, max {state['max']})"
            )
        elif ref.kind == "ec2":
            state = {"state": await self._instance_state(ref)}
            location = f"aws ec2 {ref.name}: {state['state']}"
        else:
            # Named now, so the incident's record says which DB snapshot a reboot takes.
            db_snapshot = _db_snapshot_id(incident_id, ref.name, taken_at)
            state = {"status": await self._db_status(ref), "db_snapshot": db_snapshot}
            location = (
                f"aws rds {ref.name}: {state['status']}; a reboot first takes DB snapshot "
                f"{db_snapshot}"
            )
        return Snapshot(
            incident_id=incident_id,
            target=target,
            location=location,
            size_bytes=0,
            taken_at=taken_at,
            state=state,
        )

    async def restore(self, snapshot: Snapshot) -> None:
        """Put the target back as the snapshot found it, or raise saying why not."""
        ref = _ref(snapshot.target)
        deadline = time.monotonic() + self._wait_s
        if ref.kind == "asg":
            await self._restore_group(ref, snapshot.state)
        elif ref.kind == "ec2":
            wanted = snapshot.state["state"]
            if wanted not in ("running", "stopped"):
                raise RuntimeError(
                    f"cannot bring {ref} back to {wanted!r}: GRACE only starts and stops instances"
                )
            ok, detail = await self._power(ref, wanted, deadline)
            if not ok:
                raise RuntimeError(f"cannot bring {ref} back to {wanted}: {detail}")
        else:
            status, waited = await self._poll(
                lambda: self._db_status(ref),
                lambda s: s == "available" or s in _DB_STUCK,
                deadline,
            )
            if status != "available":
                raise RuntimeError(
                    f"a reboot of {ref} cannot be undone, and it is {status} after "
                    f"{waited:.0f} s, not available"
                )

    async def _restore_group(self, ref: _Ref, state: dict[str, Any]) -> None:
        await self._aws(
            ref,
            "autoscaling",
            "update_auto_scaling_group",
            AutoScalingGroupName=ref.name,
            MinSize=state["min"],
            MaxSize=state["max"],
            DesiredCapacity=state["desired"],
        )
        now = _capacity(await self._group(ref))
        if now != {key: state[key] for key in now}:
            raise RuntimeError(f"{ref} was not restored: it reports {now}, wanted {state}")

    # -- actions -----------------------------------------------------------

    async def run(self, step: PlannedStep, target: Target, snapshot: Snapshot) -> StepResult:
        ref = _ref(target)
        model = lookup(EXECUTOR_NAME, self.spec.actions, "action", step.action)
        _require_kind(ref, "action", step.action, model)
        params = model.model_validate(step.params)
        deadline = time.monotonic() + min(self._wait_s, step.timeout_s)
        started = time.perf_counter()
        try:
            ok, detail = await self._act(ref, params, snapshot, deadline)
        except TargetRefused as refusal:
            ok, detail = False, str(refusal)
        except ClientError as exc:
            ok, detail = False, f"{step.action} of {ref} failed: {_error_text(exc)}"
        return StepResult(
            action=step.action, ok=ok, detail=detail, seconds=time.perf_counter() - started
        )

    async def _act(
        self, ref: _Ref, params: Any, snapshot: Snapshot, deadline: float
    ) -> tuple[bool, str]:
        if isinstance(params, SetDesiredCapacityParams):
            return await self._set_desired(ref, params)
        if isinstance(params, Ec2RebootParams):
            return await self._reboot_instance(ref, deadline)
        if isinstance(params, Ec2StartParams):
            return await self._power(ref, "running", deadline)
        if isinstance(params, Ec2StopParams):
            return await self._power(ref, "stopped", deadline)
        if isinstance(params, RdsRebootParams):
            return await self._reboot_db(ref, params.force_failover, snapshot, deadline)
        raise ValueError(f"aws action {type(params).__name__} has no implementation")

    async def _set_desired(self, ref: _Ref, params: SetDesiredCapacityParams) -> tuple[bool, str]:
        """Refuses, before changing anything, a capacity outside the group's own bounds."""
        group = await self._group(ref)
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
        await self._aws(
            ref,
            "autoscaling",
            "set_desired_capacity",
            AutoScalingGroupName=ref.name,
            DesiredCapacity=wanted,
            HonorCooldown=params.honor_cooldown,
        )
        return True, f"{ref}: desired capacity {current} -> {wanted} {bounds}"

    async def _reboot_instance(self, ref: _Ref, deadline: float) -> tuple[bool, str]:
        state = await self._instance_state(ref)
        if state != "running":
            return False, f"refused: {ref} is {state}; a reboot needs it running"
        await self._aws(ref, "ec2", "reboot_instances", InstanceIds=[ref.name])
        state, waited = await self._poll(
            lambda: self._instance_state(ref), lambda s: s == "running", deadline
        )
        if state != "running":
            return False, f"{ref} was rebooted but is {state} after {waited:.0f} s, not running"
        return True, f"{ref} was rebooted and is running (checked after {waited:.1f} s)"

    async def _power(
        self, ref: _Ref, wanted: Literal["running", "stopped"], deadline: float
    ) -> tuple[bool, str]:
        """Start or stop the instance and wait until AWS reports `wanted`."""
        before = await self._instance_state(ref)
        if before == wanted:
            return True, f"{ref} is already {wanted}: nothing to do"
        start = wanted == "running"
        needed = "stopped" if start else "running"
        verb = "start" if start else "stop"
        if before != needed:
            return False, f"refused: {ref} is {before}; to {verb} it must be {needed}"
        await self._aws(ref, "ec2", f"{verb}_instances", InstanceIds=[ref.name])
        state, waited = await self._poll(
            lambda: self._instance_state(ref), lambda s: s == wanted, deadline
        )
        if state != wanted:
            return False, f"asked {ref} to {verb}; it is still {state} after {waited:.0f} s"
        return True, f"{ref} was {before} and is now {wanted} (verified after {waited:.1f} s)"

    async def _reboot_db(
        self, ref: _Ref, force_failover: bool, snapshot: Snapshot, deadline: float
    ) -> tuple[bool, str]:
        """A manual DB snapshot first, available before the reboot starts: the one
        thing a person can go back to, since nothing undoes a reboot."""
        if snapshot.target != Target(executor=EXECUTOR_NAME, name=f"rds:{ref.name}"):
            return False, f"refused: the step's snapshot is of {snapshot.target.name}, not {ref}"
        db = await self._db(ref)
        status = db["DBInstanceStatus"]
        if status != "available":
            return False, f"refused: {ref} is {status}; a reboot needs it available"
        if force_failover and not db.get("MultiAZ"):
            return False, f"refused: {ref} is not Multi-AZ, so there is no standby to fail over to"
        snapshot_id = snapshot.state["db_snapshot"]
        made = await self._take_db_snapshot(ref, snapshot_id, snapshot.incident_id)
        snap_status, snap_waited = await self._poll(
            lambda: self._db_snapshot_status(ref, snapshot_id),
            lambda s: s in ("available", "failed"),
            deadline,
        )
        if snap_status != "available":
            return False, (
                f"DB snapshot {snapshot_id} of {ref.name} is {snap_status} after "
                f"{snap_waited:.0f} s, not available: {ref} was not rebooted"
            )
        await self._aws(
            ref,
            "rds",
            "reboot_db_instance",
            DBInstanceIdentifier=ref.name,
            ForceFailover=force_failover,
        )
        status, waited = await self._poll(
            lambda: self._db_status(ref), lambda s: s == "available", deadline
        )
        failover = " with failover" if force_failover else ""
        done = f"{made} DB snapshot {snapshot_id} (available), then rebooted {ref}{failover}"
        if status != "available":
            return False, f"{done}; it is {status} after {waited:.0f} s, not available"
        return True, f"{done}; it is available again (after {waited:.1f} s)"

    async def _take_db_snapshot(self, ref: _Ref, snapshot_id: str, incident_id: int) -> str:
        """'took', or 'kept' when a retried step finds the one its first try made."""
        try:
            await self._aws(
                ref,
                "rds",
                "create_db_snapshot",
                DBSnapshotIdentifier=snapshot_id,
                DBInstanceIdentifier=ref.name,
                Tags=[{"Key": "grace:incident", "Value": str(incident_id)}],
            )
        except ClientError as exc:
            if _code(exc) != "DBSnapshotAlreadyExists":
                raise
            existing = await self._db_snapshot(ref, snapshot_id)
            if existing["DBInstanceIdentifier"] != ref.name:
                raise
            return "kept"
        return "took"

    # -- checks ----------------------------------------------------------------

    async def check(self, check: PlannedCheck, target: Target) -> CheckResult:
        ref = _ref(target)
        model = lookup(EXECUTOR_NAME, self.spec.checks, "check", check.check)
        _require_kind(ref, "check", check.check, model)
        params = model.model_validate(check.params)
        assert isinstance(params, _Within)
        deadline = time.monotonic() + params.within_s
        try:
            ok, detail = await self._verify(ref, params, deadline)
        except TargetRefused as refusal:
            ok, detail = False, str(refusal)
        except ClientError as exc:
            ok, detail = False, f"{check.check} of {ref} failed: {_error_text(exc)}"
        return CheckResult(check=check.check, ok=ok, detail=detail)

    async def _verify(self, ref: _Ref, params: _Within, deadline: float) -> tuple[bool, str]:
        if isinstance(params, AsgInServiceAtLeastParams):
            return await self._in_service(ref, params.count, deadline)
        if isinstance(params, AsgInServiceAtDesiredParams):
            return await self._in_service(ref, None, deadline)
        if isinstance(params, Ec2StateIsParams):
            return await self._state_is(
                ref, "state", lambda: self._instance_state(ref), params.state, deadline
            )
        if isinstance(params, Ec2StatusOkParams):
            return await self._status_ok(ref, deadline)
        if isinstance(params, RdsStatusIsParams):
            return await self._state_is(
                ref, "status", lambda: self._db_status(ref), params.status, deadline
            )
        raise ValueError(f"aws check {type(params).__name__} has no implementation")

    async def _in_service(self, ref: _Ref, count: int | None, deadline: float) -> tuple[bool, str]:
        """Healthy InService instances, at least `count` (None: the desired capacity)."""

        def enough(group: dict[str, Any]) -> bool:
            wanted = group["DesiredCapacity"] if count is None else count
            return _healthy_in_service(group) >= wanted

        group, waited = await self._poll(lambda: self._group(ref), enough, deadline)
        found, desired = _healthy_in_service(group), group["DesiredCapacity"]
        wanted = f"desired {desired}" if count is None else f"{count}; desired {desired}"
        if enough(group):
            return True, f"{ref} has {found} healthy InService instances (>= {wanted})"
        return False, (
            f"{ref} has {found} healthy InService instances after {waited:.0f} s, "
            f"fewer than {wanted}"
        )

    async def _state_is(
        self,
        ref: _Ref,
        what: str,
        read: Callable[[], Awaitable[str]],
        wanted: str,
        deadline: float,
    ) -> tuple[bool, str]:
        found, waited = await self._poll(read, lambda s: s == wanted, deadline)
        if found == wanted:
            return True, f"{ref} is {found}"
        return False, f"{ref} is {found} after {waited:.0f} s, not {wanted} ({what})"

    async def _status_ok(self, ref: _Ref, deadline: float) -> tuple[bool, str]:
        """Both EC2 status checks: the instance's own and the host system's."""

        async def read() -> tuple[str, str]:
            reply = await self._aws(
                ref,
                "ec2",
                "describe_instance_status",
                InstanceIds=[ref.name],
                IncludeAllInstances=True,
            )
            statuses = reply["InstanceStatuses"]
            if not statuses:
                raise TargetRefused(self._missing(ref))
            found = statuses[0]
            return found["InstanceStatus"]["Status"], found["SystemStatus"]["Status"]

        (instance, system), waited = await self._poll(read, lambda s: s == ("ok", "ok"), deadline)
        shown = f"instance status {instance}, system status {system}"
        if (instance, system) == ("ok", "ok"):
            return True, f"{ref}: {shown}"
        return False, f"{ref}: {shown} after {waited:.0f} s, not both ok"

    # -- benchmarks --------------------------------------------------------

    async def measure(self, benchmark: PlannedBenchmark, target: Target) -> float:
        """None offered: an API call's latency says nothing of the group's or
        the database's own health."""
        own(EXECUTOR_NAME, target)
        raise ValueError(f"the aws executor has no benchmark {benchmark.benchmark!r}")

    # -- reading AWS -----------------------------------------------------------

    async def _group(self, ref: _Ref) -> dict[str, Any]:
        reply = await self._aws(
            ref, "autoscaling", "describe_auto_scaling_groups", AutoScalingGroupNames=[ref.name]
        )
        groups = reply["AutoScalingGroups"]
        if not groups:
            raise TargetRefused(self._missing(ref))
        return dict(groups[0])

    async def _instance_state(self, ref: _Ref) -> str:
        reply = await self._aws(ref, "ec2", "describe_instances", InstanceIds=[ref.name])
        instances = [i for r in reply["Reservations"] for i in r["Instances"]]
        if not instances:
            raise TargetRefused(self._missing(ref))
        return str(instances[0]["State"]["Name"])

    async def _db(self, ref: _Ref) -> dict[str, Any]:
        reply = await self._aws(ref, "rds", "describe_db_instances", DBInstanceIdentifier=ref.name)
        return dict(reply["DBInstances"][0])

    async def _db_status(self, ref: _Ref) -> str:
        return str((await self._db(ref))["DBInstanceStatus"])

    async def _db_snapshot(self, ref: _Ref, snapshot_id: str) -> dict[str, Any]:
        reply = await self._aws(
            ref, "rds", "describe_db_snapshots", DBSnapshotIdentifier=snapshot_id
        )
        return dict(reply["DBSnapshots"][0])

    async def _db_snapshot_status(self, ref: _Ref, snapshot_id: str) -> str:
        return str((await self._db_snapshot(ref, snapshot_id))["Status"])

    async def _poll(
        self, read: Callable[[], Awaitable[T]], done: Callable[[T], bool], deadline: float
    ) -> tuple[T, float]:
        """Read until `done` or the deadline; the last reading and the seconds waited.

        A throttled read is read again: the action being waited on must not be
        repeated (by the engine's retry) because a describe call was throttled.
        """
        started = time.monotonic()
        while True:
            late = time.monotonic() >= deadline
            try:
                value = await read()
            except TransientError:
                if late:
                    raise
            else:
                if late or done(value):
                    return value, time.monotonic() - started
            await asyncio.sleep(self._poll_s)

    def _missing(self, ref: _Ref) -> str:
        return f"no {_NOUNS[ref.kind]} named {ref.name!r} in {self._session.region_name}"

    # -- calling AWS -----------------------------------------------------------

    async def _aws(self, ref: _Ref, service: str, operation: str, **params: Any) -> dict[str, Any]:
        """One API call in a worker thread. Transient trouble raises TransientError,
        a target that does not exist TargetRefused; other errors propagate."""
        try:
            return await asyncio.to_thread(self._call_sync, service, operation, params)
        except (ClientError, BotoCoreError, ResponseParserError) as exc:
            if _transient(exc):
                raise TransientError(
                    f"{operation} for {ref} failed, worth retrying: {_error_text(exc)}"
                ) from exc
            if isinstance(exc, ClientError) and _code(exc) in _MISSING_CODES:
                raise TargetRefused(self._missing(ref)) from exc
            raise

    def _call_sync(self, service: str, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        reply: dict[str, Any] = getattr(self._client(service), operation)(**params)
        return reply

    def _client(self, service: str) -> BaseClient:
        with self._clients_lock:
            client = self._clients.get(service)
            if client is None:
                client = self._session.client(
                    service, endpoint_url=self._endpoint_url, config=_CLIENT_CONFIG
                )
                self._clients[service] = client
            return client


# -- helpers -------------------------------------------------------------------


def _ref(target: Target) -> _Ref:
    own(EXECUTOR_NAME, target)
    kind, _, name = target.name.partition(":")
    if kind not in _SHAPES:
        raise ValueError(f"aws target {target.name!r} names no known kind (asg, ec2, rds)")
    return _Ref(kind, name)


def _require_kind(ref: _Ref, what: str, name: str, model: type[Any]) -> None:
    """A playbook whose action does not fit its target's kind is a playbook bug."""
    if ref.kind != model.KIND:
        raise ValueError(f"aws {what} {name!r} acts on {model.KIND} targets, not on {ref}")


def _db_snapshot_id(incident_id: int, db: str, at: datetime) -> str:
    """A valid DB snapshot identifier (letters, digits, single hyphens) that
    says who took it, for which incident, of what and when."""
    return f"grace-{incident_id}-{db}-{utc(at):%Y%m%d-%H%M%S}"


def _capacity(group: dict[str, Any]) -> dict[str, int]:
    return {"desired": group["DesiredCapacity"], "min": group["MinSize"], "max": group["MaxSize"]}


def _healthy_in_service(group: dict[str, Any]) -> int:
    return sum(
        1
        for instance in group.get("Instances", [])
        if instance.get("LifecycleState") == "InService"
        and instance.get("HealthStatus") == "Healthy"
    )


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _transient(exc: ClientError | BotoCoreError | ResponseParserError) -> bool:
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return _code(exc) in _BUSY_CODES or status >= 500
    # ResponseParserError: a proxy's or load balancer's error page instead of AWS's XML.
    return isinstance(exc, BotoConnectionError | HTTPClientError | ResponseParserError)


def _error_text(exc: ClientError | BotoCoreError | ResponseParserError) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
        return f"{error.get('Code', '?')} (HTTP {status}): {error.get('Message', '')}".rstrip(": ")
    return shorten(str(exc), 200)  # a parser error quotes the whole page it could not read
