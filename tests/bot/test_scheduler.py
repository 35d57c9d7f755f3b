"""The scheduler runs housekeeping at start and survives a chore that fails."""

from __future__ import annotations

import asyncio

from bot.scheduler import Scheduler


class QuietHealer:
    async def tick(self) -> None:
        return None


async def test_chores_run_at_start_and_a_failing_one_does_not_stop_the_others() -> None:
    ran = asyncio.Event()

    async def broken() -> None:
        raise OSError("disk gone")

    async def purge() -> None:
        ran.set()

    scheduler = Scheduler(QuietHealer(), every_s=60, chores=[broken, purge])  # type: ignore[arg-type]
    scheduler.start()
    try:
        async with asyncio.timeout(5):
            await ran.wait()
    finally:
        await scheduler.stop()
