"""The engine's Notifier, spoken in Slack Web API calls."""

from __future__ import annotations

from slack_sdk.web.async_client import AsyncWebClient

from bot.blocks import card_blocks, card_text, story_text
from engine.models import Incident
from engine.story import StoryEvent


class SlackNotifier:
    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client

    async def post_card(self, incident: Incident) -> str:
        response = await self.client.chat_postMessage(
            channel=_channel(incident), text=card_text(incident), blocks=card_blocks(incident)
        )
        return str(response["ts"])

    async def update_card(self, incident: Incident) -> None:
        await self.client.chat_update(
            channel=_channel(incident),
            ts=str(incident.card_ts),
            text=card_text(incident),
            blocks=card_blocks(incident),
        )

    async def tell_thread(self, incident: Incident, event: StoryEvent) -> None:
        await self.client.chat_postMessage(
            channel=_channel(incident), thread_ts=incident.card_ts, text=story_text(event)
        )

    async def tell_user(self, channel: str, user: str, text: str) -> None:
        await self.client.chat_postEphemeral(channel=channel, user=user, text=text)


def _channel(incident: Incident) -> str:
    if incident.channel is None:
        raise ValueError(f"incident {incident.id} has no channel to speak in")
    return incident.channel
