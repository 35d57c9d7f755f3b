"""What the daemon says about a container: its status, its health since it
last started, its published ports, and whether it meets what a wait wants."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from engine.executors.common import shorten
from engine.executors.containers.daemon import OUTPUT_CHARS

Want = Literal["healthy", "running"]


@dataclass(frozen=True)
class ContainerState:
    id: str
    name: str
    status: str
    exit_code: int
    error: str
    started_at: str
    restart_policy: str
    health: str | None
    """None when the container has no health check."""
    health_output: str
    """The last health-check result since it started, ready to show."""
    ports: Mapping[str, Any]

    @classmethod
    def of(cls, info: Mapping[str, Any]) -> ContainerState:
        state = info.get("State") or {}
        health = state.get("Health") or {}
        started_at = str(state.get("StartedAt", ""))
        return cls(
            id=str(info["Id"]),
            name=str(info.get("Name", "")).lstrip("/"),
            status=str(state.get("Status", "unknown")),
            exit_code=int(state.get("ExitCode", 0)),
            error=str(state.get("Error", "")),
            started_at=started_at,
            restart_policy=str(
                ((info.get("HostConfig") or {}).get("RestartPolicy") or {}).get("Name") or "no"
            ),
            health=str(health["Status"]) if health.get("Status") else None,
            health_output=_last_health_check(health.get("Log") or [], started_at),
            ports=(info.get("NetworkSettings") or {}).get("Ports") or {},
        )

    @property
    def up(self) -> bool:
        return self.status == "running"

    @property
    def stays_down(self) -> bool:
        """Stopped, and no restart policy will start it again."""
        return self.status in ("exited", "dead", "created") and self.restart_policy == "no"

    def up_for(self) -> float:
        """Seconds since it started, by this host's clock; 0 when unknown."""
        started = _docker_time(self.started_at)
        return (datetime.now(UTC) - started).total_seconds() if started else 0.0

    def meets(self, want: Want, steady: bool) -> bool:
        if not self.up:
            return False
        if want == "healthy" and self.health is not None:
            return self.health == "healthy"
        return steady

    def describe(self) -> str:
        if self.up:
            if self.health is None:
                return "running (it has no health check)"
            if self.health == "healthy":
                return "running and healthy"
            return f"running but {self.health}: {self.health_output}"
        text = f"{self.status} with exit status {self.exit_code}"
        if self.error:
            text += f" ({shorten(self.error, OUTPUT_CHARS)!r})"
        if self.stays_down:
            text += ", and no restart policy will start it again"
        return text


def _last_health_check(log: Sequence[Mapping[str, Any]], started_at: str) -> str:
    """The newest health-check result since the container started: the daemon
    keeps results from before a restart, which say nothing about now."""
    started = _docker_time(started_at)
    ran = _docker_time(str(log[-1].get("Start", ""))) if log else None
    if not log or (started is not None and (ran is None or ran < started)):
        return "no health check has finished since it started"
    output = shorten(str(log[-1].get("Output", "")), OUTPUT_CHARS)
    return f"last health check exited {log[-1].get('ExitCode')}, output {output!r}"


def _docker_time(text: str) -> datetime | None:
    """An RFC 3339 time as the daemon writes it (nanoseconds); None when unset."""
    if not text or text.startswith("0001-"):
        return None
    try:
        return datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", text))
    except ValueError:
        return None
