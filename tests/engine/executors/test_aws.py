"""The aws executor against a real moto server on loopback (real HTTP, real boto3),
with a real relay server in front of it where AWS's throttling and errors are
needed: no mocks, so a broken operation fails here."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from engine.catalog import Catalog
from engine.executors.aws import NO_CREDENTIALS, NO_REGION, AwsExecutor
from engine.intake.generic import parse_generic
from engine.intake.slack import parse_slack_message
from engine.models import (
    Alert,
    CheckResult,
    Plan,
    PlannedBenchmark,
    PlannedCheck,
    PlannedStep,
    Snapshot,
    StepResult,
    Target,
)
from engine.planning import make_plan
from engine.ports import Executor, TargetRefused, TransientError
from tests.engine.executors.conftest import FixedClock, builtin_catalog, step_snapshot
from tests.engine.executors.moto_server import (
    REGION,
    Relay,
    World,
    closed_port_url,
    ec2_error,
    moto_url_fixture,  # noqa: F401
    query_error,
    reset,
)

ALLOWLIST = ["asg:web-*", "ec2:i-*", "rds:orders-*"]
POLL_S = 0.02
WAIT_S = 5.0
MISSING_ID = "i-0123456789abcdef0"
# What a load balancer or proxy in front of an endpoint answers instead of AWS's XML.
BAD_GATEWAY = b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n</html>\r\n"
UNAVAILABLE_PAGE = b"<!doctype html>\n<title>503 Service Unavailable</title>\n<p>Try again later.\n"


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Test credentials in the environment and nothing else of the machine's:
    no profile, no config file, and never the instance metadata address."""
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_REGION",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_ENDPOINT_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture
def world(moto_url: str) -> World:
    reset(moto_url)
    return World(moto_url)


def make_executor(clock: FixedClock, url: str) -> AwsExecutor:
    return AwsExecutor(clock, endpoint_url=url, poll_s=POLL_S, wait_s=WAIT_S)


@pytest.fixture
def executor(clock: FixedClock, world: World) -> AwsExecutor:
    return make_executor(clock, world.url)


@pytest.fixture
async def relay(world: World) -> AsyncIterator[Relay]:
    async with Relay(world.url) as server:
        yield server


@pytest.fixture
def relayed(clock: FixedClock, relay: Relay) -> AwsExecutor:
    """An executor whose every call goes through the relay."""
    return make_executor(clock, relay.url)


def asg(name: str) -> Target:
    return Target(executor="aws", name=f"asg:{name}")


def ec2(instance_id: str) -> Target:
    return Target(executor="aws", name=f"ec2:{instance_id}")


def rds(name: str) -> Target:
    return Target(executor="aws", name=f"rds:{name}")


def scale(**params: Any) -> PlannedStep:
    return PlannedStep(action="set_desired_capacity", params=params, timeout_s=60)


def step(action: str, **params: Any) -> PlannedStep:
    return PlannedStep(action=action, params=params, timeout_s=60)


def check(name: str, **params: Any) -> PlannedCheck:
    return PlannedCheck(check=name, params=params)


async def act(executor: AwsExecutor, target: Target, planned: PlannedStep) -> StepResult:
    """As the engine does it: a snapshot just before the step, then the step."""
    snapshot = await executor.snapshot(target, incident_id=7)
    return await executor.run(planned, target, snapshot)


def test_satisfies_the_executor_port(executor: AwsExecutor) -> None:
    port: Executor = executor
    assert port.name == "aws"
    assert set(port.spec.actions) == {
        "set_desired_capacity",
        "ec2_reboot",
        "ec2_start",
        "ec2_stop",
        "rds_reboot",
    }
    assert set(port.spec.checks) == {
        "asg_in_service_at_least",
        "asg_in_service_at_desired",
        "ec2_state_is",
        "ec2_status_ok",
        "rds_status_is",
    }
    assert dict(port.spec.benchmarks) == {}


# -- targets ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["asg:web-prod", "ec2:i-0123456789abcdef0", "ec2:i-1a2b3c4d", "rds:orders-db"]
)
def test_an_allowlisted_target_resolves_offline(value: str) -> None:
    # No endpoint at all: resolving may not call AWS.
    executor = AwsExecutor(FixedClock(), endpoint_url=closed_port_url())
    assert executor.resolve_target(value, ALLOWLIST) == Target(executor="aws", name=value)


@pytest.mark.parametrize(
    ("value", "allowlist", "why"),
    [
        ("asg:db-prod", ALLOWLIST, "'asg:db-prod' is not in the aws allowlist"),
        ("rds:billing-db", ALLOWLIST, "'rds:billing-db' is not in the aws allowlist"),
        ("web-prod", ALLOWLIST, "refused: it must start with asg:, ec2: or rds:"),
        ("lambda:web-fn", ["lambda:*"], "refused: it must start with asg:, ec2: or rds:"),
        ("asg:web prod", ALLOWLIST, "not a valid Auto Scaling group name"),
        ("asg:web-prod/../db", ALLOWLIST, "not a valid Auto Scaling group name"),
        ("asg:web-prod:x", ["asg:*"], "not a valid Auto Scaling group name"),
        ("ec2:i-XYZ", ALLOWLIST, "not a valid EC2 instance name ('i-' and 8 to 17"),
        ("ec2:i-0123456789abcdef01", ALLOWLIST, "not a valid EC2 instance name"),
        ("rds:orders--db", ALLOWLIST, "not a valid RDS DB instance name"),
        ("rds:orders-db-", ALLOWLIST, "not a valid RDS DB instance name"),
        ("rds:Orders-DB", ["rds:*"], "not a valid RDS DB instance name"),
        ("rds:orders-" + "x" * 60, ALLOWLIST, "not a valid RDS DB instance name"),
        ("asg:web-prod", [], "refused: no aws targets are allowlisted"),
        # `*` crosses neither `:` nor `/`: a bare `*` is not every kind's every name.
        ("asg:web-prod", ["*", "web-*"], "'asg:web-prod' is not in the aws allowlist"),
    ],
)
def test_a_target_is_refused_before_any_call(value: str, allowlist: list[str], why: str) -> None:
    executor = AwsExecutor(FixedClock(), endpoint_url=closed_port_url())
    with pytest.raises(TargetRefused) as refused:
        executor.resolve_target(value, allowlist)
    assert why in str(refused.value)


# -- availability ----------------------------------------------------------------------


async def test_available_with_credentials_and_a_region(clock: FixedClock) -> None:
    assert (await AwsExecutor(clock).available()).ok


async def test_not_available_without_credentials(
    clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    availability = await AwsExecutor(clock).available()
    assert not availability.ok
    assert availability.reason == NO_CREDENTIALS


async def test_credentials_from_the_shared_file_count(
    clock: FixedClock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    credentials = tmp_path / "credentials"
    credentials.write_text("[default]\naws_access_key_id = AKIDTEST\naws_secret_access_key = s\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    assert (await AwsExecutor(clock).available()).ok


async def test_not_available_without_a_region(
    clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    availability = await AwsExecutor(clock).available()
    assert not availability.ok
    assert availability.reason == NO_REGION


@pytest.mark.parametrize("source", ["AWS_REGION", "argument"])
async def test_the_region_comes_from_aws_region_or_the_argument(
    clock: FixedClock, world: World, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    world.group("web-prod", min_size=1, max_size=4, desired=2)  # in us-east-1
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    if source == "AWS_REGION":
        monkeypatch.setenv("AWS_REGION", "eu-west-1")
    region = "eu-west-1" if source == "argument" else None
    executor = AwsExecutor(clock, endpoint_url=world.url, region=region, poll_s=POLL_S)
    assert (await executor.available()).ok
    with pytest.raises(TargetRefused, match="no Auto Scaling group named 'web-prod' in eu-west-1"):
        await executor.snapshot(asg("web-prod"), incident_id=7)


# -- Auto Scaling groups ---------------------------------------------------------------


async def test_a_group_snapshot_records_desired_min_and_max(
    executor: AwsExecutor, world: World, clock: FixedClock
) -> None:
    world.group("web-prod", min_size=1, max_size=4, desired=2)

    snapshot = await executor.snapshot(asg("web-prod"), incident_id=7)

    assert snapshot.state == {"desired": 2, "min": 1, "max": 4}
    assert snapshot.location == "aws asg web-prod: desired 2 (min 1, max 4)"
    assert (snapshot.incident_id, snapshot.target, snapshot.taken_at) == (
        7,
        asg("web-prod"),
        clock.now(),
    )
    assert "rollback puts all three back" in executor.describe_snapshot(asg("web-prod"))


async def test_scaling_out_within_bounds_then_rollback_restores_desired_min_and_max(
    executor: AwsExecutor, world: World
) -> None:
    world.group("web-prod", min_size=1, max_size=4, desired=2)
    snapshot = await executor.snapshot(asg("web-prod"), incident_id=7)

    result = await executor.run(scale(delta=1), asg("web-prod"), snapshot)

    assert result.ok, result.detail
    assert result.detail == "Auto Scaling group web-prod: desired capacity 2 -> 3 (min 1, max 4)"
    assert world.capacity("web-prod") == {"desired": 3, "min": 1, "max": 4}
    assert len(world.group_instances("web-prod")) == 3
    # Someone also widened the bounds meanwhile: rollback puts all three back.
    world.client("autoscaling").update_auto_scaling_group(
        AutoScalingGroupName="web-prod", MinSize=3, MaxSize=6
    )

    await executor.restore(snapshot)

    assert world.capacity("web-prod") == {"desired": 2, "min": 1, "max": 4}


async def test_scaling_to_an_absolute_capacity(executor: AwsExecutor, world: World) -> None:
    world.group("web-prod", min_size=1, max_size=4, desired=2)

    result = await act(executor, asg("web-prod"), scale(to=4))

    assert result.ok, result.detail
    assert world.capacity("web-prod") == {"desired": 4, "min": 1, "max": 4}


async def test_the_capacity_it_already_has_changes_nothing(
    executor: AwsExecutor, world: World
) -> None:
    world.group("web-prod", min_size=1, max_size=4, desired=2)

    result = await act(executor, asg("web-prod"), scale(to=2))

    assert result.ok
    assert "already wants 2 instances (min 1, max 4): nothing to change" in result.detail


@pytest.mark.parametrize(
    ("params", "why"),
    [
        ({"delta": 1}, "would be 4 +1 = 5, outside its min 1 and max 4"),
        ({"delta": -4}, "would be 4 -4 = 0, outside its min 1 and max 4"),
        ({"to": 9}, "would be 9, outside its min 1 and max 4"),
    ],
)
async def test_a_capacity_outside_min_max_is_refused_before_any_change(
    relayed: AwsExecutor, relay: Relay, world: World, params: dict[str, int], why: str
) -> None:
    world.group("web-prod", min_size=1, max_size=4, desired=4)

    result = await act(relayed, asg("web-prod"), scale(**params))

    assert not result.ok
    assert result.detail == f"refused: desired capacity of Auto Scaling group web-prod {why}; " + (
        "nothing was changed"
    )
    assert world.capacity("web-prod") == {"desired": 4, "min": 1, "max": 4}
    assert relay.count("SetDesiredCapacity") == 0  # moto itself would have allowed it


async def test_a_group_that_does_not_exist_is_refused_at_the_first_call(
    executor: AwsExecutor, world: World
) -> None:
    target = executor.resolve_target("asg:web-ghost", ALLOWLIST)  # allowlisted, offline
    why = "no Auto Scaling group named 'web-ghost' in us-east-1"

    with pytest.raises(TargetRefused, match=why):
        await executor.snapshot(target, incident_id=7)
    result = await executor.run(scale(delta=1), target, step_snapshot(target))
    checked = await executor.check(check("asg_in_service_at_desired"), target)

    assert (result.ok, result.detail) == (False, why)
    assert (checked.ok, checked.detail) == (False, why)
    assert world.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"] == []


async def test_aws_refusing_a_change_is_a_failed_step_not_a_retry(
    relayed: AwsExecutor, relay: Relay, world: World
) -> None:
    # The group's max was lowered between our read and our change: AWS says no.
    world.group("web-prod", min_size=1, max_size=4, desired=2)
    message = "New SetDesiredCapacity value 3 is above max value 2 for the AutoScalingGroup."
    relay.fail("SetDesiredCapacity", 400, query_error("ValidationError", message))

    result = await act(relayed, asg("web-prod"), scale(delta=1))

    assert not result.ok
    assert result.detail == (
        "set_desired_capacity of Auto Scaling group web-prod failed: "
        f"ValidationError (HTTP 400): {message}"
    )
    assert world.capacity("web-prod")["desired"] == 2


async def test_in_service_checks_count_healthy_in_service_instances(
    executor: AwsExecutor, world: World
) -> None:
    world.group("web-prod", min_size=1, max_size=4, desired=3)
    sick = world.group_instances("web-prod")[0]["InstanceId"]
    world.client("autoscaling").set_instance_health(InstanceId=sick, HealthStatus="Unhealthy")
    target = asg("web-prod")

    two = await executor.check(check("asg_in_service_at_least", count=2), target)
    three = await executor.check(check("asg_in_service_at_least", count=3), target)
    desired = await executor.check(check("asg_in_service_at_desired", within_s=0.1), target)

    assert two == CheckResult(
        check="asg_in_service_at_least",
        ok=True,
        detail="Auto Scaling group web-prod has 2 healthy InService instances (>= 2; desired 3)",
    )
    assert not three.ok
    assert three.detail == (
        "Auto Scaling group web-prod has 2 healthy InService instances after 0 s, "
        "fewer than 3; desired 3"
    )
    assert not desired.ok
    assert "has 2 healthy InService instances after 0 s, fewer than desired 3" in desired.detail


async def test_an_in_service_check_polls_until_the_group_catches_up(
    relayed: AwsExecutor, relay: Relay, world: World
) -> None:
    world.group("web-prod", min_size=1, max_size=4, desired=2)
    waiting = asyncio.create_task(
        relayed.check(check("asg_in_service_at_least", count=3, within_s=10), asg("web-prod"))
    )
    await relay.seen("DescribeAutoScalingGroups")  # it has looked once and found 2

    world.client("autoscaling").set_desired_capacity(
        AutoScalingGroupName="web-prod", DesiredCapacity=3
    )
    result = await waiting

    assert result.ok, result.detail
    assert result.detail.startswith("Auto Scaling group web-prod has 3 healthy InService")
    assert relay.count("DescribeAutoScalingGroups") >= 2


# -- transient and permanent failures --------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "content_type", "shown"),
    [
        (400, query_error("Throttling", "Rate exceeded"), "text/xml", "Throttling (HTTP 400)"),
        (
            400,
            query_error("ScalingActivityInProgress", "Scaling activity is in progress."),
            "text/xml",
            "ScalingActivityInProgress (HTTP 400)",
        ),
        (
            500,
            query_error("InternalFailure", "We encountered an internal error."),
            "text/xml",
            "InternalFailure (HTTP 500)",
        ),
        (
            503,
            query_error("ServiceUnavailable", "Please reduce your request rate."),
            "text/xml",
            "ServiceUnavailable (HTTP 503)",
        ),
        (502, BAD_GATEWAY, "text/html", "502 (HTTP 502): Bad Gateway"),
        (503, UNAVAILABLE_PAGE, "text/html", "Unable to parse response"),
    ],
)
async def test_throttling_and_server_errors_are_transient_and_change_nothing(
    relayed: AwsExecutor,
    relay: Relay,
    world: World,
    status: int,
    body: bytes,
    content_type: str,
    shown: str,
) -> None:
    world.group("web-prod", min_size=1, max_size=4, desired=2)
    snapshot = await relayed.snapshot(asg("web-prod"), incident_id=7)
    relay.fail("SetDesiredCapacity", status, body, content_type=content_type)

    with pytest.raises(TransientError) as raised:
        await relayed.run(scale(delta=1), asg("web-prod"), snapshot)

    assert "set_desired_capacity for Auto Scaling group web-prod failed, worth retrying" in str(
        raised.value
    )
    assert shown in str(raised.value)
    assert world.capacity("web-prod")["desired"] == 2
    # The engine's retry then goes through: the failure was only passing.
    retried = await relayed.run(scale(delta=1), asg("web-prod"), snapshot)
    assert retried.ok, retried.detail
    assert world.capacity("web-prod")["desired"] == 3
    assert relay.count("SetDesiredCapacity") == 2  # botocore did not retry on its own


@pytest.mark.parametrize("code", ["RequestLimitExceeded", "Throttling", "TooManyRequestsException"])
async def test_a_throttled_ec2_call_is_transient(
    relayed: AwsExecutor, relay: Relay, world: World, code: str
) -> None:
    instance = world.instance()
    relay.fail("DescribeInstances", 503, ec2_error(code, "Request limit exceeded."))

    with pytest.raises(TransientError, match=f"{code} \\(HTTP 503\\)"):
        await relayed.snapshot(ec2(instance), incident_id=7)


async def test_a_refused_connection_is_transient(clock: FixedClock) -> None:
    executor = make_executor(clock, closed_port_url())

    with pytest.raises(TransientError) as raised:
        await executor.snapshot(asg("web-prod"), incident_id=7)

    assert "describe_auto_scaling_groups for Auto Scaling group web-prod failed, worth" in str(
        raised.value
    )
    assert "Could not connect to the endpoint URL" in str(raised.value)


async def test_bad_steps_are_errors_not_refusals(executor: AwsExecutor, world: World) -> None:
    world.group("web-prod", min_size=1, max_size=4, desired=2)
    snapshot = await executor.snapshot(asg("web-prod"), incident_id=7)

    with pytest.raises(ValueError, match="acts on ec2 targets, not on Auto Scaling group web-prod"):
        await executor.run(step("ec2_reboot"), asg("web-prod"), snapshot)
    with pytest.raises(ValueError, match="unknown aws action 'terminate'"):
        await executor.run(step("terminate"), asg("web-prod"), snapshot)
    with pytest.raises(ValidationError, match="give exactly one of delta and to"):
        await executor.run(scale(delta=1, to=3), asg("web-prod"), snapshot)
    with pytest.raises(ValueError, match="belongs to 'sqlite', not aws"):
        await executor.snapshot(Target(executor="sqlite", name="/srv/app.db"), incident_id=7)
    with pytest.raises(ValueError, match="has no benchmark 'describe_latency'"):
        await executor.measure(
            PlannedBenchmark(benchmark="describe_latency", tolerance=0.5), asg("web-prod")
        )
    assert world.capacity("web-prod")["desired"] == 2


# -- EC2 instances ----------------------------------------------------------------------


async def test_an_instance_snapshot_records_its_state(executor: AwsExecutor, world: World) -> None:
    instance = world.instance()

    snapshot = await executor.snapshot(ec2(instance), incident_id=7)

    assert snapshot.state == {"state": "running"}
    assert snapshot.location == f"aws ec2 {instance}: running"


async def test_stop_then_start_with_the_state_verified(executor: AwsExecutor, world: World) -> None:
    instance = world.instance()
    target = ec2(instance)

    stopped = await act(executor, target, step("ec2_stop"))
    after_stop = world.instance_state(instance)
    is_stopped = await executor.check(check("ec2_state_is", state="stopped"), target)
    started = await act(executor, target, step("ec2_start"))

    assert stopped.ok, stopped.detail
    assert stopped.detail.startswith(f"EC2 instance {instance} was running and is now stopped")
    assert after_stop == "stopped"
    assert is_stopped == CheckResult(
        check="ec2_state_is", ok=True, detail=f"EC2 instance {instance} is stopped"
    )
    assert started.ok, started.detail
    assert started.detail.startswith(f"EC2 instance {instance} was stopped and is now running")
    assert world.instance_state(instance) == "running"


@pytest.mark.parametrize(("action", "state"), [("ec2_start", "running"), ("ec2_stop", "stopped")])
async def test_an_instance_already_in_the_wanted_state_is_left_alone(
    relayed: AwsExecutor, relay: Relay, world: World, action: str, state: str
) -> None:
    instance = world.instance()
    if state == "stopped":
        world.stop(instance)

    result = await act(relayed, ec2(instance), step(action))

    assert result.ok
    assert result.detail == f"EC2 instance {instance} is already {state}: nothing to do"
    assert relay.count("StartInstances") + relay.count("StopInstances") == 0


async def test_a_stop_rolls_back_to_running(executor: AwsExecutor, world: World) -> None:
    instance = world.instance()
    snapshot = await executor.snapshot(ec2(instance), incident_id=7)
    assert (await executor.run(step("ec2_stop"), ec2(instance), snapshot)).ok

    await executor.restore(snapshot)

    assert world.instance_state(instance) == "running"


async def test_restoring_an_unchanged_instance_does_nothing(
    relayed: AwsExecutor, relay: Relay, world: World
) -> None:
    instance = world.instance()
    snapshot = await relayed.snapshot(ec2(instance), incident_id=7)

    await relayed.restore(snapshot)

    assert relay.count("StartInstances") + relay.count("StopInstances") == 0
    assert world.instance_state(instance) == "running"


async def test_reboot_of_a_running_instance(
    relayed: AwsExecutor, relay: Relay, world: World
) -> None:
    instance = world.instance()

    result = await act(relayed, ec2(instance), step("ec2_reboot"))
    status = await relayed.check(check("ec2_status_ok", within_s=1), ec2(instance))

    assert result.ok, result.detail
    assert result.detail.startswith(f"EC2 instance {instance} was rebooted and is running")
    assert relay.count("RebootInstances") == 1
    assert status == CheckResult(
        check="ec2_status_ok",
        ok=True,
        detail=f"EC2 instance {instance}: instance status ok, system status ok",
    )


async def test_a_stopped_instance_is_not_rebooted(
    relayed: AwsExecutor, relay: Relay, world: World
) -> None:
    instance = world.instance()
    world.stop(instance)

    result = await act(relayed, ec2(instance), step("ec2_reboot"))
    status = await relayed.check(check("ec2_status_ok", within_s=0.1), ec2(instance))

    assert not result.ok
    assert (
        result.detail == f"refused: EC2 instance {instance} is stopped; a reboot needs it running"
    )
    assert relay.count("RebootInstances") == 0
    assert world.instance_state(instance) == "stopped"  # moto would have started it
    assert not status.ok
    assert status.detail == (
        f"EC2 instance {instance}: instance status not-applicable, system status "
        "not-applicable after 0 s, not both ok"
    )


async def test_a_throttled_read_while_waiting_does_not_repeat_the_stop(
    relayed: AwsExecutor, relay: Relay, world: World
) -> None:
    instance = world.instance()
    snapshot = await relayed.snapshot(ec2(instance), incident_id=7)
    # The read before the stop goes through; the first read after it is throttled.
    relay.fail("DescribeInstances", 503, ec2_error("RequestLimitExceeded", "slow down"), skip=1)

    result = await relayed.run(step("ec2_stop"), ec2(instance), snapshot)

    assert result.ok, result.detail
    assert relay.count("StopInstances") == 1
    # snapshot, the read before the stop, the throttled read, the read that saw it stopped
    assert relay.count("DescribeInstances") == 4
    assert world.instance_state(instance) == "stopped"


async def test_an_instance_that_does_not_exist_is_refused(
    executor: AwsExecutor, world: World
) -> None:
    world.instance()
    target = executor.resolve_target(f"ec2:{MISSING_ID}", ALLOWLIST)
    why = f"no EC2 instance named '{MISSING_ID}' in us-east-1"

    with pytest.raises(TargetRefused, match=why):
        await executor.snapshot(target, incident_id=7)
    result = await executor.run(step("ec2_start"), target, step_snapshot(target))
    checked = await executor.check(check("ec2_status_ok"), target)

    assert (result.ok, result.detail) == (False, why)
    assert (checked.ok, checked.detail) == (False, why)


# -- RDS instances ----------------------------------------------------------------------


async def test_a_db_snapshot_names_the_db_snapshot_a_reboot_takes(
    executor: AwsExecutor, world: World
) -> None:
    world.database("orders-db")

    snapshot = await executor.snapshot(rds("orders-db"), incident_id=7)

    name = "grace-7-orders-db-20261124-030000"
    assert snapshot.state == {"status": "available", "db_snapshot": name}
    assert (
        snapshot.location
        == f"aws rds orders-db: available; a reboot first takes DB snapshot {name}"
    )
    assert "A reboot cannot be undone" in executor.describe_snapshot(rds("orders-db"))


async def test_rds_reboot_takes_an_available_db_snapshot_first(
    relayed: AwsExecutor, relay: Relay, world: World
) -> None:
    world.database("orders-db")
    snapshot = await relayed.snapshot(rds("orders-db"), incident_id=7)
    relay.actions.clear()

    result = await relayed.run(step("rds_reboot"), rds("orders-db"), snapshot)
    status = await relayed.check(check("rds_status_is", status="available"), rds("orders-db"))

    name = snapshot.state["db_snapshot"]
    assert result.ok, result.detail
    assert result.detail.startswith(
        f"took DB snapshot {name} (available), then rebooted RDS DB instance orders-db; "
        "it is available again"
    )
    # In this order: snapshot, see it available, only then reboot.
    calls = [
        a
        for a in relay.actions
        if a in ("CreateDBSnapshot", "DescribeDBSnapshots", "RebootDBInstance")
    ]
    assert calls == ["CreateDBSnapshot", "DescribeDBSnapshots", "RebootDBInstance"]
    [made] = world.db_snapshots("orders-db")
    assert (made["DBSnapshotIdentifier"], made["Status"]) == (name, "available")
    assert status == CheckResult(
        check="rds_status_is", ok=True, detail="RDS DB instance orders-db is available"
    )


async def test_a_retried_rds_reboot_keeps_the_db_snapshot_its_first_try_took(
    executor: AwsExecutor, world: World
) -> None:
    world.database("orders-db")
    snapshot = await executor.snapshot(rds("orders-db"), incident_id=7)
    assert (await executor.run(step("rds_reboot"), rds("orders-db"), snapshot)).ok

    again = await executor.run(step("rds_reboot"), rds("orders-db"), snapshot)

    assert again.ok, again.detail
    assert again.detail.startswith(f"kept DB snapshot {snapshot.state['db_snapshot']} (available)")
    assert len(world.db_snapshots("orders-db")) == 1


async def test_a_stopped_db_is_neither_snapshotted_nor_rebooted(
    relayed: AwsExecutor, relay: Relay, world: World
) -> None:
    world.database("orders-db")
    world.client("rds").stop_db_instance(DBInstanceIdentifier="orders-db")

    result = await act(relayed, rds("orders-db"), step("rds_reboot"))
    status = await relayed.check(check("rds_status_is", within_s=0.1), rds("orders-db"))

    assert not result.ok
    assert result.detail == (
        "refused: RDS DB instance orders-db is stopped; a reboot needs it available"
    )
    assert relay.count("CreateDBSnapshot") + relay.count("RebootDBInstance") == 0
    assert not status.ok
    assert status.detail == "RDS DB instance orders-db is stopped after 0 s, not available (status)"


async def test_failover_needs_a_multi_az_instance(
    relayed: AwsExecutor, relay: Relay, world: World
) -> None:
    world.database("orders-db")

    result = await act(relayed, rds("orders-db"), step("rds_reboot", force_failover=True))

    assert not result.ok
    assert "is not Multi-AZ, so there is no standby to fail over to" in result.detail
    assert relay.count("CreateDBSnapshot") + relay.count("RebootDBInstance") == 0


async def test_a_multi_az_instance_fails_over(executor: AwsExecutor, world: World) -> None:
    world.database("orders-db", multi_az=True)

    result = await act(executor, rds("orders-db"), step("rds_reboot", force_failover=True))

    assert result.ok, result.detail
    assert "then rebooted RDS DB instance orders-db with failover" in result.detail


async def test_restore_after_a_reboot_succeeds_only_when_available(
    executor: AwsExecutor, world: World
) -> None:
    world.database("orders-db")
    snapshot = await executor.snapshot(rds("orders-db"), incident_id=7)
    assert (await executor.run(step("rds_reboot"), rds("orders-db"), snapshot)).ok

    await executor.restore(snapshot)  # available: nothing to undo, nothing harmed
    world.client("rds").stop_db_instance(DBInstanceIdentifier="orders-db")
    with pytest.raises(RuntimeError) as raised:
        await executor.restore(snapshot)

    assert str(raised.value).startswith(
        "a reboot of RDS DB instance orders-db cannot be undone, and it is stopped after"
    )
    assert world.db_status("orders-db") == "stopped"


async def test_a_db_that_does_not_exist_is_refused(executor: AwsExecutor, world: World) -> None:
    world.database("orders-db")
    target = executor.resolve_target("rds:orders-replica", ALLOWLIST)
    why = "no RDS DB instance named 'orders-replica' in us-east-1"

    with pytest.raises(TargetRefused, match=why):
        await executor.snapshot(target, incident_id=7)
    checked = await executor.check(check("rds_status_is"), target)

    assert (checked.ok, checked.detail) == (False, why)


# -- built-in patterns and playbooks, from a realistic CloudWatch alarm to a result ----------

NOW = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
ACCOUNT = "123456789012"
INSTANCE_ALARM_ID = "i-0a1b2c3d4e5f60718"


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return builtin_catalog(tmp_path, "aws")


def chatbot_alarm(
    alarm: str,
    namespace: str,
    metric: str,
    dimensions: str,
    description: str,
    reason: str,
    *,
    mark: str = ":rotating_light:",
    color: str = "D13212",
) -> Alert:
    """A CloudWatch alarm as AWS Chatbot posts it in Slack: a legacy attachment
    with the metric, namespace and dimensions as fields."""
    headline = f"CloudWatch Alarm | {alarm} | {REGION} | Account: {ACCOUNT}"
    event = {
        "type": "message",
        "user": "U07CHATBOT",
        "bot_id": "B07CHATBOT",
        "app_id": "A6L22LZNH",
        "text": "",
        "bot_profile": {"id": "B07CHATBOT", "name": "AWS Chatbot", "app_id": "A6L22LZNH"},
        "attachments": [
            {
                "color": color,
                "fallback": headline,
                "title": f"{mark} {headline}",
                "title_link": (
                    f"https://{REGION}.console.aws.amazon.com/cloudwatch/home?region={REGION}"
                    f"#alarmsV2:alarm/{alarm}"
                ),
                "text": f"{description}\n\n{reason}",
                "fields": [
                    {"title": "Namespace", "value": namespace, "short": True},
                    {"title": "Metric", "value": metric, "short": True},
                    {"title": "Dimensions", "value": dimensions, "short": False},
                ],
            }
        ],
        "channel": "C0ALERTS",
        "ts": "1795921200.004100",
    }
    alert = parse_slack_message(event, channel="C0ALERTS", received_at=NOW)
    assert alert is not None
    return alert


def amazon_q_alarm(alarm: str, namespace: str, metric: str, dimensions: str, reason: str) -> Alert:
    """The same as Amazon Q Developer (Chatbot's new name) posts it: Block Kit sections."""
    console = (
        f"https://console.aws.amazon.com/cloudwatch/home?region={REGION}#alarmsV2:alarm/{alarm}"
    )
    headline = f"CloudWatch Alarm | {alarm} | {REGION} | Account: {ACCOUNT}"

    def section(text: str) -> dict[str, Any]:
        return {"type": "section", "text": {"type": "mrkdwn", "text": text}}

    event = {
        "type": "message",
        "user": "U07AMAZONQ",
        "bot_id": "B07AMAZONQ",
        "text": headline,
        "bot_profile": {"id": "B07AMAZONQ", "name": "Amazon Q", "app_id": "A6L22LZNH"},
        "blocks": [
            section(f":rotating_light: *<{console}|{headline}>*"),
            section(reason),
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*Namespace*\n{namespace}"},
                    {"type": "mrkdwn", "text": f"*Metric*\n{metric}"},
                    {"type": "mrkdwn", "text": f"*Dimensions*\n{dimensions}"},
                ],
            },
        ],
        "channel": "C0ALERTS",
        "ts": "1795921200.004500",
    }
    alert = parse_slack_message(event, channel="C0ALERTS", received_at=NOW)
    assert alert is not None
    return alert


def cpu_alarm(group: str = "web-prod", **style: str) -> Alert:
    return chatbot_alarm(
        f"{group}-cpu-high",
        "AWS/EC2",
        "CPUUtilization",
        f"AutoScalingGroupName = {group}",
        f"Average CPU of {group} above 80% for 10 minutes",
        "Threshold Crossed: 2 out of the last 2 datapoints [91.3 (24/11/26 02:55:00), 88.0 "
        "(24/11/26 02:50:00)] were greater than the threshold (80.0) (minimum 2 datapoints "
        "for OK -> ALARM transition).",
        **style,
    )


def cpu_alarm_without_data() -> Alert:
    """The same alarm once its metric stops reporting."""
    return chatbot_alarm(
        "web-prod-cpu-high",
        "AWS/EC2",
        "CPUUtilization",
        "AutoScalingGroupName = web-prod",
        "Average CPU of web-prod above 80% for 10 minutes",
        "Insufficient Data: 1 datapoint was unknown. (minimum 1 datapoint for ALARM -> "
        "INSUFFICIENT_DATA transition).",
        mark=":grey_question:",
        color="879596",
    )


def latency_alarm() -> Alert:
    """A load balancer's alarm: its dimensions name the ALB and target group; its
    description names the group behind them."""
    return chatbot_alarm(
        "web-prod-alb-p95-latency",
        "AWS/ApplicationELB",
        "TargetResponseTime",
        "LoadBalancer = app/web-prod-alb/50dc6c495c0c9188, "
        "TargetGroup = targetgroup/web-prod/73e2d6bc24d8a067",
        "p95 response time of the web tier above 1.5 s (AutoScalingGroupName=web-prod)",
        "Threshold Crossed: 3 out of the last 3 datapoints [2.31 (24/11/26 02:58:00), 2.05 "
        "(24/11/26 02:57:00), 1.92 (24/11/26 02:56:00)] were greater than the threshold (1.5) "
        "(minimum 3 datapoints for OK -> ALARM transition).",
    )


def status_check_alarm(instance_id: str) -> Alert:
    return chatbot_alarm(
        f"{instance_id}-status-check-failed",
        "AWS/EC2",
        "StatusCheckFailed",
        f"InstanceId = {instance_id}",
        "Status checks of the payments host fail",
        "Threshold Crossed: 2 out of the last 2 datapoints [1.0 (24/11/26 02:59:00), 1.0 "
        "(24/11/26 02:58:00)] were greater than or equal to the threshold (1.0) (minimum 2 "
        "datapoints for OK -> ALARM transition).",
    )


def connections_alarm(db: str = "orders-db") -> Alert:
    return amazon_q_alarm(
        f"{db}-connections-exhausted",
        "AWS/RDS",
        "DatabaseConnections",
        f"DBInstanceIdentifier = {db}",
        "Threshold Crossed: 5 out of the last 5 datapoints [87.0 (24/11/26 02:59:00), 87.0 "
        "(24/11/26 02:58:00)] were greater than or equal to the threshold (85.0) (minimum 5 "
        "datapoints for OK -> ALARM transition).",
    )


def forwarded_status_check(instance_id: str) -> Alert:
    """The alarm relayed from SNS to the generic webhook with its dimensions as labels."""
    body = {
        "id": f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{instance_id}-status-check-failed",
        "name": f"{instance_id}-status-check-failed",
        "labels": {"metric": "StatusCheckFailed_Instance", "InstanceId": instance_id},
        "text": "Threshold Crossed: 1 datapoint [1.0] was greater than or equal to 1.0",
    }
    [alert] = parse_generic(json.dumps(body).encode(), received_at=NOW)
    return alert


@pytest.mark.parametrize(
    ("alert", "pattern", "playbook", "tier", "target"),
    [
        (cpu_alarm(), "aws-asg-cpu-high", "aws-asg-scale-out", 2, "asg:web-prod"),
        (latency_alarm(), "aws-asg-latency-high", "aws-asg-scale-out", 2, "asg:web-prod"),
        (
            status_check_alarm(INSTANCE_ALARM_ID),
            "aws-ec2-status-check-failed",
            "aws-ec2-reboot",
            2,
            f"ec2:{INSTANCE_ALARM_ID}",
        ),
        (
            forwarded_status_check(INSTANCE_ALARM_ID),
            "aws-ec2-status-check-failed",
            "aws-ec2-reboot",
            2,
            f"ec2:{INSTANCE_ALARM_ID}",
        ),
        (
            connections_alarm(),
            "aws-rds-connections-exhausted",
            "aws-rds-reboot",
            3,
            "rds:orders-db",
        ),
    ],
    ids=["cpu", "latency", "status check", "status check via webhook", "rds connections"],
)
def test_realistic_alarms_get_their_playbook_and_tier(
    catalog: Catalog, alert: Alert, pattern: str, playbook: str, tier: int, target: str
) -> None:
    executor = AwsExecutor(FixedClock(), endpoint_url=closed_port_url())
    diagnosis = catalog.diagnose(alert)
    assert diagnosis is not None and diagnosis.pattern_id == pattern
    assert "{" not in diagnosis.explanation  # every placeholder filled from the labels
    chosen = catalog.playbook_for(diagnosis.problem)
    assert chosen is not None and chosen.id == playbook and chosen.tier == tier

    plan = make_plan(chosen, alert, executor, ALLOWLIST)

    assert plan.target == Target(executor="aws", name=target)
    assert plan.required_approvals == {2: 1, 3: 2}[tier]


def test_an_alarm_without_data_runs_no_playbook(catalog: Catalog) -> None:
    alert = cpu_alarm_without_data()
    assert alert.labels["metric"] == "CPUUtilization"  # it keeps the alarm's labels

    diagnosis = catalog.diagnose(alert)

    assert diagnosis is not None and diagnosis.problem == "cloudwatch_insufficient_data"
    assert "web-prod-cpu-high has no data for CPUUtilization" in diagnosis.explanation
    assert catalog.playbook_for(diagnosis.problem) is None


def test_a_system_status_check_is_not_healed_by_a_reboot(catalog: Catalog) -> None:
    # A failed host needs the instance moved (stop and start), not rebooted.
    alert = chatbot_alarm(
        "host-check",
        "AWS/EC2",
        "StatusCheckFailed_System",
        f"InstanceId = {INSTANCE_ALARM_ID}",
        "The host of the payments instance fails",
        "Threshold Crossed: 1 datapoint [1.0] was greater than or equal to the threshold (1.0).",
    )
    assert catalog.diagnose(alert) is None


async def test_an_alarm_naming_a_group_outside_the_allowlist_is_refused_untouched(
    catalog: Catalog, relayed: AwsExecutor, relay: Relay, world: World
) -> None:
    world.group("db-prod", min_size=1, max_size=4, desired=2)
    alert = cpu_alarm("db-prod")
    diagnosis = catalog.diagnose(alert)
    assert diagnosis is not None
    playbook = catalog.playbook_for(diagnosis.problem)
    assert playbook is not None

    with pytest.raises(TargetRefused, match="'asg:db-prod' is not in the aws allowlist"):
        make_plan(playbook, alert, relayed, ALLOWLIST)

    assert relay.actions == []
    assert world.capacity("db-prod") == {"desired": 2, "min": 1, "max": 4}


@dataclass
class Healed:
    plan: Plan
    snapshots: list[Snapshot] = field(default_factory=list)
    steps: list[StepResult] = field(default_factory=list)
    checks: list[CheckResult] = field(default_factory=list)
    rolled_back: bool = False
    restore_failed: str | None = None


async def heal(catalog: Catalog, executor: AwsExecutor, alert: Alert) -> Healed:
    """What the engine does with an approved plan: a snapshot before each step,
    the steps, the checks; a failure restores every snapshot, newest first."""
    diagnosis = catalog.diagnose(alert)
    assert diagnosis is not None, alert
    playbook = catalog.playbook_for(diagnosis.problem)
    assert playbook is not None
    healed = Healed(make_plan(playbook, alert, executor, ALLOWLIST))
    target = healed.plan.target
    for planned in healed.plan.steps:
        healed.snapshots.append(await executor.snapshot(target, incident_id=9))
        healed.steps.append(await executor.run(planned, target, healed.snapshots[-1]))
        if not healed.steps[-1].ok:
            break
    else:
        healed.checks = [await executor.check(c, target) for c in healed.plan.checks]
        if all(c.ok for c in healed.checks):
            return healed
    healed.rolled_back = True
    try:
        for snapshot in reversed(healed.snapshots):
            await executor.restore(snapshot)
    except RuntimeError as exc:
        healed.restore_failed = str(exc)  # the engine ends in safe_hold
    return healed


@pytest.mark.parametrize("alarm", [cpu_alarm, latency_alarm], ids=["cpu", "latency"])
async def test_a_hot_group_scales_out_from_the_alarm(
    catalog: Catalog, executor: AwsExecutor, world: World, alarm: Any
) -> None:
    world.group("web-prod", min_size=1, max_size=4, desired=2)

    healed = await heal(catalog, executor, alarm())

    assert healed.plan.playbook_id == "aws-asg-scale-out"
    assert [s.detail for s in healed.steps] == [
        "Auto Scaling group web-prod: desired capacity 2 -> 3 (min 1, max 4)"
    ]
    assert [c.check for c in healed.checks] == ["asg_in_service_at_desired"]
    assert all(c.ok for c in healed.checks), healed.checks
    assert not healed.rolled_back
    assert world.capacity("web-prod") == {"desired": 3, "min": 1, "max": 4}
    assert healed.snapshots[0].state == {"desired": 2, "min": 1, "max": 4}


async def test_a_hot_group_at_its_max_is_refused_and_rolled_back_unchanged(
    catalog: Catalog, executor: AwsExecutor, world: World
) -> None:
    world.group("web-prod", min_size=1, max_size=4, desired=4)

    healed = await heal(catalog, executor, cpu_alarm())

    assert not healed.steps[0].ok
    assert "would be 4 +1 = 5, outside its min 1 and max 4" in healed.steps[0].detail
    assert healed.rolled_back and healed.restore_failed is None
    assert world.capacity("web-prod") == {"desired": 4, "min": 1, "max": 4}


async def test_a_failed_status_check_reboots_the_instance_from_the_alarm(
    catalog: Catalog, relayed: AwsExecutor, relay: Relay, world: World
) -> None:
    instance = world.instance()

    healed = await heal(catalog, relayed, status_check_alarm(instance))

    assert healed.plan.playbook_id == "aws-ec2-reboot"
    assert all(s.ok for s in healed.steps), healed.steps
    assert [c.check for c in healed.checks] == ["ec2_state_is", "ec2_status_ok"]
    assert all(c.ok for c in healed.checks), healed.checks
    assert relay.count("RebootInstances") == 1
    assert world.instance_state(instance) == "running"


async def test_exhausted_connections_snapshot_then_reboot_the_db_from_the_alarm(
    catalog: Catalog, executor: AwsExecutor, world: World
) -> None:
    world.database("orders-db")

    healed = await heal(catalog, executor, connections_alarm())

    assert healed.plan.playbook_id == "aws-rds-reboot" and healed.plan.tier == 3
    assert all(s.ok for s in healed.steps), healed.steps
    assert all(c.ok for c in healed.checks), healed.checks
    name = "grace-9-orders-db-20261124-030000"
    assert healed.snapshots[0].state == {"status": "available", "db_snapshot": name}
    assert [s["DBSnapshotIdentifier"] for s in world.db_snapshots("orders-db")] == [name]
    assert world.db_status("orders-db") == "available"


async def test_a_db_reboot_that_cannot_run_ends_in_safe_hold_truthfully(
    catalog: Catalog, executor: AwsExecutor, world: World
) -> None:
    world.database("orders-db")
    world.client("rds").stop_db_instance(DBInstanceIdentifier="orders-db")

    healed = await heal(catalog, executor, connections_alarm())

    assert healed.steps[0].detail == (
        "refused: RDS DB instance orders-db is stopped; a reboot needs it available"
    )
    assert healed.rolled_back
    assert healed.restore_failed is not None
    assert "cannot be undone, and it is stopped" in healed.restore_failed
    assert world.db_snapshots("orders-db") == []
