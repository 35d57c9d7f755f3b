"""Real AWS-shaped infrastructure for the aws executor's tests.

- `start_moto`: moto's ThreadedMotoServer on a free loopback port.
- `World`: real Auto Scaling groups, EC2 instances and RDS instances made in
  it through boto3, and read back the same way.
- `Relay`: a real HTTP server on loopback between the executor and moto. It
  forwards every request, except that it can answer chosen calls as a
  throttled or failing AWS does, and it records which API actions it saw so a
  test can wait for one instead of sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import boto3
import pytest
from aiohttp import web
from botocore.client import BaseClient
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
AMI = "ami-12c6146b"  # one of the images moto ships
# Hop-by-hop or recomputed headers; accept-encoding so moto's answer stays readable.
_NOT_FORWARDED = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "accept-encoding", "expect"}
)


def start_moto() -> tuple[ThreadedMotoServer, str]:
    """A moto server on 127.0.0.1, port chosen by the kernel; (server, url)."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


@pytest.fixture(scope="module", name="moto_url")
def moto_url_fixture() -> Iterator[str]:
    """A moto server for one test module, stopped after it. Import this
    function (`# noqa: F401`); it is registered as `moto_url`."""
    server, url = start_moto()
    try:
        yield url
    finally:
        server.stop()


def reset(url: str) -> None:
    """Forget every resource: each test starts from an empty account."""
    request = urllib.request.Request(f"{url}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.status == 200


def closed_port_url() -> str:
    """A loopback URL nothing listens on: connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@dataclass
class World:
    """Resources in the moto server, made and read through boto3 directly."""

    url: str
    _clients: dict[str, BaseClient] = field(default_factory=dict)
    _subnet: str | None = None

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = boto3.client(
                service, endpoint_url=self.url, region_name=REGION
            )
        return self._clients[service]

    def group(self, name: str, *, min_size: int, max_size: int, desired: int) -> None:
        """An Auto Scaling group from a launch template in its own VPC subnet."""
        self.client("autoscaling").create_auto_scaling_group(
            AutoScalingGroupName=name,
            MinSize=min_size,
            MaxSize=max_size,
            DesiredCapacity=desired,
            LaunchTemplate={"LaunchTemplateName": self._launch_template(), "Version": "$Latest"},
            VPCZoneIdentifier=self.subnet(),
        )

    def capacity(self, name: str) -> dict[str, int]:
        group = self._describe_group(name)
        return {
            "desired": group["DesiredCapacity"],
            "min": group["MinSize"],
            "max": group["MaxSize"],
        }

    def group_instances(self, name: str) -> list[dict[str, Any]]:
        return list(self._describe_group(name)["Instances"])

    def instance(self) -> str:
        """A running EC2 instance; its id."""
        reply = self.client("ec2").run_instances(
            ImageId=AMI, MinCount=1, MaxCount=1, InstanceType="t3.micro", SubnetId=self.subnet()
        )
        return str(reply["Instances"][0]["InstanceId"])

    def instance_state(self, instance_id: str) -> str:
        reply = self.client("ec2").describe_instances(InstanceIds=[instance_id])
        return str(reply["Reservations"][0]["Instances"][0]["State"]["Name"])

    def stop(self, instance_id: str) -> None:
        self.client("ec2").stop_instances(InstanceIds=[instance_id])

    def database(self, name: str, *, multi_az: bool = False) -> None:
        self.client("rds").create_db_instance(
            DBInstanceIdentifier=name,
            DBInstanceClass="db.t3.micro",
            Engine="postgres",
            MasterUsername="orders",
            MasterUserPassword="not-a-real-password",
            AllocatedStorage=20,
            MultiAZ=multi_az,
        )

    def db_status(self, name: str) -> str:
        reply = self.client("rds").describe_db_instances(DBInstanceIdentifier=name)
        return str(reply["DBInstances"][0]["DBInstanceStatus"])

    def db_snapshots(self, name: str) -> list[dict[str, Any]]:
        reply = self.client("rds").describe_db_snapshots(
            DBInstanceIdentifier=name, SnapshotType="manual"
        )
        return list(reply["DBSnapshots"])

    def subnet(self) -> str:
        if self._subnet is None:
            ec2 = self.client("ec2")
            vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
            self._subnet = ec2.create_subnet(
                VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone=f"{REGION}a"
            )["Subnet"]["SubnetId"]
        return self._subnet

    def _launch_template(self) -> str:
        name = "web"
        ec2 = self.client("ec2")
        if not ec2.describe_launch_templates(
            Filters=[{"Name": "launch-template-name", "Values": [name]}]
        )["LaunchTemplates"]:
            ec2.create_launch_template(
                LaunchTemplateName=name,
                LaunchTemplateData={"ImageId": AMI, "InstanceType": "t3.micro"},
            )
        return name

    def _describe_group(self, name: str) -> dict[str, Any]:
        reply = self.client("autoscaling").describe_auto_scaling_groups(
            AutoScalingGroupNames=[name]
        )
        return dict(reply["AutoScalingGroups"][0])


def query_error(code: str, message: str) -> bytes:
    """An error as Auto Scaling and RDS (the query protocol) answer it."""
    return (
        '<ErrorResponse xmlns="https://autoscaling.amazonaws.com/doc/2011-01-01/">'
        f"<Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        "<RequestId>7c1b6ca4-0b6a-4f39-9d2f-7c0e8a1d2b3c</RequestId></ErrorResponse>"
    ).encode()


def ec2_error(code: str, message: str) -> bytes:
    """An error as EC2 answers it."""
    return (
        f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error>"
        "</Errors><RequestID>0f2a3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d</RequestID></Response>"
    ).encode()


@dataclass
class _Failure:
    action: str
    status: int
    body: bytes
    content_type: str
    times: int
    skip: int


class Relay:
    """Forwards to moto; answers chosen calls with an error; records every action."""

    def __init__(self, upstream: str) -> None:
        self._upstream = upstream
        self.actions: list[str] = []
        self._failures: list[_Failure] = []
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    async def __aenter__(self) -> Relay:
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(self._runner, sock).start()
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def fail(
        self,
        action: str,
        status: int,
        body: bytes,
        *,
        times: int = 1,
        skip: int = 0,
        content_type: str = "text/xml",
    ) -> None:
        """Answer `action` with this error `times` times, after letting `skip` through."""
        self._failures.append(_Failure(action, status, body, content_type, times, skip))

    def count(self, action: str) -> int:
        return self.actions.count(action)

    async def seen(self, action: str, count: int = 1, within_s: float = 10.0) -> None:
        """Wait until `action` has reached the relay `count` times."""
        async with asyncio.timeout(within_s), self._changed:
            await self._changed.wait_for(lambda: self.count(action) >= count)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        action = parse_qs(body.decode(errors="replace")).get("Action", [""])[0]
        failure = self._failure_for(action)
        if failure is None:
            response = await self._forward(request, body)
        else:
            response = web.Response(
                status=failure.status, body=failure.body, content_type=failure.content_type
            )
        # Recorded once answered, so a test that saw it can change the world after.
        async with self._changed:
            self.actions.append(action)
            self._changed.notify_all()
        return response

    async def _forward(self, request: web.Request, body: bytes) -> web.Response:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
        async with self._session.request(
            request.method, self._upstream + request.path_qs, headers=headers, data=body
        ) as reply:
            return web.Response(
                status=reply.status,
                body=await reply.read(),
                headers={"Content-Type": reply.headers.get("Content-Type", "text/xml")},
            )

    def _failure_for(self, action: str) -> _Failure | None:
        for failure in self._failures:
            if failure.action != action or failure.times == 0:
                continue
            if failure.skip:
                failure.skip -= 1
                return None
            failure.times -= 1
            return failure
        return None
