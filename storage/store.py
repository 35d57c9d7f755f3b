"""Every storage port (`engine.storage_ports.GraceStore`) on SQLite: group-committed
writes, aiosqlite reads. GRACE opens it through `storage.factory.open_store`.

`SqliteStore` is its parts combined, each in its own module over the row
modules it uses, all standing on `StoreCore` (storage/store_core.py: the
connections, the group writer, and how a write and a read are made).
"""

from __future__ import annotations

from engine.records import OutboxItem
from storage.rows import MEDIAN_WINDOW
from storage.store_audit import AuditMixin
from storage.store_controls import ControlsMixin
from storage.store_execution import ExecutionMixin
from storage.store_inbox import InboxMixin
from storage.store_incidents import IncidentsMixin
from storage.store_learning import LearningMixin
from storage.store_outbox import OutboxMixin
from storage.store_reports import ReportsMixin
from storage.store_weekly import WeeklyMixin

__all__ = ["MEDIAN_WINDOW", "OutboxItem", "SqliteStore"]


class SqliteStore(
    IncidentsMixin,
    ControlsMixin,
    ExecutionMixin,
    LearningMixin,
    AuditMixin,
    OutboxMixin,
    InboxMixin,
    ReportsMixin,
    WeeklyMixin,
):
    """The embedded store; `SqliteStore.open(path, clock)` is the way in."""
