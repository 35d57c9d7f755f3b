"""Views: the trigger_ids Slack hands out with interactions, views.open and
views.update for modals, and the checks every view passes (App Home's too)."""

from __future__ import annotations

import copy
import secrets
import time
from typing import TYPE_CHECKING, Any

from bot.devslack.blockkit import view_errors, with_ids
from bot.devslack.calls import SlackError

if TYPE_CHECKING:
    from bot.devslack.web_api import WebApi

TRIGGER_TTL = 3.0  # seconds: Slack expires trigger_ids quickly


class Views:
    """The modals opened through the Web API, and the trigger_ids that open them."""

    def __init__(self, api: WebApi) -> None:
        self.api = api
        self.opened: list[dict[str, Any]] = []  # each modal as Slack holds it now
        self._triggers: dict[str, tuple[float, bool]] = {}  # id -> (issued at, used)
        self._seq = 0

    def issue_trigger(self) -> str:
        """A trigger_id as Slack hands out with an interaction; valid for 3 s, once."""
        self._seq += 1
        trigger = f"{self._seq}.{int(time.time())}.{secrets.token_hex(16)}"
        self._triggers[trigger] = (self.api._clock(), False)
        return trigger

    def check(self, view: Any, kinds: tuple[str, ...]) -> dict[str, Any]:
        """`view` as Slack stores it (a new id and hash), or refused as Slack refuses it."""
        if not isinstance(view, dict) or view.get("type") not in kinds:
            raise SlackError(
                "invalid_arguments", response_metadata={"messages": ["[ERROR] invalid `view` type"]}
            )
        errs = view_errors(view)
        if errs:
            raise SlackError(
                "invalid_arguments", response_metadata={"messages": [f"[ERROR] {e}" for e in errs]}
            )
        self._seq += 1
        api = self.api
        return {
            "id": f"V{self._seq:08d}",
            "team_id": api.team_id,
            "app_id": api.app_id,
            "bot_id": api.bot_id,
            "state": {"values": {}},
            "hash": f"{time.time():.0f}.{self._seq}",
            "private_metadata": "",
            "callback_id": "",
            "external_id": "",
            "previous_view_id": None,
            "clear_on_close": False,
            "notify_on_close": False,
            **copy.deepcopy(view),
            "blocks": with_ids(view["blocks"]),
        }

    def open(self, args: dict[str, Any]) -> dict[str, Any]:
        trigger = str(args.get("trigger_id") or "")
        if trigger not in self._triggers:
            raise SlackError("invalid_trigger_id")
        issued, used = self._triggers[trigger]
        if used:
            raise SlackError("exchanged_trigger_id")
        if self.api._clock() - issued > TRIGGER_TTL:
            raise SlackError("expired_trigger_id")
        view = self.check(args.get("view"), ("modal",))
        self._triggers[trigger] = (issued, True)
        view["root_view_id"] = view["id"]
        self.opened.append(view)
        return {"view": copy.deepcopy(view)}

    def update(self, args: dict[str, Any]) -> dict[str, Any]:
        old = self._find(str(args.get("view_id") or args.get("external_id") or ""))
        if args.get("hash") and args["hash"] != old["hash"]:
            raise SlackError("hash_conflict")
        new = self.check(args.get("view"), ("modal",))
        new.update(id=old["id"], root_view_id=old["root_view_id"])
        old.clear()
        old.update(new)
        return {"view": copy.deepcopy(old)}

    def _find(self, view_id: str) -> dict[str, Any]:
        for view in self.opened:
            if view["id"] == view_id or (view_id and view.get("external_id") == view_id):
                return view
        raise SlackError("not_found")
