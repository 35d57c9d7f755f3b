"""DevSlack: the Web API stand-in plus the workspace around it, the people whose messages,
clicks, modal submissions and slash commands reach the app as Slack's signed requests,
or in Socket Mode as envelopes over the app's WebSocket (see `deliveries`)."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiohttp import web

from bot.devslack.blockkit import buttons
from bot.devslack.deliveries import DeliveringApi, Delivery
from bot.devslack.home import HomeTabs
from bot.devslack.message import Message
from bot.devslack.page import Page


class DevSlack(DeliveringApi):
    """Slack Web API + Events/Interactivity delivery, in process, for demos and tests.

    A subclass, not a wrapper: what people post lands in the Web API's store, nothing forwarded.
    """

    def __init__(self, **workspace: Any) -> None:
        """The workspace is the Web API's (see WebApi); each person gets an App Home."""
        super().__init__(**workspace)
        self.home = HomeTabs(self)
        self.page = Page(self)

    # ------------------------------------------------------------ App Home, the page, triggers

    def _add_routes(self, app: web.Application) -> None:
        super()._add_routes(app)
        self.page.add_routes(app)

    def _methods(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {**super()._methods(), "views.publish": self._views_publish}

    def _views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.home.publish(args)

    @property
    def homes(self) -> dict[str, dict[str, Any]]:
        """Each person's App Home as Slack shows it: user id -> the view last published."""
        return self.home.homes

    def issue_trigger_id(self) -> str:
        """A trigger_id as Slack hands out with an interaction; valid for 3 s, once."""
        return self._views.issue_trigger()

    # ------------------------------------------------------------ what people do

    async def post_message_as(
        self,
        channel: str,
        text: str = "",
        *,
        user: str | None = None,
        bot_id: str | None = None,
        username: str | None = None,
        blocks: list[dict[str, Any]] | None = None,
        attachments: list[dict[str, Any]] | None = None,
        subtype: str | None = None,
        thread_ts: str | None = None,
    ) -> Delivery:
        """A person or an integration posts in a channel: stored, then delivered as an event."""
        if channel not in self.channels:
            raise LookupError(f"unknown channel {channel!r}; known: {sorted(self.channels)}")
        if user is None and bot_id is None:
            raise ValueError("post_message_as needs user= or bot_id=")
        if thread_ts is not None and (channel, thread_ts) not in self._by_ts:
            raise LookupError(f"no message {thread_ts} in {channel} to reply to")
        if bot_id is not None and user is None and subtype is None:
            subtype = "bot_message"  # integrations (webhooks) post without a user
        msg = self._store(
            Message(
                channel,
                self._next_ts(),
                text,
                list(blocks or []),
                list(attachments or []),
                user,
                bot_id,
                username,
                subtype,
                thread_ts,
            )
        )
        event: dict[str, Any] = {"type": "message", **({"subtype": subtype} if subtype else {})}
        if user is not None:
            event["user"] = user
        if bot_id is not None:
            event["bot_id"] = bot_id
        if username is not None:
            event["username"] = username
        event.update(
            text=text,
            ts=msg.ts,
            channel=channel,
            event_ts=msg.ts,
            channel_type="channel",
            team=self.team_id,
        )
        if user is not None and bot_id is None:
            event["client_msg_id"] = str(uuid.uuid4())
        if thread_ts:
            event["thread_ts"] = thread_ts
        if blocks:
            event["blocks"] = blocks
        if attachments:
            event["attachments"] = attachments
        return await self.deliver_event(event)

    def _user_obj(self, user: str) -> dict[str, Any]:
        name = self.users.get(user, user.lower())
        return {"id": user, "username": name, "name": name, "team_id": self.team_id}

    def _interaction(self, kind: str, user: str, **rest: Any) -> dict[str, Any]:
        return {
            "type": kind,
            "user": self._user_obj(user),
            "api_app_id": self.app_id,
            "token": self.verification_token,
            "trigger_id": self.issue_trigger_id(),
            "team": {"id": self.team_id, "domain": self.team_domain},
            "enterprise": None,
            "is_enterprise_install": False,
            **rest,
        }

    async def click(self, channel: str, ts: str, action_id: str, *, user: str) -> Delivery:
        """A person clicks a button on the message as it is now (stale cards cannot be clicked)."""
        msg = self.message(channel, ts)
        found = _find_button(msg.blocks, action_id)
        if found is None:
            present = [b[1].get("action_id") for b in buttons(msg.blocks)]
            raise LookupError(
                f"message {ts} in {channel} has no button {action_id!r} "
                f"(its buttons now: {present or 'none'})"
            )
        block_id, button = found
        action = {"action_id": action_id, "block_id": block_id, "text": button["text"]}
        action.update({k: button[k] for k in ("value", "style") if k in button})
        action.update(type="button", action_ts=self._next_ts())
        return await self._message_action(msg, action, user)

    async def pick(self, channel: str, ts: str, value: str, *, user: str) -> Delivery:
        """A person picks the option `value` in a static select menu of the message."""
        msg = self.message(channel, ts)
        found = _find_option(msg.blocks, value)
        if found is None:
            raise LookupError(f"message {ts} in {channel} offers no option {value!r}")
        block_id, menu, option = found
        action = {
            "type": "static_select",
            "action_id": menu["action_id"],
            "block_id": block_id,
            "selected_option": option,
            "action_ts": self._next_ts(),
        }
        if "placeholder" in menu:
            action["placeholder"] = menu["placeholder"]
        return await self._message_action(msg, action, user)

    async def _message_action(self, msg: Message, action: dict[str, Any], user: str) -> Delivery:
        """block_actions for an action on a channel message, as Slack sends it."""
        channel, ts = msg.channel, msg.ts
        container = {
            "type": "message",
            "message_ts": ts,
            "channel_id": channel,
            "is_ephemeral": False,
        }
        if msg.thread_ts:
            container["thread_ts"] = msg.thread_ts
        payload = self._interaction(
            "block_actions",
            user,
            container=container,
            channel={"id": channel, "name": self.channels[channel]},
            message=msg.to_slack(self.team_id),
            state={"values": {}},
            response_url=self._new_response_url(channel, user, ts),
            actions=[action],
        )
        return await self._post_form({"payload": json.dumps(payload)})

    async def message_shortcut(
        self, channel: str, ts: str, callback_id: str, *, user: str
    ) -> Delivery:
        """A person runs a message shortcut from a message's menu (a message_action)."""
        msg = self.message(channel, ts)
        payload = self._interaction(
            "message_action",
            user,
            callback_id=callback_id,
            action_ts=self._next_ts(),
            channel={"id": channel, "name": self.channels[channel]},
            message_ts=ts,
            message=msg.to_slack(self.team_id),
            response_url=self._new_response_url(channel, user, None),
        )
        return await self._post_form({"payload": json.dumps(payload)})

    async def submit_view(
        self, view_id: str, *, user: str, values: Mapping[str, Mapping[str, Any]]
    ) -> Delivery:
        """A person submits an open modal; ``values`` is {block_id: {action_id: value}}."""
        view = next((v for v in self.views if v["id"] == view_id), None)
        if view is None:
            raise LookupError(f"no open view {view_id!r}")
        inputs = {
            b["block_id"]: b.get("element", {}) for b in view["blocks"] if b.get("type") == "input"
        }
        state: dict[str, dict[str, Any]] = {}
        for block_id, by_action in values.items():
            for action_id, value in by_action.items():
                element = inputs.get(block_id)
                if element is None or element.get("action_id") != action_id:
                    raise LookupError(f"view {view_id} has no input {block_id}/{action_id}")
                entry = {"type": element["type"], "value": value}
                state.setdefault(block_id, {})[action_id] = entry
        submitted = {**copy.deepcopy(view), "state": {"values": state}}
        payload = self._interaction("view_submission", user, view=submitted, response_urls=[])
        return await self._post_form({"payload": json.dumps(payload)})

    async def slash_command(
        self, text: str, *, user: str, channel: str, command: str = "/grace"
    ) -> Delivery:
        """A person types a slash command: delivered form-encoded like Slack does."""
        if channel not in self.channels:
            raise LookupError(f"unknown channel {channel!r}; known: {sorted(self.channels)}")
        return await self._post_form(
            {
                "token": self.verification_token,
                "team_id": self.team_id,
                "team_domain": self.team_domain,
                "channel_id": channel,
                "channel_name": self.channels.get(channel, channel),
                "user_id": user,
                "user_name": self.users.get(user, user.lower()),
                "command": command,
                "text": text,
                "api_app_id": self.app_id,
                "is_enterprise_install": "false",
                "response_url": self._new_response_url(channel, user, None),
                "trigger_id": self.issue_trigger_id(),
            }
        )


def _find_option(
    blocks: Sequence[Mapping[str, Any]], value: str
) -> tuple[str, Mapping[str, Any], Mapping[str, Any]] | None:
    for b in blocks:
        for el in [*b.get("elements", []), b.get("accessory")]:
            if not (isinstance(el, dict) and el.get("type") == "static_select"):
                continue
            groups = [g.get("options", []) for g in el.get("option_groups", [])]
            for option in [*el.get("options", []), *(o for g in groups for o in g)]:
                if option.get("value") == value:
                    return b.get("block_id", ""), el, option
    return None


def _find_button(blocks: Sequence[Mapping[str, Any]], action_id: str) -> tuple[str, Any] | None:
    return next(
        ((bid, el) for bid, el in buttons(blocks) if el.get("action_id") == action_id), None
    )
