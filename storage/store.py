"""Every storage port (`engine.storage_ports.GraceStore`) on SQLite: group-committed
writes, aiosqlite reads. GRACE opens it through `storage.factory.open_store`.

`StoreParts` is every concern combined, each in its own module over the row
modules it uses, all standing on `StoreCore` (storage/store_core.py: how a
write and a read are made). `SqliteStore` is those parts over `SqliteCore`;
the PostgreSQL store (storage/pg_store.py) is the same parts over its own core.
"""

from __future__ import annotations

from engine.records import OutboxItem
from storage.rows import MEDIAN_WINDOW
from storage.store_audit import AuditMixin
from storage.store_breakers import BreakersMixin
from storage.store_controls import ControlsMixin
from storage.store_core import SqliteCore
from storage.store_execution import ExecutionMixin
from storage.store_inbox import InboxMixin
from storage.store_incidents import IncidentsMixin
from storage.store_learning import LearningMixin
from storage.store_outbox import OutboxMixin
from storage.store_replicas import ReplicasMixin
from storage.store_reports import ReportsMixin
from storage.store_weekly import WeeklyMixin

__all__ = ["MEDIAN_WINDOW", "OutboxItem", "SqliteStore", "StoreParts"]


class StoreParts(
    IncidentsMixin,
    ControlsMixin,
    ExecutionMixin,
    LearningMixin,
    AuditMixin,
    OutboxMixin,
    InboxMixin,
    ReportsMixin,
    WeeklyMixin,
    BreakersMixin,
    ReplicasMixin,
):
    """Every store concern, on whichever core a store is built over."""


class SqliteStore(StoreParts, SqliteCore):
    """The embedded store; `SqliteStore.open(path, clock)` is the way in."""
