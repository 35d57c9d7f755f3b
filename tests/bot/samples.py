"""One incident and its parts, shaped as the engine makes them, for rendering tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from slack_sdk.models.blocks import Block

from engine.models import (
    Alert,
    Diagnosis,
    Incident,
    IncidentState,
    Plan,
    PlannedCheck,
    PlannedStep,
    Snapshot,
    Target,
)

NOW = datetime(2026, 11, 24, tzinfo=UTC)
HOSTILE = "<!channel> <@U0BOSS> <https://evil.example|click me> & more"
PLAN = Plan(
    playbook_id="p",
    title="Fix <it>",
    tier=2,
    target=Target(executor="sqlite", name="/db/a.db"),
    steps=(PlannedStep(action="wal_checkpoint", params={"mode": "TRUNCATE"}, timeout_s=60),),
    checks=(PlannedCheck(check="integrity_ok"),),
)
SNAPSHOT = Snapshot(
    incident_id=1, target=PLAN.target, location="/s/1.sqlite", size_bytes=3 * 2**20, taken_at=NOW
)


def incident(state=IncidentState.AWAITING_APPROVAL, explanation=HOSTILE, reason=None) -> Incident:
    alert = Alert(
        source="slack",
        source_key="k",
        name="SQLiteWALTooLarge",
        text=HOSTILE,
        labels={"db_path": "/db/a.db"},
        received_at=NOW,
        reporter="U0MON",
    )
    return Incident(
        id=7,
        state=state,
        fingerprint=alert.fingerprint,
        alert=alert,
        channel="C1",
        diagnosis=Diagnosis(pattern_id="x", problem="y", explanation=explanation),
        plan=PLAN,
        reason=reason,
        created_at=NOW,
        updated_at=NOW,
    )


def as_json(blocks: list[Block]) -> str:
    return json.dumps([b.to_dict() for b in blocks], ensure_ascii=False)
