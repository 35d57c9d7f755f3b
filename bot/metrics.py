"""Prometheus metrics, exact under load: each counter moves only after the
thing it counts is durable, so a storm can be audited from outside."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from engine.models import IncidentState

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """One registry per GRACE, so two in one process (tests) never share counts."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.alerts_received = Counter(
            "grace_alerts_received",
            "Alerts stored, by source.",
            ["source"],
            registry=self.registry,
        )
        self.incidents = Counter(
            "grace_incidents",
            "Incidents that entered each state.",
            ["state"],
            registry=self.registry,
        )
        self.slack_requests = Counter(
            "grace_slack_requests",
            "Slack Web API writes, by method and outcome.",
            ["method", "outcome"],
            registry=self.registry,
        )
        self.outbox_pending = Gauge(
            "grace_outbox_pending",
            "Slack writes stored but not yet delivered.",
            registry=self.registry,
        )

    def alerts(self, source: str, count: int) -> None:
        if count:
            self.alerts_received.labels(source=source).inc(count)

    def incident_entered(self, state: IncidentState) -> None:
        self.incidents.labels(state=state.value).inc()

    def slack_request(self, method: str, outcome: str) -> None:
        self.slack_requests.labels(method=method, outcome=outcome).inc()

    def render(self, outbox_pending: int) -> bytes:
        self.outbox_pending.set(outbox_pending)
        return generate_latest(self.registry)
