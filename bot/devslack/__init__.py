"""DevSlack: a local stand-in for the Slack Web API and for Slack's deliveries to an app.

It is a real aiohttp server on loopback. The bot talks to it with the real
``slack_sdk.AsyncWebClient(base_url=devslack.api_url)``, and it delivers events and
interactions to the app's ``/slack/events`` URL signed exactly as Slack signs them,
or, once `use_socket_mode()` issued an app-level token, over the app's Socket Mode
WebSocket. It refuses what Slack refuses (auth, token types, block limits, unknown
channels and messages, stale triggers, opt-in rate limits) so that what works here
works against Slack.

`web_api` serves the Web API and keeps what it stores, its methods in `chat`,
`history`, `people`, `views`, `files` and `response_urls`, its answers and
refusals in `calls`; `deliveries` adds the way from Slack to the app, and
`workspace` holds DevSlack, which adds the people whose requests reach the
app and their App Homes (`home`); `socket` is Slack's side of Socket Mode and
`page` the page `grace devslack` serves. `message` is a message as it stores
one, `blockkit` holds Slack's Block Kit limits and `render` shows messages as
a person reads them.
"""

from bot.devslack.blockkit import MAX_MESSAGE_BLOCKS, MAX_VIEW_BLOCKS, block_errors
from bot.devslack.calls import ApiCall, SlackError
from bot.devslack.deliveries import Delivery
from bot.devslack.message import Message
from bot.devslack.render import RULE
from bot.devslack.workspace import DevSlack

__all__ = [
    "MAX_MESSAGE_BLOCKS",
    "MAX_VIEW_BLOCKS",
    "RULE",
    "ApiCall",
    "Delivery",
    "DevSlack",
    "Message",
    "SlackError",
    "block_errors",
]
