"""Learning that changes what GRACE does: competing playbooks ranked by their record."""

from __future__ import annotations

import sqlite3

from bot.demo import CHANNEL
from engine.models import IncidentState as S

# Two playbooks for one diagnosis, both tier 1: the first in the catalog never
# passes its verification, the second does.
COMPETING = """
playbooks:
  - id: wal-checkpoint-strict
    title: Checkpoint the WAL and expect a billion rows
    treats: [sqlite_wal_too_large]
    tier: 1
    target: {executor: sqlite, from_label: db_path}
    steps: [{action: wal_checkpoint, params: {mode: TRUNCATE}}]
    checks:
      - check: scalar_at_least
        params: {query: "SELECT count(*) FROM events", value: 1000000000}
  - id: wal-checkpoint-now
    title: Checkpoint the WAL at once
    treats: [sqlite_wal_too_large]
    tier: 1
    target: {executor: sqlite, from_label: db_path}
    steps: [{action: wal_checkpoint, params: {mode: TRUNCATE}}]
    checks: [{check: wal_size_at_most, params: {bytes: 1048576}}, {check: integrity_ok}]
"""


def _field(card, name: str) -> str:
    for block in card.blocks:
        for field in block.get("fields", []):
            title, _, value = field["text"].partition("\n")
            if title == f"*{name}*":
                return value
    raise AssertionError(f"no {name} field on the card")


async def test_competing_playbooks_are_ranked_by_their_record_and_the_card_says_why(
    make_harness,
):
    h = await make_harness(playbooks=COMPETING)

    async def heal(db_name: str):
        """An integration's alert about another database: a new incident, healed at once."""
        db = h.app_db.with_name(db_name)
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY)")
        before = len(h.cards())
        await h.integration_alert(f"[FIRING:1] SQLiteWALTooLarge db_path={db} severity=warning")
        card = await h.slack.wait_for(
            lambda: h.cards()[before] if len(h.cards()) > before else None
        )
        incident = await h.finished(card)
        return incident, h.slack.message(CHANNEL, card.ts)

    # None has run (the built-in competes too): the catalog's order decides.
    first, card = await heal("first.db")
    assert first.plan.playbook_id == "wal-checkpoint-strict" and first.state is S.ROLLED_BACK
    assert _field(card, "Why this playbook") == (
        "`wal-checkpoint-strict`: never run yet. Ranked above `wal-checkpoint-now`: never run"
        " yet; `sqlite-wal-checkpoint`: never run yet"
    )

    # All are 0% at worst now; those that have not failed get their chance, in order.
    second, card = await heal("second.db")
    assert second.plan.playbook_id == "wal-checkpoint-now" and second.state is S.RESOLVED
    why = _field(card, "Why this playbook")
    assert why.startswith("`wal-checkpoint-now`: never run yet. Ranked above ")
    assert "`wal-checkpoint-strict`: 0/1 succeeded, 0% at worst, median " in why

    # One success is evidence (21% at worst); a failure and no run are none.
    third, card = await heal("third.db")
    assert third.plan.playbook_id == "wal-checkpoint-now" and third.state is S.RESOLVED
    why = _field(card, "Why this playbook")
    assert why.startswith("`wal-checkpoint-now`: 1/1 succeeded, 21% at worst, median ")
    assert why.endswith(
        "Ranked above `sqlite-wal-checkpoint`: never run yet;"
        " `wal-checkpoint-strict`: 0/1 succeeded, 0% at worst, median 0 s"
    )
