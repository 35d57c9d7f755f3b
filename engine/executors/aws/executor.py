"""The aws executor: Auto Scaling capacity, EC2 power state, RDS reboots.

Each service module (asg, ec2, rds) declares its operations and its snapshots;
this one resolves targets, dispatches to them and turns AWS's refusals into
failed steps and checks.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

from engine.executors.aws import asg, ec2, rds
from engine.executors.aws.api import Aws, error_text
from engine.executors.aws.operations import OPS, require_kind
from engine.executors.aws.targets import EXECUTOR_NAME, ref_of, resolve
from engine.executors.common import own
from engine.executors.plugin import Context, ExecutorPlugin, register_executor
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
from engine.ports import Clock, Executor, TargetRefused

SPEC = OPS.spec
_SERVICES = {"asg": asg.SERVICE, "ec2": ec2.SERVICE, "rds": rds.SERVICE}


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
        self._aws = Aws(endpoint_url=endpoint_url, region=region, poll_s=poll_s)
        self._wait_s = wait_s

    def resolve_target(self, value: str, allowlist: Sequence[str]) -> Target:
        return resolve(value, allowlist)

    async def available(self) -> Availability:
        return await self._aws.available()

    # -- snapshot and restore ---------------------------------------------

    def describe_snapshot(self, target: Target) -> str:
        ref = ref_of(target)
        return _SERVICES[ref.kind].describe(ref)

    async def snapshot(self, target: Target, incident_id: int) -> Snapshot:
        """What rollback needs, in `state`; a target that does not exist is refused here."""
        ref = ref_of(target)
        taken_at = self._clock.now()
        state, location = await _SERVICES[ref.kind].snapshot(self._aws, ref, incident_id, taken_at)
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
        ref = ref_of(snapshot.target)
        deadline = time.monotonic() + self._wait_s
        await _SERVICES[ref.kind].restore(self._aws, ref, snapshot.state, deadline)

    # -- operations ------------------------------------------------------------

    async def run(self, step: PlannedStep, target: Target, snapshot: Snapshot) -> StepResult:
        ref = ref_of(target)
        handler, params = OPS.actions.resolve(step.action, step.params)
        require_kind(ref, "action", step.action, params)
        deadline = time.monotonic() + min(self._wait_s, step.timeout_s)
        started = time.perf_counter()
        try:
            ok, detail = await handler(self._aws, ref, params, snapshot, deadline)
        except TargetRefused as refusal:
            ok, detail = False, str(refusal)
        except ClientError as exc:
            ok, detail = False, f"{step.action} of {ref} failed: {error_text(exc)}"
        return StepResult(
            action=step.action, ok=ok, detail=detail, seconds=time.perf_counter() - started
        )

    async def check(self, check: PlannedCheck, target: Target) -> CheckResult:
        ref = ref_of(target)
        handler, params = OPS.checks.resolve(check.check, check.params)
        require_kind(ref, "check", check.check, params)
        deadline = time.monotonic() + params.within_s
        try:
            ok, detail = await handler(self._aws, ref, params, deadline)
        except TargetRefused as refusal:
            ok, detail = False, str(refusal)
        except ClientError as exc:
            ok, detail = False, f"{check.check} of {ref} failed: {error_text(exc)}"
        return CheckResult(check=check.check, ok=ok, detail=detail)

    async def measure(self, benchmark: PlannedBenchmark, target: Target) -> float:
        """None offered: an API call's latency says nothing of the group's or
        the database's own health."""
        own(EXECUTOR_NAME, target)
        raise ValueError(f"the aws executor has no benchmark {benchmark.benchmark!r}")


class AwsConfig(BaseModel):
    """The aws executor's settings; credentials only ever come from the boto3 chain."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    aws_region: str | None = Field(None, description="else the standard boto3 chain's")
    aws_endpoint_url: str | None = Field(None, description="another AWS endpoint (tests: moto)")


def _build(config: AwsConfig, context: Context) -> Executor:
    return AwsExecutor(
        context.clock, endpoint_url=config.aws_endpoint_url, region=config.aws_region
    )


PLUGIN = register_executor(
    ExecutorPlugin(
        name=EXECUTOR_NAME,
        operations=OPS,
        config=AwsConfig,
        factory=_build,
        summary="Auto Scaling capacity, EC2 start, stop and reboot, RDS reboot after a DB snapshot",
    )
)
