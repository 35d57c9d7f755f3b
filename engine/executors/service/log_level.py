"""Changing and reading a service's log level, through its admin endpoint or
its config file, and asking it to reload."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Literal

from pydantic import AnyHttpUrl, Field

from engine.executors.service.client import ServiceHttp, shown
from engine.executors.service.config import ServiceConfig
from engine.executors.service.config_edit import ServiceError, file_level, set_file_level, styled
from engine.executors.service.operations import OPS, Service
from engine.models import Snapshot
from engine.ports import Params, TransientError

# A level is written into YAML, JSON and key=value files: a plain word cannot
# break out of its value or add another key.
_LEVEL = r"^[A-Za-z][A-Za-z0-9_-]{0,31}$"

Via = Literal["auto", "config_file", "admin"]


class SetLogLevelParams(Params):
    level: str = Field(pattern=_LEVEL)
    via: Via = "auto"


class ReloadParams(Params):
    pass


class LogLevelIsParams(Params):
    level: str = Field(pattern=_LEVEL)
    via: Via = "auto"


@OPS.actions("set_log_level", SetLogLevelParams)
async def set_log_level(
    params: SetLogLevelParams, service: Service, snapshot: Snapshot
) -> tuple[bool, str]:
    name, config = service.name, service.config
    lacks = f"service {name!r} refused: it has no {_lacks(params.via)} configured"
    if _pick(params.via, config) == "admin":
        if config.admin_url is None:
            return False, lacks
        if snapshot.state.get("admin_level") is None:
            why = snapshot.state.get("admin_error", "the snapshot holds no admin level")
            return False, (
                f"service {name!r} refused: the level before this step could not be "
                f"saved, so it could not be rolled back ({why})"
            )
        return await _set_via_admin(service.http, name, config.admin_url, params.level)
    if config.config_file is None:
        return False, lacks
    return await _set_via_file(service, config.config_file, params.level)


@OPS.actions("reload", ReloadParams)
async def reload(params: ReloadParams, service: Service, snapshot: Snapshot) -> tuple[bool, str]:
    name, url = service.name, service.config.reload_url
    if url is None:
        return False, f"service {name!r} refused: it has no reload_url configured"
    reply = await service.http.act(name, "reload", "POST", url)
    return True, f"service {name!r}: reload accepted at {shown(url)} ({reply.summary()})"


@OPS.checks("log_level_is", LogLevelIsParams)
async def log_level_is(params: LogLevelIsParams, service: Service) -> tuple[bool, str]:
    name, config = service.name, service.config
    lacks = f"service {name!r} has no {_lacks(params.via)} configured"
    try:
        if _pick(params.via, config) == "admin":
            if config.admin_url is None:
                return False, lacks
            current = await service.http.admin_level(name, config.admin_url)
            where = shown(config.admin_url)
        else:
            if config.config_file is None:
                return False, lacks
            current = await asyncio.to_thread(file_level, config.config_file, config.log_level_key)
            where = str(config.config_file)
    except (ServiceError, TransientError, OSError) as exc:
        return False, f"service {name!r}: cannot read its log level: {exc}"
    ok = current.casefold() == params.level.casefold()
    verdict = "is" if ok else f"is {current}, not"
    return ok, f"service {name!r}: log level at {where} {verdict} {params.level}"


async def _set_via_admin(
    http: ServiceHttp, name: str, url: AnyHttpUrl, level: str
) -> tuple[bool, str]:
    current = await http.admin_level(name, url)
    wanted = styled(level, current)
    if current.casefold() == level.casefold():
        return True, f"service {name!r}: log level already {current} at {shown(url)}"
    reply = await http.put_level(name, url, wanted)
    return True, (
        f"service {name!r}: log level {current} -> {wanted} at {shown(url)} ({reply.summary()})"
    )


async def _set_via_file(service: Service, path: Path, level: str) -> tuple[bool, str]:
    name, config = service.name, service.config
    before, after = await asyncio.to_thread(set_file_level, path, config.log_level_key, level)
    done = f"log level {before} -> {after}" if before != after else f"log level already {before}"
    done += f" in {path}"
    if config.reload_url is None:
        return True, (
            f"service {name!r}: {done}; no reload_url is configured, so the service "
            "reads it on its next restart or reload"
        )
    reply = await service.http.act(name, "reload", "POST", config.reload_url)
    return True, f"service {name!r}: {done}; reload accepted ({reply.summary()})"


def _pick(via: Via, config: ServiceConfig) -> Literal["admin", "config_file"]:
    """auto: the admin endpoint when there is one, as it knows the running level."""
    if via != "auto":
        return via
    return "admin" if config.admin_url is not None else "config_file"


def _lacks(via: Via) -> str:
    """What a service lacks when `via` finds nothing to work with."""
    return {"auto": "admin_url or config_file", "admin": "admin_url"}.get(via, "config_file")
