"""The connection to the API server, through the official client's asyncio API:
where its configuration comes from, one pool of connections opened on first use,
and every call's failure sorted into worth retrying or not."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from kubernetes.aio import client, config
from kubernetes.aio.client import ApiClient, ApiException

from engine.executors.common import shorten
from engine.executors.k8s.targets import DeploymentRef
from engine.models import Availability
from engine.ports import TransientError

_PROBE_TIMEOUT_S = 10.0
_MESSAGE_CHARS = 240

T = TypeVar("T")


class KubernetesRefused(Exception):
    """The cluster said no in a way retrying will not change: forbidden, not
    found, invalid, or no cluster configured at all."""


@dataclass(frozen=True)
class ConfigSource:
    """Where the client's configuration comes from."""

    kubeconfig: str | None
    """A kubeconfig path, or KUBECONFIG's list of them; None: the pod's service account."""

    def __str__(self) -> str:
        return f"kubeconfig {self.kubeconfig}" if self.kubeconfig else "in-cluster service account"


@dataclass(frozen=True)
class Op:
    """One API call, to name it in errors: `patch deployments/scale shop/cart`."""

    verb: str
    resource: str
    ref: DeploymentRef | None = None

    def __str__(self) -> str:
        return f"{self.verb} {self.resource}" + (f" {self.ref}" if self.ref else "")


class Connection:
    """The API server, connected to on first use and again after the
    credentials are rejected."""

    def __init__(self, kubeconfig: Path | None, context: str | None) -> None:
        self._kubeconfig = kubeconfig
        self._context = context
        self._api: ApiClient | None = None
        self._source: ConfigSource | None = None
        self._connecting = asyncio.Lock()

    async def aclose(self) -> None:
        """Close the connection pool; the next call opens a new one."""
        api, self._api = self._api, None
        if api is not None:
            await api.close()

    async def available(self) -> Availability:
        """Configured, and the API server answers."""
        try:
            version = await self.request(
                Op("get", "version"),
                lambda api: client.VersionApi(api).get_code(_request_timeout=_PROBE_TIMEOUT_S),
            )
        except (KubernetesRefused, TransientError) as exc:
            return Availability(ok=False, reason=str(exc))
        return Availability(
            ok=True,
            reason=f"{self._source} -> {self._host()}, Kubernetes {version.git_version}",
        )

    async def request(self, op: Op, call: Callable[[ApiClient], Awaitable[T]]) -> T:
        """One API call, its failure sorted: worth retrying (TransientError) or
        not (KubernetesRefused, with what was refused and why)."""
        api = await self._client()
        try:
            return await call(api)
        except ApiException as exc:
            raise await self._classify(op, exc) from exc
        except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError) as exc:
            raise KubernetesRefused(f"cannot {op}: TLS with the API server failed: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TransientError(
                f"cannot {op}: the API server at {self._host()} does not answer: "
                f"{str(exc) or type(exc).__name__}"
            ) from exc

    async def _classify(self, op: Op, exc: ApiException) -> Exception:
        status = exc.status or 0
        said = _status_message(exc)
        if status == 401:
            await self.aclose()  # expired credentials: the next try loads them again
            return TransientError(f"cannot {op}: the API server rejected the credentials: {said}")
        if status == 403:
            where = f" in namespace {op.ref.namespace}" if op.ref else ""
            return KubernetesRefused(
                f"forbidden: GRACE's credentials lack permission to {op.verb} {op.resource}"
                f"{where}: {said}"
            )
        if status == 404 and op.ref is not None:
            return KubernetesRefused(await self._missing(op.ref))
        if status in (409, 429) or status >= 500:
            return TransientError(f"cannot {op}: the API server answered {status}: {said}")
        return KubernetesRefused(f"cannot {op}: the API server answered {status}: {said}")

    async def _missing(self, ref: DeploymentRef) -> str:
        """Say which is missing, the namespace or the Deployment in it."""
        api = await self._client()
        try:
            await client.CoreV1Api(api).read_namespace(ref.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return f"namespace {ref.namespace!r} does not exist (looking for deployment {ref})"
            return f"deployment {ref} was not found (namespace {ref.namespace!r} could not be read)"
        except (aiohttp.ClientError, TimeoutError, OSError):
            return f"deployment {ref} was not found (namespace {ref.namespace!r} could not be read)"
        return f"deployment {ref.name!r} does not exist in namespace {ref.namespace!r}"

    async def _client(self) -> ApiClient:
        async with self._connecting:
            if self._api is None:
                self._api = await self._connect()
            return self._api

    async def _connect(self) -> ApiClient:
        source = await asyncio.to_thread(find_config, self._kubeconfig)
        if isinstance(source, str):
            raise KubernetesRefused(source)
        configuration = client.Configuration()
        try:
            if source.kubeconfig is None:
                await asyncio.to_thread(config.load_incluster_config, configuration)
            else:
                await config.load_kube_config(
                    config_file=source.kubeconfig,
                    context=self._context,
                    client_configuration=configuration,
                    persist_config=False,  # never rewrite someone's kubeconfig
                )
        except (config.ConfigException, OSError, ValueError, KeyError) as exc:
            context = f" (context {self._context})" if self._context else ""
            raise KubernetesRefused(f"{source}{context} cannot be loaded: {exc}") from exc
        self._source = source
        return ApiClient(configuration)

    def _host(self) -> str:
        return self._api.configuration.host if self._api else "(not connected)"


def find_config(kubeconfig: Path | None) -> ConfigSource | str:
    """The configuration to use, or why there is none."""
    if kubeconfig is not None:
        if kubeconfig.is_file():
            return ConfigSource(str(kubeconfig))
        return f"no kubeconfig at {kubeconfig}"
    listed = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    paths = listed or [str(Path.home() / ".kube" / "config")]
    found = [p for p in paths if Path(p).expanduser().is_file()]
    if found:
        return ConfigSource(os.pathsep.join(found))
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return ConfigSource(None)
    return (
        f"no kubeconfig at {' or '.join(paths)} and not running in a cluster "
        "(KUBERNETES_SERVICE_HOST is not set)"
    )


def _status_message(exc: ApiException) -> str:
    """The message of the Status object the API server sent, else its reason."""
    body: Any = None
    with contextlib.suppress(TypeError, ValueError):
        body = json.loads(exc.body or "")
    message = body.get("message") if isinstance(body, dict) else None
    return shorten(str(message or exc.reason or "no reason given"), _MESSAGE_CHARS)
