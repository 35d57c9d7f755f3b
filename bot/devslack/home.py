"""Slack's side of App Home: each person's published Home, views.publish's rules and rate
limit, and what Slack delivers when someone opens a Home or clicks on it.

views.publish, as Slack documents it: `user_id` must be a member (else
invalid_arguments, "invalid `user_id`"), the view a valid `home` view (100
blocks at most, the Block Kit limits), 250 kB at most (view_too_large), a
`hash` must be the one of the Home now published (hash_conflict), the app's
Home tab must be on (not_enabled), and the method is Tier 4: the stand-in
takes the documented floor, 100 calls a minute per app and workspace, and
answers more with a 429 and Retry-After, as Slack does. A person's Home keeps
its view id across publishes; each publish has a new hash.

Opening a Home delivers app_home_opened (with the Home as published, once
one was). A click on a Home reaches the app as Slack sends it: a
block_actions with a `view` container and the whole view, no channel and no
response_url; a button with a `confirm` dialog is sent only once the person
confirms.
"""

from __future__ import annotations

import collections
import copy
import hashlib
import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from bot.devslack.blockkit import buttons
from bot.devslack.calls import SlackError
from bot.devslack.message import Message

if TYPE_CHECKING:
    from bot.devslack.deliveries import Delivery
    from bot.devslack.workspace import DevSlack

VIEW_MAX_BYTES = 250_000
PUBLISH_LIMIT, PUBLISH_WINDOW_S = 100, 60.0
"""views.publish is Tier 4, "100+ per minute": the stand-in enforces the floor."""


class HomeTabs:
    """Every person's App Home, for one DevSlack's app."""

    def __init__(self, slack: DevSlack) -> None:
        self.slack = slack
        self.homes: dict[str, dict[str, Any]] = {}  # user id -> the Home Slack shows them
        self.enabled = True
        """The app's Home tab (the manifest's app_home.home_tab_enabled)."""
        self.limit, self.window = PUBLISH_LIMIT, PUBLISH_WINDOW_S
        self._published: collections.deque[float] = collections.deque()

    # ------------------------------------------------------------ views.publish

    def publish(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """Store the view as `user_id`'s Home, or refuse it as Slack does."""
        self._throttle()
        user = str(args.get("user_id") or "")
        if user not in self.slack.users:
            raise SlackError(
                "invalid_arguments", response_metadata={"messages": ["invalid `user_id`"]}
            )
        if not self.enabled:
            raise SlackError("not_enabled")
        if len(json.dumps(args.get("view"))) > VIEW_MAX_BYTES:
            raise SlackError("view_too_large")
        current = self.homes.get(user)
        wanted = args.get("hash")
        if wanted and (current is None or wanted != current["hash"]):
            raise SlackError("hash_conflict")
        view = self.slack._views.check(args.get("view"), ("home",))  # a new hash every time
        if current is not None:
            view["id"] = current["id"]
        view["root_view_id"] = view["id"]
        self.homes[user] = view
        self._published.append(self.slack._clock())
        return {"view": copy.deepcopy(view)}

    def _throttle(self) -> None:
        now = self.slack._clock()
        while self._published and now - self._published[0] >= self.window:
            self._published.popleft()
        if len(self._published) >= self.limit:
            wait = math.ceil(self._published[0] + self.window - now)
            raise SlackError("ratelimited", 429, {"Retry-After": str(max(wait, 1))})

    # ------------------------------------------------------------ people on their Home

    def channel(self, user: str) -> str:
        """The App Home's channel: the person's IM with the app, one a person."""
        digest = hashlib.sha256(f"{self.slack.app_id}:{user}".encode()).hexdigest()
        return "D" + digest[:10].upper()

    async def open(self, user: str, tab: str = "home") -> Delivery:
        """A person opens the app's Home tab (or its Messages tab): app_home_opened."""
        if user not in self.slack.users:
            raise LookupError(f"unknown user {user!r}")
        event: dict[str, Any] = {
            "type": "app_home_opened",
            "user": user,
            "channel": self.channel(user),
            "tab": tab,
            "event_ts": self.slack._next_ts(),
        }
        if tab == "home" and user in self.homes:
            event["view"] = copy.deepcopy(self.homes[user])
        return await self.slack.deliver_event(event)

    async def click(
        self, user: str, action_id: str, *, block_id: str | None = None, confirm: bool | None = None
    ) -> Delivery | None:
        """A person clicks a button on their Home as it is now. A button with a confirm
        dialog needs `confirm`: Slack sends nothing when the person cancels (None then)."""
        block, button = self._button(user, action_id, block_id)
        if "confirm" in button and confirm is None:
            raise ValueError(f"{action_id!r} asks to confirm first: pass confirm=True or False")
        if confirm is False:
            return None
        action = {"action_id": action_id, "block_id": block, "text": button["text"]}
        action.update({k: button[k] for k in ("value", "style") if k in button})
        return await self.act(user, {**action, "type": "button"})

    async def act(self, user: str, action: Mapping[str, Any]) -> Delivery:
        """Any action from `user`'s Home as Slack would send it: a forged one too."""
        home = self.homes.get(user)
        if home is None:
            raise LookupError(f"{user} has no Home published")
        payload = self.slack._interaction(
            "block_actions",
            user,
            container={"type": "view", "view_id": home["id"]},
            view=copy.deepcopy(home),
            state={"values": {}},
            actions=[{**action, "action_ts": self.slack._next_ts()}],
        )
        return await self.slack._post_form({"payload": json.dumps(payload)})

    def render(self, user: str) -> str:
        """`user`'s Home as they read it ("" before one was published)."""
        home = self.homes.get(user)
        if home is None:
            return ""
        return self.slack.render_message(Message(self.channel(user), "", blocks=home["blocks"]))

    def _button(self, user: str, action_id: str, block_id: str | None) -> tuple[str, Any]:
        home = self.homes.get(user)
        if home is None:
            raise LookupError(f"{user} has no Home published")
        found = [
            (bid, el)
            for bid, el in buttons(home["blocks"])
            if el.get("action_id") == action_id and block_id in (None, bid)
        ]
        if len(found) != 1:
            present = [(bid, el.get("action_id")) for bid, el in buttons(home["blocks"])]
            what = "no" if not found else "more than one"
            raise LookupError(
                f"{user}'s Home has {what} button {action_id!r} in {block_id or 'any block'} "
                f"(its buttons now: {present or 'none'})"
            )
        return found[0]
