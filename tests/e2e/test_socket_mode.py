"""GRACE in Socket Mode against DevSlack's Socket Mode: the same listeners as HTTP mode,
reached over the WebSocket GRACE opens with its own code (bot/socket_mode.py).

Each delivery is an envelope GRACE must acknowledge by its envelope_id; a reconnect in
the middle (a lost ack that breaks the connection, Slack's refresh, a dropped socket)
must neither lose nor double anything. The commands run `grace demo --socket-mode`,
`grace run` and `grace devslack` as an operator does.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bot.app import build
from bot.demo import APPROVER, CHANNEL, MONITOR, bloat_wal, delivering, demo_settings
from bot.devslack import DevSlack
from bot.ids import ActionId, BlockId
from bot.listeners.modals import BLANK
from engine.models import IncidentState
from tests.e2e.conftest import Harness

ROOT = Path(__file__).parents[2]


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    """GRACE and DevSlack in Socket Mode, connected: nothing reaches GRACE but the socket."""
    app_db = tmp_path / "app" / "app.db"
    owner = bloat_wal(app_db, rows=5000)
    token = f"xoxb-test-{secrets.token_hex(4)}"
    slack = DevSlack(
        token=token,
        signing_secret=secrets.token_hex(16),
        channels={CHANNEL: "alerts"},
        users={APPROVER: "oncall", MONITOR: "monitoring"},
    )
    await slack.start()
    app_token = slack.use_socket_mode()
    settings = demo_settings(tmp_path, slack, token, "", app_db.parent, app_token)
    grace = await build(settings.model_copy(update={"slack_rate": 500.0}))
    try:
        await grace.start()
        async with delivering(grace, slack):
            yield Harness(slack, grace, app_db, owner)
    finally:
        await grace.stop()
        await slack.stop()
        owner.close()


def acked_once(slack: DevSlack, lost: int = 0) -> bool:
    """Every envelope GRACE got was acknowledged exactly once, but the `lost` acks."""
    acks = Counter(a["envelope_id"] for a in slack.socket.acks)
    sent = {e["envelope_id"] for e in slack.socket.sent}
    return set(acks.values()) <= {1} and set(acks) <= sent and len(sent) - len(acks) == lost


async def test_a_whole_incident_over_socket_mode(harness: Harness) -> None:
    alert = await harness.alert()
    assert alert.status == 200 and alert.elapsed < 3.0  # acknowledged within Slack's 3 s
    assert alert.envelope is not None and alert.envelope["type"] == "events_api"
    card = await harness.card()
    assert "Approve" in harness.slack.render_message(card)
    click = await harness.click(card)
    assert click.status == 200 and click.elapsed < 3.0
    assert click.envelope is not None and click.envelope["type"] == "interactive"
    incident = await harness.finished(card)
    assert incident.state is IncidentState.RESOLVED
    assert harness.slack.request_url is None  # no HTTP delivery at all
    assert acked_once(harness.slack) and len(harness.slack.socket.sent) == 2


async def test_a_command_is_answered_in_its_ack(harness: Harness) -> None:
    delivery = await harness.slack.slash_command("playbooks", user=APPROVER, channel=CHANNEL)
    assert delivery.status == 200 and delivery.envelope is not None
    assert delivery.envelope["accepts_response_payload"] is True
    answer = json.loads(delivery.body)
    assert answer["response_type"] == "ephemeral"
    assert all(p.id in answer["text"] for p in harness.grace.healer.catalog.playbooks)
    wrong = await harness.slack.slash_command("heal onlyone", user=APPROVER, channel=CHANNEL)
    assert "Usage: `/grace heal PLAYBOOK TARGET" in json.loads(wrong.body)["text"]
    assert acked_once(harness.slack)


async def test_a_rejection_form_is_submitted_over_socket_mode(harness: Harness) -> None:
    await harness.alert()
    card = await harness.card()
    assert (await harness.click(card, action=ActionId.REJECT)).status == 200
    view = await harness.slack.wait_for(lambda: next(iter(harness.slack.views), None))
    field = {BlockId.REJECT_REASON: {ActionId.REJECT_REASON: "   "}}
    blank = await harness.slack.submit_view(view["id"], user=APPROVER, values=field)
    assert json.loads(blank.body) == {
        "response_action": "errors",
        "errors": {BlockId.REJECT_REASON: BLANK},
    }
    reason = {BlockId.REJECT_REASON: {ActionId.REJECT_REASON: "not during the sale"}}
    submitted = await harness.slack.submit_view(view["id"], user=APPROVER, values=reason)
    assert (submitted.status, submitted.body) == (200, "")
    await harness.slack.wait_for(
        lambda: any("Rejected by" in t and "not during the sale" in t for t in harness.thread(card))
    )
    await harness.grace.healer.drain()
    incident = await harness.grace.store.incident_for_card(CHANNEL, card.ts)
    assert incident is not None and incident.state is IncidentState.REJECTED
    assert acked_once(harness.slack)


async def test_reconnects_mid_incident_lose_nothing_and_double_nothing(harness: Harness) -> None:
    slack = harness.slack
    # GRACE takes the alert and acks it, but the ack is lost with the connection: Slack
    # sends the event again on GRACE's next connection, and GRACE knows it by its key.
    slack.socket.lose_ack()
    alert = await harness.alert()
    assert alert.status == 200 and alert.envelope is not None
    assert alert.envelope["retry_attempt"] == 1
    card = await harness.card()
    # Slack refreshes the connection: a warning, and GRACE opens another at once.
    await slack.socket.refresh()
    await slack.wait_for(lambda: slack.socket.connections)
    assert (await harness.click(card)).status == 200
    # The socket drops while the heal runs: GRACE reconnects; the heal goes on regardless.
    await slack.socket.drop()
    incident = await harness.finished(card)
    assert incident.state is IncidentState.RESOLVED
    await slack.wait_for(lambda: slack.socket.connections)
    assert slack.socket.opened == 4
    assert [i.id for i in await harness.incidents()] == [incident.id]
    assert [c.ts for c in harness.cards()] == [card.ts]
    assert sum("Approved by" in t for t in harness.thread(card)) == 1
    assert acked_once(slack, lost=1)  # the first alert envelope's ack never arrived
    events = [e for e in slack.socket.sent if e["type"] == "events_api"]
    assert [e["retry_attempt"] for e in events] == [0, 1]
    assert events[0]["payload"] == events[1]["payload"]


# ------------------------------------------------------------------ the commands


async def readline_until(
    stream: asyncio.StreamReader, needle: str, within_s: float = 30
) -> list[str]:
    """Lines read up to and including the first that holds `needle`."""
    lines: list[str] = []
    async with asyncio.timeout(within_s):
        while not lines or needle not in lines[-1]:
            line = (await stream.readline()).decode()
            assert line, f"the process ended before saying {needle!r}: {''.join(lines)}"
            lines.append(line)
    return lines


async def stopped(proc: asyncio.subprocess.Process) -> tuple[int, str, str]:
    """SIGTERM, then the exit code and what is left of stdout and stderr."""
    proc.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(10):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def grace(
    command: str, *args: str, env: dict[str, str], cwd: Path
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        command,
        *args,
        cwd=cwd,
        env={**env, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


def environment(**variables: str) -> dict[str, str]:
    """This process's environment without any GRACE or Slack settings (nor unbuffered
    output: what GRACE prints must reach a pipe by itself), plus `variables`."""
    dropped = ("SLACK_", "GRACE_", "PYTHONUNBUFFERED")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    return {**env, "GRACE_PORT": "0", **variables}


async def test_grace_demo_socket_mode_heals_and_exits_zero(tmp_path: Path) -> None:
    proc = await grace("demo", "--socket-mode", env=environment(), cwd=tmp_path)
    async with asyncio.timeout(120):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    text = out.decode()
    assert "delivering over Socket Mode" in text and "Incident #1 ended resolved." in text
    sent = re.search(r"Socket Mode: (\d+) envelopes sent, (\d+) acknowledged", text)
    assert sent is not None and sent[1] == sent[2] and int(sent[1]) >= 2
    assert "Traceback" not in err.decode()


@pytest.fixture
async def devslack() -> AsyncIterator[DevSlack]:
    slack = DevSlack(
        token=f"xoxb-test-{secrets.token_hex(4)}",
        signing_secret=secrets.token_hex(16),
        channels={CHANNEL: "alerts"},
        users={APPROVER: "oncall"},
    )
    await slack.start()
    yield slack
    await slack.stop()


async def test_grace_run_serves_over_socket_mode_until_sigterm(
    devslack: DevSlack, tmp_path: Path
) -> None:
    env = environment(
        SLACK_BOT_TOKEN=devslack.token,
        SLACK_APP_TOKEN=devslack.use_socket_mode(),  # and no signing secret: none is needed
        SLACK_API_URL=devslack.api_url,
        GRACE_ALERT_CHANNELS=CHANNEL,
    )
    proc = await grace("run", env=env, cwd=tmp_path)
    try:
        assert proc.stderr is not None
        await readline_until(proc.stderr, "Socket Mode: connected to Slack")
        answer = await devslack.slash_command("help", user=APPROVER, channel=CHANNEL)
        assert answer.status == 200 and "/grace playbooks" in json.loads(answer.body)["text"]
    finally:
        code, out, err = await stopped(proc)
    assert code == 0 and out.startswith("GRACE is running on http://127.0.0.1:")
    assert "Traceback" not in err
    assert devslack.socket.connections == []  # GRACE closed its connection as it stopped


async def test_grace_run_names_slack_app_token_when_it_is_not_an_app_token(
    devslack: DevSlack, tmp_path: Path
) -> None:
    devslack.use_socket_mode()
    env = environment(
        SLACK_BOT_TOKEN=devslack.token,
        SLACK_APP_TOKEN=devslack.token,  # the bot token where the app token belongs
        SLACK_API_URL=devslack.api_url,
    )
    proc = await grace("run", env=env, cwd=tmp_path)
    async with asyncio.timeout(60):
        _, err = await proc.communicate()
    assert proc.returncode == 2
    [line] = [line for line in err.decode().splitlines() if "SLACK_APP_TOKEN" in line]
    assert line == (
        "grace: SLACK_APP_TOKEN: Slack refused it (apps.connections.open: "
        "not_allowed_token_type); use an app-level token (xapp-…) with the connections:write scope"
    )
    assert "Traceback" not in err.decode()


async def page_until(
    http: aiohttp.ClientSession, url: str, pattern: str, within_s: float = 30
) -> re.Match[str]:
    """Reload the page until `pattern` is on it."""
    page = ""
    try:
        async with asyncio.timeout(within_s):
            while True:
                async with http.get(url) as resp:
                    page = await resp.text()
                if found := re.search(pattern, page):
                    return found
                await asyncio.sleep(0.1)  # a person reloading
    except TimeoutError:
        raise AssertionError(f"{pattern!r} not on the page within {within_s} s:\n{page}") from None


async def act(http: aiohttp.ClientSession, url: str, what: str, **form: str) -> None:
    async with http.get(url) as resp:
        token = re.search(r'name="form_token" value="([^"]+)"', await resp.text())
    assert token is not None
    data = {**form, "form_token": token[1]}
    async with http.post(f"{url}act/{what}", data=data, allow_redirects=False) as resp:
        assert resp.status == 303


async def test_grace_devslack_lets_a_team_try_grace_with_its_own_config(tmp_path: Path) -> None:
    owner = bloat_wal(tmp_path / "app" / "app.db", rows=5000)
    config = tmp_path / "grace.yml"
    config.write_text(
        f"alert_channels: [{CHANNEL}]\n"
        f"approvers: {{tier2: [{APPROVER}, S0SRE]}}\n"
        f"targets: {{sqlite: ['{tmp_path}/app/*.db']}}\n"
        f"db: {tmp_path}/grace.db\n"
        "slack_rate: 50\n"
    )
    stand_in = await grace(
        "devslack", "--port", "0", env=environment(GRACE_CONFIG=str(config)), cwd=tmp_path
    )
    running = None
    try:
        assert stand_in.stdout is not None
        said = await readline_until(stand_in.stdout, "Ctrl-C stops DevSlack.")
        found = re.search(r"is on (http://127\.0\.0\.1:\d+/) ", said[0])
        assert found is not None and "over Socket Mode" in said[0]
        page = found[1]
        assert f"#alerts ({CHANNEL})" in "".join(said)
        assert "u0oncall (U0ONCALL)" in "".join(said) and "s0sre-member (U0SRE)" in "".join(said)
        exports = dict(re.findall(r"^export (\w+)=(\S+)$", "".join(said), re.MULTILINE))
        assert set(exports) == {
            "SLACK_API_URL",
            "SLACK_BOT_TOKEN",
            "SLACK_SIGNING_SECRET",
            "SLACK_APP_TOKEN",
        }
        running = await grace(
            "run", env=environment(GRACE_CONFIG=str(config), **exports), cwd=tmp_path
        )
        assert running.stderr is not None
        await readline_until(running.stderr, "Socket Mode: connected to Slack")
        async with aiohttp.ClientSession() as http:
            alert = f"[FIRING:1] SQLiteWALTooLarge db_path={tmp_path}/app/app.db severity=warning"
            await act(http, page, "post", channel=CHANNEL, user="U0YOU", text=alert)
            card = await page_until(
                http, page, rf'"ts" value="([\d.]+)"><[^>]+"{ActionId.APPROVE}"'
            )
            button = {"ts": card[1], "action_id": ActionId.APPROVE}
            await act(http, page, "click", channel=CHANNEL, user=APPROVER, **button)
            await page_until(http, page, "Learned: success recorded")
    finally:
        if running is not None:
            code, _, err = await stopped(running)
            assert code == 0 and "Traceback" not in err
        code, _, err = await stopped(stand_in)
        owner.close()
    assert code == 0 and "Traceback" not in err
