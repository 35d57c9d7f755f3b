"""`SqliteStore`'s Slack outbox: writes queued for the worker, where each
incident's card is, and the rollups that stand in for cards in a storm."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from engine.models import Incident, canonical_json
from engine.records import Card, OutboxItem, Placement, Rollup, StormRule
from storage import outbox as outbox_rows
from storage import outbox_claims
from storage import reports as report_rows
from storage import rollups as rollup_rows
from storage.db import time_text
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
        """Every stream head due by `now`, the most urgent first, then the oldest
        (claimed or not: `claim_outbox` is what a worker sends)."""
        rows = await self._head_rows(outbox_rows.HEADS_DUE, time_text(now))
        items = [outbox_rows.item_from_row(row) for row in rows]
        return sorted(items, key=lambda item: (item.priority, item.id))

    async def claim_outbox(
        self,
        claimer: str,
        now: datetime,
        *,
        rate: float,
        burst: int,
        lease_s: float,
        limit: int,
    ) -> list[OutboxItem]:
        """Claim the lanes' next writes for `claimer`, each with a token of its lane's
        shared pace, in one write (storage/outbox_claims.py)."""
        outbox_claims.check_pace(rate, burst)
        if not lease_s > 0:
            raise ValueError(f"a claim's lease must be positive, not {lease_s}")
        if limit < 1:
            raise ValueError(f"a claim takes at least one write, not {limit}")
        until = now + timedelta(seconds=lease_s)
        # Read first: in a storm most rounds find every lane out of tokens, and a write
        # that claims nothing would still queue behind intake's (and, on PostgreSQL,
        # take the replicas' write lock). The write checks everything again.
        now_text = time_text(now)
        window = outbox_claims.window_s(rate, burst)
        params = (now_text, now_text, window, now.timestamp(), now_text)
        if not await self._head_rows(outbox_claims.CLAIMABLE, *params):
            return []

        def op(conn: sqlite3.Connection) -> list[OutboxItem]:
            return outbox_claims.claim(
                conn, claimer, now, rate=rate, burst=burst, until=until, limit=limit
            )

        return await self._write(op)

    async def outbox_next_due(
        self, now: datetime, *, rate: float | None = None, burst: int = 1
    ) -> datetime | None:
        """When the soonest head not claimable at `now` becomes claimable: its
        not_before, another claim running out, a 429's hold on its lane, and with
        `rate` and `burst` its lane's next token. None if there is none."""
        if rate is not None:
            outbox_claims.check_pace(rate, burst)
        rows = await self._head_rows(outbox_claims.HEAD_TIMES)
        return outbox_claims.next_due(rows, now, rate=rate, burst=burst)

    async def _head_rows(self, sql: str, *params: Any) -> list[Any]:
        """`sql`'s rows for the streams' heads (storage/outbox.py `HEAD_IDS`), read in
        one snapshot."""
        async with self._reading() as conn:
            return await report_rows.consistent(conn, lambda c: _heads_read(c, sql, params))

    async def release_outbox_claims(self, replica: str, now: datetime) -> int:
        """End every claim of `replica`'s workers at `now`; how many rows they held."""
        return await self._write(lambda conn: outbox_claims.release(conn, replica, now))

    async def outbox_waiting(self, coalesce_key: str) -> bool:
        """A write with this coalesce key is queued and no worker has claimed it yet."""
        return await self._fetchone(outbox_rows.WAITING, (coalesce_key,)) is not None

    async def mark_sent(
        self, item_id: int, slack_ts: str | None, *, claimer: str | None = None
    ) -> None:
        """Delivered; a delivered post_card also records the incident's card."""
        now_text = time_text(self._clock.now())
        await self.loop_commits.run(
            lambda conn: outbox_rows.mark_sent(conn, item_id, slack_ts, now_text, claimer=claimer)
        )

    async def retry_later(
        self,
        item_id: int,
        not_before: datetime,
        error: str,
        *,
        maybe_delivered: bool = False,
        claimer: str | None = None,
        hold_lane: bool = False,
    ) -> None:
        """Not delivered this time; the row stays its lane's head until `not_before`.
        `maybe_delivered`: Slack's answer was lost or a 5xx, so look before re-posting.
        `hold_lane`: Slack said 429, so nothing in the row's lane goes before then."""
        not_before_text, now_text = time_text(not_before), time_text(self._clock.now())

        def op(conn: sqlite3.Connection) -> None:
            outbox_rows.retry_later(
                conn,
                item_id,
                not_before_text,
                error,
                now_text,
                maybe_delivered=maybe_delivered,
                claimer=claimer,
            )
            if hold_lane:  # Slack's word on the lane holds, whoever reports it
                row = conn.execute("SELECT lane FROM outbox WHERE id = ?", (item_id,)).fetchone()
                outbox_claims.hold(conn, row["lane"], not_before)

        await self._write(op)

    async def drop(self, item_id: int, error: str, *, claimer: str | None = None) -> None:
        """Slack refused it for good: kept for the record, no longer in line."""
        now_text = time_text(self._clock.now())
        await self._write(
            lambda conn: outbox_rows.drop(conn, item_id, error, now_text, claimer=claimer)
        )

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


async def _heads_read(conn: Any, sql: str, params: tuple[Any, ...]) -> list[Any]:
    """The heads' ids, then `sql`'s rows for them, a chunk of ids at a time."""
    heads = [int(row[0]) for row in await report_rows.fetch_all(conn, outbox_rows.HEAD_IDS)]
    found: list[Any] = []
    for chunk_sql, ids in outbox_rows.by_heads(sql, heads):
        found += await report_rows.fetch_all(conn, chunk_sql, (*ids, *params))
    return found
