"""A storm rollup's Show menus: the picked incident gets its card, its story under it.

Showing is idempotent (a card is queued once), so the click needs no inbox:
the card and its story are committed to the outbox before Slack is answered,
and a click Slack sends again finds the card queued.
"""

from __future__ import annotations

import re
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.response import BoltResponse

from bot.ids import ActionId, slack_id_at
from bot.listeners.errors import refuse
from bot.notifier import OutboxNotifier
from engine.storage_ports import IncidentReads

SHOW = re.compile(rf"^{re.escape(ActionId.SHOW_CARD)}:\d{{1,2}}$")
_ID = re.compile(r"[1-9][0-9]{0,17}")


def register(app: AsyncApp, store: IncidentReads, notifier: OutboxNotifier) -> None:
    async def on_show(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]
    ) -> BoltResponse | None:
        user = slack_id_at(body, "user", "user", "id")
        channel = slack_id_at(body, "channel", "channel", "id")
        if user is None or channel is None:
            return refuse("a pick needs Slack's user and channel")
        picked = str((action.get("selected_option") or {}).get("value", ""))
        incident = await store.get_incident(int(picked)) if _ID.fullmatch(picked) else None
        if incident is None or incident.channel != channel:
            await notifier.tell_user(channel, user, "That is not an incident of this channel.")
        elif not await notifier.show_card(incident):
            await notifier.tell_user(
                channel, user, f"Incident #{incident.id} has its own card already, below."
            )
        await ack()
        return None

    app.action(SHOW)(on_show)
