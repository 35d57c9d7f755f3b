"""Who is who in the workspace: auth.test (the bot itself), users.info and
usergroups.users.list, answered from the Web API's users and user groups."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bot.devslack.calls import SlackError

if TYPE_CHECKING:
    from bot.devslack.web_api import WebApi


class People:
    """The methods that look up the bot, a person or a user group."""

    def __init__(self, api: WebApi) -> None:
        self.api = api

    def auth_test(self, _: dict[str, Any]) -> dict[str, Any]:
        api = self.api
        return {
            "url": f"https://{api.team_domain}.slack.com/",
            "team": api.team_domain,
            "user": api.users[api.bot_user_id],
            "team_id": api.team_id,
            "user_id": api.bot_user_id,
            "bot_id": api.bot_id,
            "is_enterprise_install": False,
        }

    def users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        uid = str(args.get("user") or "")
        if uid not in self.api.users:
            raise SlackError("user_not_found")
        name = self.api.users[uid]
        return {
            "user": {
                "id": uid,
                "team_id": self.api.team_id,
                "name": name,
                "real_name": name,
                "deleted": False,
                "is_bot": uid == self.api.bot_user_id,
                "profile": {"display_name": name, "real_name": name},
            }
        }

    def usergroup_users(self, args: dict[str, Any]) -> dict[str, Any]:
        group = str(args.get("usergroup") or "")
        if group not in self.api.usergroups:
            raise SlackError("no_such_subteam")
        return {"users": list(self.api.usergroups[group])}
