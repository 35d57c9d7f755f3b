"""DevSlack's page (`grace devslack`): the channels as a person reads them, and forms to
act as the workspace's people: post a message, click a button, run a slash command,
submit an open modal, open the app's Home and click on it. What a form does reaches
the app exactly as the tests' calls do.

Every form carries the page's own token: a click here may approve a real heal, so
another site open in the same browser must not be able to post these forms.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import json
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from bot.devslack.blockkit import buttons
from bot.devslack.message import Message

if TYPE_CHECKING:
    from bot.devslack.deliveries import Delivery
    from bot.devslack.workspace import DevSlack

OUTCOMES = 5  # how many recent outcomes the page shows
STYLE = (
    "body{font-family:sans-serif;max-width:64em;margin:1em auto;padding:0 1em}"
    "pre{white-space:pre-wrap;background:#f4f4f4;padding:.5em;margin:.3em 0}"
    ".thread{margin-left:2.5em}form.inline{display:inline}"
    "textarea{width:100%}"
)


class Page:
    """The page and the actions behind its forms, for one DevSlack."""

    def __init__(self, slack: DevSlack) -> None:
        self.slack = slack
        self.token = secrets.token_urlsafe(24)
        self.outcomes: list[str] = []
        self.closed: set[str] = set()  # modals submitted from here: Slack closes them
        self._acting: set[asyncio.Task[None]] = set()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self.show)
        app.router.add_post("/act/{what}", self.act)

    async def show(self, _: web.Request) -> web.Response:
        return web.Response(text=self.html(), content_type="text/html")

    async def act(self, request: web.Request) -> web.Response:
        """Do what a form asks, in the background: a delivery may wait for the app to
        connect, and the page comes back at once (reload it to see what happened)."""
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        if not hmac.compare_digest(form.get("form_token", "").encode(), self.token.encode()):
            raise web.HTTPForbidden(text="this form is not from DevSlack's page: reload the page")
        task = asyncio.ensure_future(self._act(request.match_info["what"], form))
        self._acting.add(task)
        task.add_done_callback(self._acting.discard)
        raise web.HTTPSeeOther("/")

    async def _act(self, what: str, form: Mapping[str, str]) -> None:
        try:
            delivery = await self._deliver(what, form)
        except (LookupError, ValueError) as exc:  # a missing field is a KeyError too
            self._told(f"{what}: not done: {exc}")
            return
        except (RuntimeError, OSError, aiohttp.ClientError) as exc:  # the app is not there
            self._told(f"{what}: the app cannot be reached: {exc}")
            return
        if delivery.status != 200:
            self._told(f"{what}: the app did not answer: {delivery.body or delivery.status}")
            return
        if what == "submit" and not delivery.body:  # a bare ack closes the modal
            self.closed.add(form["view"])
        took = f"{delivery.elapsed * 1000:.0f} ms"
        self._told(f"{what}: the app answered in {took}. {_said(delivery)}")

    async def _deliver(self, what: str, form: Mapping[str, str]) -> Delivery:
        slack, user, channel = self.slack, form["user"], form.get("channel", "")
        if what == "post":
            return await slack.post_message_as(channel, form["text"], user=user)
        if what == "click":
            return await slack.click(channel, form["ts"], form["action_id"], user=user)
        if what == "command":
            return await slack.slash_command(form["text"], user=user, channel=channel)
        if what == "home":
            return await slack.home.open(user)
        if what == "homeclick":
            # A button with a confirm dialog is sent once the browser's dialog said yes.
            confirm = True if form.get("confirm") else None
            clicked = await slack.home.click(
                user, form["action_id"], block_id=form["block_id"], confirm=confirm
            )
            assert clicked is not None, "a confirmed click is always sent"
            return clicked
        if what == "submit":
            values: dict[str, dict[str, Any]] = {}
            for name, value in form.items():
                if name.startswith("input:"):
                    block_id, _, action_id = name.removeprefix("input:").partition("/")
                    values.setdefault(block_id, {})[action_id] = value
            return await slack.submit_view(form["view"], user=user, values=values)
        raise LookupError(f"no action {what!r}")

    def _told(self, outcome: str) -> None:
        self.outcomes = [outcome, *self.outcomes][:OUTCOMES]

    # ------------------------------------------------------------ the page

    def html(self) -> str:
        slack = self.slack
        parts = [
            f"<!doctype html><meta charset=utf-8><title>DevSlack</title><style>{STYLE}</style>",
            f"<h1>DevSlack: {_e(slack.team_domain)}</h1>",
            '<p><a href="/">Reload</a> to see what the app did.</p>',
            *(f"<pre>{_e(o)}</pre>" for o in self.outcomes),
        ]
        for channel, name in slack.channels.items():
            parts.append(f"<h2>#{_e(name)} <small>{_e(channel)}</small></h2>")
            for message in slack.messages(channel):
                replies = "".join(self._message(r) for r in slack.thread(channel, message.ts))
                parts.append(self._message(message))
                parts.append(f'<div class="thread">{replies}</div>' if replies else "")
            for message in slack.ephemerals():
                if message.channel == channel:
                    who = slack.users.get(message.recipient or "", message.recipient)
                    parts.append(f"<p>Only visible to {_e(who or '')}:</p>{self._message(message)}")
        parts.extend([self._post_form(), self._command_form(), self._home_form()])
        parts.extend(self._home(user, view) for user, view in slack.homes.items())
        parts.extend(self._view_form(v) for v in slack.views if v["id"] not in self.closed)
        return "\n".join(parts)

    def _message(self, message: Message) -> str:
        slack = self.slack
        author = slack.users.get(message.user or "", message.username or message.bot_id or "?")
        out = [f"<pre><b>{_e(author)}</b>  {_e(slack.render_message(message))}</pre>"]
        for _, button in buttons(message.blocks):
            label = button.get("text", {}).get("text", "?")
            out.append(
                f'<form class="inline" method="post" action="/act/click">{self._hidden()}'
                f"{_hidden('channel', message.channel)}{_hidden('ts', message.ts)}"
                f"{_hidden('action_id', str(button.get('action_id', '')))}"
                f"{self._people()}<button>{_e(label)}</button></form>"
            )
        return "".join(out)

    def _post_form(self) -> str:
        return (
            f'<h2>Post a message</h2><form method="post" action="/act/post">{self._hidden()}'
            f"{self._channels()} as {self._people()}"
            '<textarea name="text" rows="3" placeholder="[FIRING:1] ..."></textarea>'
            "<button>Post</button></form>"
        )

    def _command_form(self) -> str:
        return (
            f'<h2>Run /grace</h2><form method="post" action="/act/command">{self._hidden()}'
            f'{self._channels()} as {self._people()} /grace <input name="text" size="40">'
            "<button>Run</button></form>"
        )

    def _home_form(self) -> str:
        return (
            f'<h2>App Home</h2><form method="post" action="/act/home">{self._hidden()}'
            f"Open the app's Home as {self._people()} <button>Open</button></form>"
        )

    def _home(self, user: str, view: Mapping[str, Any]) -> str:
        """A published Home as its owner reads it, with its buttons to click as them."""
        name = self.slack.users.get(user, user)
        out = [f"<h3>{_e(name)}'s Home</h3><pre>{_e(self.slack.home.render(user))}</pre>"]
        for block_id, button in buttons(view.get("blocks", [])):
            label = button.get("text", {}).get("text", "?")
            confirm = button.get("confirm")
            asks = ""
            if isinstance(confirm, dict):
                question = json.dumps(str(confirm.get("text", {}).get("text", "Sure?")))
                asks = f' onsubmit="return confirm({_e(question)})"'
            out.append(
                f'<form class="inline" method="post" action="/act/homeclick"{asks}>'
                f"{self._hidden()}{_hidden('user', user)}{_hidden('block_id', block_id)}"
                f"{_hidden('action_id', str(button.get('action_id', '')))}"
                f"{_hidden('confirm', '1') if asks else ''}<button>{_e(label)}</button></form>"
            )
        return "".join(out)

    def _view_form(self, view: Mapping[str, Any]) -> str:
        title = view.get("title", {}).get("text", "modal")
        fields = "".join(
            f"<label>{_e(b.get('label', {}).get('text', ''))} "
            f'<input name="input:{_e(b["block_id"])}/{_e(b["element"].get("action_id", ""))}">'
            "</label><br>"
            for b in view.get("blocks", [])
            if b.get("type") == "input" and isinstance(b.get("element"), dict)
        )
        return (
            f'<h2>Open modal: {_e(title)}</h2><form method="post" action="/act/submit">'
            f"{self._hidden()}{_hidden('view', str(view['id']))}{fields}"
            f"as {self._people()} <button>Submit</button></form>"
        )

    def _hidden(self) -> str:
        return _hidden("form_token", self.token)

    def _channels(self) -> str:
        options = "".join(
            f'<option value="{_e(c)}">#{_e(n)}</option>' for c, n in self.slack.channels.items()
        )
        return f'<select name="channel">{options}</select>'

    def _people(self) -> str:
        people = [(u, n) for u, n in self.slack.users.items() if u != self.slack.bot_user_id]
        options = "".join(f'<option value="{_e(u)}">{_e(n)}</option>' for u, n in people)
        return f'<select name="user">{options}</select>'


def _said(delivery: Delivery) -> str:
    """What the ack's answer shows the person: a command's text, a form's errors."""
    try:
        answer = json.loads(delivery.body) if delivery.body else {}
    except ValueError:
        return delivery.body
    if not isinstance(answer, dict):
        return delivery.body
    return str(answer.get("text") or answer.get("errors") or "")


def _hidden(name: str, value: str) -> str:
    return f'<input type="hidden" name="{name}" value="{_e(value)}">'


def _e(text: str) -> str:
    return html.escape(text, quote=True)
