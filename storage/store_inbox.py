"""`SqliteStore`'s inbox: Slack deliveries committed before Slack is answered."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from engine.models import canonical_json
from engine.records import Delivery
from storage import inbox as inbox_rows
from storage.db import time_text
from storage.store_core import StoreCore


class InboxMixin(StoreCore):
    """Each delivery accepted once, handled once, and found again after a crash."""

    async def accept_delivery(self, key: str, kind: str, payload: Mapping[str, Any]) -> int | None:
        """Commit a delivery before Slack is answered; None when its key was seen.
        On the loop's own connection when it can: the ack waits for this commit."""
        text, now = canonical_json(dict(payload)), time_text(self._clock.now())
        return await self.loop_commits.run(
            lambda conn: inbox_rows.accept(conn, key, kind, text, now)
        )

    async def delivery_handled(self, delivery_id: int) -> None:
        now = time_text(self._clock.now())
        await self._write(lambda conn: inbox_rows.handled(conn, delivery_id, now))

    async def unhandled_deliveries(self, before: datetime | None = None) -> list[Delivery]:
        """Deliveries accepted but not handled (GRACE died in between), oldest first;
        only those accepted before `before`, when given."""
        if before is None:
            rows = await self._fetchall(inbox_rows.UNHANDLED)
        else:
            rows = await self._fetchall(inbox_rows.UNHANDLED_BEFORE, (time_text(before),))
        return [inbox_rows.delivery_from_row(r) for r in rows]

    async def forget_deliveries(self, before: datetime) -> None:
        """Drop handled deliveries older than `before`: their keys only guard retries."""
        text = time_text(before)
        await self._write(lambda conn: conn.execute(inbox_rows.HANDLED_BEFORE, (text,)))

    async def card_queued(self, incident_id: int) -> bool:
        """Whether the incident's card was ever queued (sent or not): a card is
        posted once, and GRACE may have died between an incident's move and it."""
        return await self._fetchone(inbox_rows.CARD_QUEUED, (incident_id,)) is not None
