"""bot/'s one door into the engine, besides engine.models and engine.ports.

Everything bot/ needs of the engine is named here: building the Healer from
config and ports, the executor and webhook plugin registries, reading the
catalog, parsing what a source sends, and the types bot/ renders (story events,
reports, tier changes, readiness). The modules behind these names may move or
split without bot/ noticing; a name missing here is one bot/ should not need.
"""

from __future__ import annotations

from engine.approval import ApprovalPolicy
from engine.autonomy import Autonomy, ProposalState, TierChange, TierProposal, tier_of
from engine.availability import Readiness, survey
from engine.catalog import Catalog, CatalogError, PlaybookSpec, load_catalog
from engine.clock import SystemClock
from engine.earned import Decided, Verdict
from engine.evidence import lower_bound, record
from engine.executors.plugin import Context, executor_plugins, specs
from engine.healer import Healer
from engine.intake.errors import MAX_BODY_BYTES, IntakeError
from engine.intake.limits import fresh_key, storable, storable_json
from engine.intake.slack import parse_slack_message
from engine.intake.slack_people import PERSON
from engine.intake.sources import (
    Forbidden,
    Request,
    Unauthorized,
    Unavailable,
    WebhookSource,
    webhook_plugins,
)
from engine.proposal import DryRun, Reading, read
from engine.resilience import Policy, Resilience
from engine.routing import Route, router
from engine.stats import PERIODS, PeriodStats, StatsReport
from engine.story import (
    Approved,
    BreakerChanged,
    Cleared,
    Demoted,
    Expired,
    Held,
    HoldCleared,
    Interrupted,
    Learned,
    NeedsHuman,
    Paused,
    Planned,
    PromotionProposed,
    Rejected,
    Reminder,
    RestoreFailed,
    Resumed,
    RolledBack,
    SnapshotTaken,
    StepFinished,
    StoryEvent,
    Verified,
)
from engine.weekly import (
    Period,
    ReportSchedule,
    WeeklyReport,
    day_slices,
    due_period,
    last_days,
)

__all__ = [
    "MAX_BODY_BYTES",
    "PERIODS",
    "PERSON",
    "ApprovalPolicy",
    "Approved",
    "Autonomy",
    "BreakerChanged",
    "Catalog",
    "CatalogError",
    "Cleared",
    "Context",
    "Decided",
    "Demoted",
    "DryRun",
    "Expired",
    "Forbidden",
    "Healer",
    "Held",
    "HoldCleared",
    "IntakeError",
    "Interrupted",
    "Learned",
    "NeedsHuman",
    "Paused",
    "Period",
    "PeriodStats",
    "Planned",
    "PlaybookSpec",
    "Policy",
    "PromotionProposed",
    "ProposalState",
    "Readiness",
    "Reading",
    "Rejected",
    "Reminder",
    "ReportSchedule",
    "Request",
    "Resilience",
    "RestoreFailed",
    "Resumed",
    "RolledBack",
    "Route",
    "SnapshotTaken",
    "StatsReport",
    "StepFinished",
    "StoryEvent",
    "SystemClock",
    "TierChange",
    "TierProposal",
    "Unauthorized",
    "Unavailable",
    "Verdict",
    "Verified",
    "WebhookSource",
    "WeeklyReport",
    "day_slices",
    "due_period",
    "executor_plugins",
    "fresh_key",
    "last_days",
    "load_catalog",
    "lower_bound",
    "parse_slack_message",
    "read",
    "record",
    "router",
    "specs",
    "storable",
    "storable_json",
    "survey",
    "tier_of",
    "webhook_plugins",
]
