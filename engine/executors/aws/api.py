"""Calling AWS for the aws executor: one boto3 session, its clients, errors sorted
into transient, missing target and the rest, and polling a reading until a deadline.

Every boto3 call runs in `asyncio.to_thread`, with botocore's own retries off:
the engine's resilience layer retries what this module marks transient
(throttling, 5xx, connection trouble) and nothing else. Credentials and the
region come from the standard boto3 chain and are never logged or shown.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.parsers import ResponseParserError

from engine.executors.aws.targets import Ref
from engine.executors.common import poll_until, shorten
from engine.models import Availability
from engine.ports import TargetRefused, TransientError

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
T = TypeVar("T")


class Aws:
    """AWS as the service modules call it: one session, a client per service."""

    def __init__(self, *, endpoint_url: str | None, region: str | None, poll_s: float) -> None:
        """`endpoint_url` points every client elsewhere (a test server); a wait
        for a state reads it every `poll_s`."""
        self._endpoint_url = endpoint_url
        # botocore itself reads only AWS_DEFAULT_REGION; AWS_REGION is the other SDKs' name.
        self._session = boto3.session.Session(region_name=region or os.environ.get("AWS_REGION"))
        self._poll_s = poll_s
        self._clients: dict[str, BaseClient] = {}
        self._clients_lock = threading.Lock()  # boto3 sessions may not make clients concurrently

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

    def missing(self, ref: Ref) -> str:
        """Why a target that does not exist is refused."""
        return f"no {ref.noun} named {ref.name!r} in {self._session.region_name}"

    async def call(self, ref: Ref, service: str, operation: str, **params: Any) -> dict[str, Any]:
        """One API call in a worker thread. Transient trouble raises TransientError,
        a target that does not exist TargetRefused; other errors propagate."""
        try:
            return await asyncio.to_thread(self._call_sync, service, operation, params)
        except (ClientError, BotoCoreError, ResponseParserError) as exc:
            if _transient(exc):
                raise TransientError(
                    f"{operation} for {ref} failed, worth retrying: {error_text(exc)}"
                ) from exc
            if isinstance(exc, ClientError) and code(exc) in _MISSING_CODES:
                raise TargetRefused(self.missing(ref)) from exc
            raise

    async def poll(
        self, read: Callable[[], Awaitable[T]], done: Callable[[T], bool], deadline: float
    ) -> tuple[T, float]:
        """Read until `done` or the `time.monotonic()` deadline; the last reading
        and the seconds waited. A throttled read is read again."""
        value, waited, _ = await poll_until(read, done, deadline - time.monotonic(), self._poll_s)
        return value, waited

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


def code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def error_text(exc: ClientError | BotoCoreError | ResponseParserError) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
        return f"{error.get('Code', '?')} (HTTP {status}): {error.get('Message', '')}".rstrip(": ")
    return shorten(str(exc), 200)  # a parser error quotes the whole page it could not read


def _transient(exc: ClientError | BotoCoreError | ResponseParserError) -> bool:
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return code(exc) in _BUSY_CODES or status >= 500
    # ResponseParserError: a proxy's or load balancer's error page instead of AWS's XML.
    return isinstance(exc, BotoConnectionError | HTTPClientError | ResponseParserError)
