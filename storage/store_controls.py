"""`SqliteStore`'s hands-off controls: targets in safe hold, and the kill switch."""

from __future__ import annotations

from engine.models import Pause, Target, TargetHold
from storage import controls
from storage import holds as hold_rows
from storage.store_core import StoreCore


class ControlsMixin(StoreCore):
    """What stops GRACE acting: a target held after a failed rollback, or a pause."""

    async def target_hold(self, target: Target) -> TargetHold | None:
        row = await self._fetchone(
            f"{hold_rows.ACTIVE_SELECT} AND target_executor = ? AND target_name = ? ORDER BY id",
            (target.executor, target.name),
        )
        return None if row is None else hold_rows.from_row(row)

    async def holds(self) -> list[TargetHold]:
        return [
            hold_rows.from_row(row)
            for row in await self._fetchall(f"{hold_rows.ACTIVE_SELECT} ORDER BY id")
        ]

    async def clear_holds(self, name: str, *, actor: str) -> list[TargetHold]:
        now = self._clock.now()
        return await self._write(lambda conn: hold_rows.clear(conn, name, actor, now))

    # -- the kill switch -------------------------------------------------

    async def paused(self) -> Pause | None:
        async with self._reading() as conn:
            cursor = await conn.execute(
                "SELECT value FROM controls WHERE name = ?", (controls.PAUSE,)
            )
            row = await cursor.fetchone()
        return None if row is None else Pause.model_validate_json(row[0])

    async def set_pause(self, pause: Pause | None, *, actor: str) -> None:
        now = self._clock.now()
        await self._write(lambda conn: controls.write_pause(conn, pause, actor, now))
