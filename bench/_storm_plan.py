"""The alert storm's plan: which alerts each request carries, in what order, and
their bodies for GRACE (webhook v4) and for Alertmanager (API v2)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from engine.intake.alertmanager import ZERO_TIME, AlertmanagerAlert, AlertmanagerPayload

HOST = "127.0.0.1"
ALERTNAMES = 5
STORM = "StormAlert"
WARMUP = "WarmupAlert"


@dataclass(frozen=True)
class Mode:
    name: str  # "single" or "batched"
    fingerprints: int
    repeats: int
    batch: int

    @property
    def alerts(self) -> int:
        return self.fingerprints * self.repeats

    @property
    def expected_incidents(self) -> int:
        return self.fingerprints if self.name == "single" else ALERTNAMES

    def describe(self) -> str:
        if self.name == "single":
            return (
                f"one alert per request, each its own group: {self.alerts:,} requests, "
                f"{self.expected_incidents} incidents expected"
            )
        requests = self.alerts // self.batch
        return (
            f"{self.batch} alerts of one group per request (group by alertname): "
            f"{requests:,} requests, {self.expected_incidents} incidents expected"
        )


def labels_of(k: int, name: str = STORM) -> dict[str, str]:
    alertname = f"{name}{k % ALERTNAMES}" if name == STORM else name
    return {"alertname": alertname, "instance": f"host-{k}", "severity": "warning"}


def fingerprint_of(labels: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]


def _group_key(labels: dict[str, str], by: Sequence[str]) -> str:
    inner = ",".join(f'{key}="{labels[key]}"' for key in by)
    return "{}:{" + inner + "}"


def storm_groups(mode: Mode, name: str = STORM, count: int | None = None) -> list[list[int]]:
    """The alerts (by index k) of each request, in sending order: every repeat
    sends every fingerprint once, so the first repeat opens every incident."""
    count = mode.fingerprints if count is None else count
    if mode.name == "single":
        one_round = [[k] for k in range(count)]
    else:
        names = ALERTNAMES if name == STORM else 1
        one_round = []
        for g in range(names):
            members = [k for k in range(count) if k % names == g]
            one_round += [members[i : i + mode.batch] for i in range(0, len(members), mode.batch)]
    return one_round


class Bodies:
    """Request bodies for GRACE (webhook v4) and Alertmanager (API v2), built once."""

    def __init__(self, started: dt.datetime) -> None:
        self.starts = started
        self._grace: dict[tuple[str, tuple[int, ...], str], bytes] = {}
        self._am: dict[tuple[str, tuple[int, ...]], bytes] = {}

    def grace(self, mode: Mode, ks: Sequence[int], name: str = STORM) -> bytes:
        key = (mode.name, tuple(ks), name)
        if key not in self._grace:
            self._grace[key] = self._grace_payload(mode, ks, name).model_dump_json().encode()
        return self._grace[key]

    def _grace_payload(self, mode: Mode, ks: Sequence[int], name: str) -> AlertmanagerPayload:
        # The warm-up sends resolved alerts: GRACE stores and counts them, but
        # with no incident of their group active they open none, so they leave
        # the outbox empty and Slack's bucket full for the storm's first card.
        status = "resolved" if name == WARMUP else "firing"
        alerts = [self._grace_alert(k, name, status) for k in ks]
        first = alerts[0].labels
        # The warm-up is one group in both modes: one incident, one card.
        single = mode.name == "single" and name == STORM
        by = ("alertname", "instance") if single else ("alertname",)
        common = {key: first[key] for key in ("alertname", "severity")}
        if single:
            common = dict(first)
        return AlertmanagerPayload(
            groupKey=_group_key(first, by),
            status=status,
            receiver="grace",
            groupLabels={key: first[key] for key in by},
            commonLabels=common,
            externalURL=f"http://{HOST}:9093",
            alerts=alerts,
        )

    def _grace_alert(self, k: int, name: str, status: str) -> AlertmanagerAlert:
        return AlertmanagerAlert(
            status=status,
            labels=labels_of(k, name),
            annotations={"summary": f"storm alert {k}"},
            # Each alert has its own start, kept through every repeat, as
            # Alertmanager sends them.
            startsAt=self.starts + dt.timedelta(milliseconds=k),
            endsAt=self.starts if status == "resolved" else ZERO_TIME,
            generatorURL=f"http://{HOST}:9090/graph?g0.expr=storm{k}",
            fingerprint=fingerprint_of(labels_of(k, name)),
        )

    def alertmanager(self, ks: Sequence[int], name: str = STORM) -> bytes:
        key = (name, tuple(ks))
        if key not in self._am:
            # startsAt and endsAt are left out, so Alertmanager stamps them on receipt
            # (startsAt = now, endsAt = now + resolve_timeout): a storm that starts
            # now. A startsAt older than group_wait makes it notify at once instead.
            alerts = [
                {
                    "labels": labels_of(k, name),
                    "annotations": {"summary": f"storm alert {k}"},
                    "generatorURL": f"http://{HOST}:9090/graph?g0.expr=storm{k}",
                }
                for k in ks
            ]
            self._am[key] = json.dumps(alerts, separators=(",", ":")).encode()
        return self._am[key]


def plan_requests(
    mode: Mode, body: Callable[[Sequence[int], str], bytes], connections: int
) -> tuple[list[bytes], list[bytes], list[int]]:
    """(warm-up bodies, storm bodies, alerts per storm request). The warm-up is
    one group of its own (one incident), so it leaves the storm's cards alone;
    at least two requests per client connection."""
    groups = storm_groups(mode)
    storm = [body(ks, STORM) for _ in range(mode.repeats) for ks in groups]
    sizes = [len(ks) for _ in range(mode.repeats) for ks in groups]
    warm_groups = storm_groups(mode, WARMUP, count=mode.batch if mode.name == "batched" else 50)
    warmup_requests = max(400 if mode.name == "single" else 20, 2 * connections)
    warm = [body(warm_groups[i % len(warm_groups)], WARMUP) for i in range(warmup_requests)]
    return warm, storm, sizes
