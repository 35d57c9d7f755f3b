"""`SqliteStore`'s Slack outbox: writes queued for the worker, where each
incident's card is, and the rollups that stand in for cards in a storm."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from engine.models import Incident, canonical_json
from engine.records import Card, OutboxItem, Placement, Rollup, StormRule
from storage import outbox as outbox_rows
from storage import reports as report_rows
from storage import rollups as rollup_rows
from storage.db import parse_time, time_text
from storage.store_core import StoreCore


class OutboxMixin(StoreCore):
    """Slack writes in line, lane by lane, until each is sent or dropped."""

    async def enqueue(
        self,
        channel: str,
        kind: str,
        payload: Mapping[str, Any],
        *,
        incident_id: int | None = None,
        user_id: str | None = None,
        coalesce_key: str | None = None,
        once: bool = False,
        priority: int = 10,
        unless_rolled_up: bool = False,
    ) -> int | None:
        """Store a Slack write for the worker; returns its outbox id (None: not
        queued, its incident being shown only as a rollup line, if so asked).

        With a coalesce key, a pending row with that key that is not its
        lane's head (which may be in flight) takes the new payload in place,
        keeping its id and so its place in line; with `once` too, a write with
        that key ever queued is that write, and nothing is added. An ephemeral
        identical to one not yet delivered to that person is that one.
        """
        payload_text = canonical_json(dict(payload))  # not JSON: fails here, not in the batch
        now_text = time_text(self._clock.now())
        return await self._write(
            lambda conn: outbox_rows.enqueue(
                conn,
                channel=channel,
                kind=kind,
                payload_text=payload_text,
                incident_id=incident_id,
                user_id=user_id,
                coalesce_key=coalesce_key,
                now_text=now_text,
                once=once,
                priority=priority,
                unless_rolled_up=unless_rolled_up,
            )
        )

    async def outbox_heads(self, now: datetime) -> list[OutboxItem]:
        """Every stream head due by `now`, the most urgent first, then the oldest."""
        rows = await self._fetchall(outbox_rows.HEADS_DUE, (time_text(now),))
        return [outbox_rows.item_from_row(row) for row in rows]

    async def outbox_next_due(self, now: datetime) -> datetime | None:
        """When the earliest lane head not due by `now` becomes due; None if there is none
        (the heads due by `now` are `outbox_heads(now)`)."""
        row = await self._fetchone(outbox_rows.NEXT_DUE, (time_text(now),))
        return None if row is None or row[0] is None else parse_time(row[0])

    async def begin_send(self, item_id: int) -> None:
        """Committed before the Slack call, so a crash after it is looked up, not re-sent."""
        await self.loop_commits.run(lambda conn: outbox_rows.begin_send(conn, item_id))

    async def mark_sent(self, item_id: int, slack_ts: str | None) -> None:
        """Delivered; a delivered post_card also records the incident's card."""
        now_text = time_text(self._clock.now())
        await self.loop_commits.run(
            lambda conn: outbox_rows.mark_sent(conn, item_id, slack_ts, now_text)
        )

    async def retry_later(
        self, item_id: int, not_before: datetime, error: str, *, maybe_delivered: bool = False
    ) -> None:
        """Not delivered this time; the row stays its lane's head until `not_before`.
        `maybe_delivered`: Slack's answer was lost or a 5xx, so look before re-posting."""
        not_before_text = time_text(not_before)
        await self._write(
            lambda conn: outbox_rows.retry_later(
                conn, item_id, not_before_text, error, maybe_delivered=maybe_delivered
            )
        )

    async def drop(self, item_id: int, error: str) -> None:
        """Slack refused it for good: kept for the record, no longer in line."""
        await self._write(lambda conn: outbox_rows.drop(conn, item_id, error))

    async def outbox_pending(self) -> int:
        row = await self._fetchone(outbox_rows.PENDING_COUNT)
        return 0 if row is None else int(row[0])

    async def card_of(self, incident_id: int) -> Card | None:
        """Where the incident's live card is, once it was delivered."""
        row = await self._fetchone(outbox_rows.CARD_OF, (incident_id,))
        if row is None:
            return None
        return Card(str(row["channel"]), str(row["card_ts"]), row["thread_ts"])

    async def sent_ts(self, item_id: int) -> str | None:
        """The Slack ts an outbox row became, once it was sent."""
        row = await self._fetchone(
            "SELECT slack_ts FROM outbox WHERE id = ? AND state = 'sent'", (item_id,)
        )
        return None if row is None else row[0]

    # -- storms: rollups instead of cards that would wait ---------------------

    async def place_card(
        self, incident: Incident, *, priority: int, needs_someone: bool, rule: StormRule
    ) -> Placement:
        """Queue the incident's card, or show it in its channel's rollup."""
        now_text = time_text(self._clock.now())
        return await self._write(
            lambda conn: rollup_rows.place_card(
                conn,
                incident,
                priority=priority,
                needs_someone=needs_someone,
                rule=rule,
                now_text=now_text,
            )
        )

    async def promote(
        self, incident_id: int, *, priority: int, story_priority: int, story_text: str
    ) -> bool:
        """A card of its own for an incident shown in a rollup, with its story so far;
        False when its card was queued already."""
        now_text = time_text(self._clock.now())
        return await self._write(
            lambda conn: rollup_rows.promote(
                conn,
                incident_id,
                priority=priority,
                story_priority=story_priority,
                story_text=story_text,
                now_text=now_text,
            )
        )

    async def refresh_rollup_of(self, incident_id: int) -> bool:
        """Redraw the rollup line of an incident shown only there; False if it has a card."""
        now_text = time_text(self._clock.now())
        return await self._write(lambda conn: rollup_rows.refresh_of(conn, incident_id, now_text))

    async def rolled_up_incidents(self) -> dict[int, int]:
        """Every incident shown only as a rollup line, and the rollup it is in."""
        rows = await self._fetchall(rollup_rows.ROLLED_UP_ALL)
        return {int(row["id"]): int(row["rollup_id"]) for row in rows}

    async def rollup(self, rollup_id: int) -> Rollup | None:
        """A rollup and its incidents, as of one moment."""
        async with self._reading() as conn:
            return await report_rows.consistent(conn, lambda c: rollup_rows.read(c, rollup_id))
