"""`SqliteStore`'s learning: outcomes, playbook stats, tiers and tier proposals."""

from __future__ import annotations

from typing import Any

from engine.autonomy import TierChange, TierProposal
from engine.models import Outcome, PlaybookStats
from storage import outcomes as outcome_rows
from storage import proposals as proposal_rows
from storage import tiers as tier_rows
from storage.rows import MEDIAN_WINDOW, STATS_RECENT, STATS_TOTALS, stats_from
from storage.store_core import StoreCore


class LearningMixin(StoreCore):
    """What GRACE learns from each heal, and the earned autonomy it leads to."""

    async def record_outcome(self, outcome: Outcome) -> PlaybookStats:
        """Append the heal and update the playbook's pre-aggregated stats, atomically."""
        now = self._clock.now()
        return await self._write(lambda conn: outcome_rows.record_heal(conn, outcome, now))

    async def playbook_tiers(self) -> dict[str, TierChange]:
        """Playbooks whose tier was changed from the catalog's, by id."""
        return {
            row["playbook_id"]: tier_rows.from_row(row)
            for row in await self._fetchall(tier_rows.ALL)
        }

    async def change_tier(self, change: TierChange) -> None:
        """A playbook's new tier, with its audit row, in one transaction (an open
        proposal for it is dismissed there too: it was about the old tier)."""
        await self._write(lambda conn: proposal_rows.change_tier(conn, change))

    async def propose_tier(self, proposal: TierProposal, *, quiet_runs: int) -> TierProposal | None:
        return await self._write(lambda conn: proposal_rows.propose(conn, proposal, quiet_runs))

    async def open_proposals(self) -> list[TierProposal]:
        return [proposal_rows.from_row(row) for row in await self._fetchall(proposal_rows.OPEN)]

    async def tier_proposal(self, proposal_id: int) -> TierProposal | None:
        row = await self._fetchone(proposal_rows.BY_ID, (proposal_id,))
        return None if row is None else proposal_rows.from_row(row)

    async def decide_proposal(self, decided: TierProposal, change: TierChange | None) -> bool:
        return await self._write(lambda conn: proposal_rows.decide(conn, decided, change))

    async def playbook_stats(self, playbook_id: str) -> PlaybookStats:
        # Both queries in one read transaction, so totals and median agree.
        async with self._reading() as conn:
            await conn.execute("BEGIN")
            try:
                async with conn.execute(STATS_TOTALS, (playbook_id,)) as cursor:
                    totals = await cursor.fetchone()
                recent: list[Any] = []
                if totals is not None:
                    async with conn.execute(STATS_RECENT, (playbook_id, MEDIAN_WINDOW)) as cursor:
                        recent = list(await cursor.fetchall())
            finally:
                await conn.execute("COMMIT")
        return stats_from(playbook_id, totals, recent)
