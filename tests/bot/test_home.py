"""App Home's parts on their own: the view at its limits, this week's numbers from a real
database, the publisher's coalescing and pacing against the Slack stand-in, and the
stand-in holding views.publish to Slack's rules."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.parse
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.cards import decision_buttons
from bot.devslack import Delivery, DevSlack, block_errors
from bot.devslack.blockkit import view_errors
from bot.directory import SlackDirectory
from bot.home import MAX_WAITING, HomeFacts, Notice, Reader, home_view
from bot.home_publisher import HomeAnswers, HomePublisher, week_of
from bot.ids import ActionId, BlockId, HomeView
from bot.metrics import Metrics
from engine.approval import ApprovalPolicy
from engine.availability import Readiness
from engine.clock import SystemClock
from engine.models import (
    Alert,
    Approval,
    Availability,
    Decision,
    Incident,
    IncidentState,
    Pause,
    Plan,
    PlannedStep,
    Target,
    TargetHold,
)
from engine.records import HomeRows, Page, Pending, WeekNumbers
from storage.store import SqliteStore
from tests.bot.conftest import DevSlackFactory
from tests.storage.conftest import FakeClock, open_incident

S = IncidentState
ROOT = Path(__file__).parents[2]
MONDAY = datetime(2025, 3, 3, tzinfo=UTC)  # ISO week 10 of 2025 begins
NOW = MONDAY + timedelta(days=2, hours=9)


def alert(n: int, at: datetime = NOW, **fields: Any) -> Alert:
    return Alert(
        source="alertmanager",
        source_key=f"key-{n}",
        name=fields.pop("name", "HostDown"),
        labels={"instance": f"web-{n}"},
        channel="C0ALERTS",
        received_at=at,
        **fields,
    )


def plan(tier: int = 2, name: str = "web-1") -> Plan:
    return Plan(
        playbook_id="restart",
        title="Restart the service",
        tier=tier,
        target=Target(executor="service", name=name),
        steps=(PlannedStep(action="restart", params={}, timeout_s=30),),
        checks=(),
    )


def incident(n: int, state: IncidentState = S.AWAITING_APPROVAL, **fields: Any) -> Incident:
    return Incident(
        id=n,
        state=state,
        fingerprint=f"f{n}",
        alert=alert(n),
        plan=plan(name=f"web-{n}"),
        channel="C0ALERTS",
        card_ts=f"1700000000.{n:06d}",
        created_at=NOW,
        updated_at=NOW,
        deadline=NOW + timedelta(minutes=30),
        **fields,
    )


def week(**entered: int) -> WeekNumbers:
    counts = {s: entered.get(s.value, 0) for s in (S.RESOLVED, S.ROLLED_BACK, S.SAFE_HOLD)}
    counts |= {s: entered.get(s.value, 0) for s in (S.NEEDS_HUMAN, S.AUTO_RESOLVED)}
    return WeekNumbers(MONDAY, 0, counts, 0, None)


# ---------------------------------------------------------------- the view


def test_the_fullest_home_stays_within_slacks_limits() -> None:
    """Every list at its cap and beyond, a long answer, a paused GRACE, holds and
    breakers: the view is still one Slack takes, and says what it left out."""
    pending = tuple(Pending(incident(n), ("U0OTHER",)) for n in range(1, MAX_WAITING + 8))
    open_incidents = tuple(incident(n, S.NEEDS_HUMAN) for n in range(100, 160))
    readiness = Readiness(
        executors={f"exec{n}": Availability(ok=n % 2 == 0, reason="x" * 500) for n in range(8)},
        open_breakers={f"service:web-{n}": NOW for n in range(20)},
        holds=tuple(
            TargetHold(
                target=Target(executor="files", name=f"/srv/{n}" * 20),
                incident_id=n,
                reason="rollback failed",
                held_at=NOW,
            )
            for n in range(20)
        ),
    )
    pause = Pause(by="U0LEAD", reason="<!channel> " * 60, at=NOW)
    rows = HomeRows(pause, Page(pending, 500), Page(open_incidents, 300), week())
    long_answer = "\n".join(f"line {n}: " + "y" * 200 for n in range(200))
    reader = Reader("U0ONCALL", "D0HOME", True, pending, Notice(long_answer, NOW))
    view = home_view(HomeFacts(rows, readiness, "grace-dev"), reader).to_dict()

    assert view_errors(view) == [] and block_errors(view["blocks"], max_blocks=100) == []
    assert len(view["blocks"]) <= 100
    text = str(view)
    assert "… and 7 more" in text and "… and 285 more" in text and "truncated" in text
    assert "… and 30 more open breaker(s) or held target(s)" in text
    assert "<!channel>" not in text
    decisions = [
        b for b in view["blocks"] if b["type"] == "actions" and "decision" in b["block_id"]
    ]
    assert len(decisions) == MAX_WAITING
    first = pending[0].incident
    assert decisions[0]["elements"] == decision_buttons(first.id, first.plan).to_dict()["elements"]
    assert decisions[0]["block_id"] == f"{BlockId.HOME_DECISION}.{first.id}"
    assert HomeView.decode(view["private_metadata"]).channel == "D0HOME"


def test_only_admins_get_the_switch_and_resume_asks_first() -> None:
    rows = HomeRows(None, Page((), 0), Page((), 0), week())
    facts = HomeFacts(rows, None, "")

    def switch(admin: bool, pause: Pause | None) -> list[dict[str, Any]]:
        facts_now = HomeFacts(HomeRows(pause, rows.pending, rows.open, rows.week), None, "")
        view = home_view(facts_now, Reader("U0X", "D0X", admin, ())).to_dict()
        return [
            e
            for b in view["blocks"]
            if b.get("block_id") == BlockId.HOME_SWITCH
            for e in b["elements"]
        ]

    assert switch(False, None) == [] and switch(False, Pause(by="U0L", at=NOW)) == []
    [pause] = switch(True, None)
    assert pause["action_id"] == ActionId.PAUSE and "confirm" not in pause
    [resume] = switch(True, Pause(by="U0L", at=NOW))
    assert resume["action_id"] == ActionId.RESUME and resume["confirm"]["deny"]["text"] == "Cancel"
    assert "asking each whether it can act" in str(
        home_view(facts, Reader("U0X", "D0X", False, ())).to_dict()
    )


def test_the_week_is_the_iso_week_in_utc() -> None:
    assert week_of(MONDAY) == (MONDAY, MONDAY + timedelta(days=7))
    sunday_night = MONDAY - timedelta(microseconds=1)
    assert week_of(sunday_night) == (MONDAY - timedelta(days=7), MONDAY)
    sunday_in_new_york = datetime(2025, 3, 2, 19, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert week_of(sunday_in_new_york)[0] == MONDAY, "Monday already, in UTC"


# ---------------------------------------------------------------- this week's numbers


async def test_this_weeks_numbers_count_what_entered_each_state_this_week(tmp_path: Path) -> None:
    clock = FakeClock(MONDAY - timedelta(seconds=1))
    async with await SqliteStore.open(tmp_path / "grace.db", clock) as store:
        # Opened last week, resolved this week: healed this week, not opened.
        early = await open_incident(store, alert(1, clock.now()), "d1")
        clock.advance(1)  # Monday 00:00:00 UTC
        fresh = await open_incident(store, alert(2, clock.now()), "d2")
        path = (S.DIAGNOSED, S.APPROVED, S.EXECUTING, S.VERIFYING)
        for one in (early, fresh):
            state = S.OPEN
            for step in path:
                await store.transition(one.id, state, step, actor="grace")
                state = step
        approval = Approval(
            incident_id=fresh.id,
            user="U0ONCALL",
            plan_hash="ab",
            decision=Decision.APPROVE,
            at=clock.now(),
        )
        await store.add_approval(approval)
        clock.advance(1800)
        await store.transition(fresh.id, S.VERIFYING, S.RESOLVED, actor="grace")
        clock.advance(1800)
        await store.transition(early.id, S.VERIFYING, S.RESOLVED, actor="grace")
        # Needed a human, then its alert cleared; one rolled back; one held.
        for n, ends in (
            (3, (S.NEEDS_HUMAN, S.AUTO_RESOLVED)),
            (4, (S.ROLLED_BACK,)),
            (5, (S.SAFE_HOLD,)),
        ):
            one = await open_incident(store, alert(n, clock.now()), f"d{n}")
            state = S.OPEN
            for step in ((S.DIAGNOSED, S.APPROVED, S.EXECUTING) if n > 3 else ()) + ends:
                await store.transition(one.id, state, step, actor="grace")
                state = step
        # Next week's incident is not this week's.
        clock.advance(7 * 86400)
        await open_incident(store, alert(6, clock.now()), "d6")

        rows = await store.home_rows(week_of(MONDAY), pending_limit=10, open_limit=10)
    numbers = rows.week
    assert numbers.start == MONDAY and numbers.opened == 4
    assert numbers.entered == {
        S.RESOLVED: 2,
        S.ROLLED_BACK: 1,
        S.SAFE_HOLD: 1,
        S.NEEDS_HUMAN: 1,
        S.AUTO_RESOLVED: 1,
    }
    assert numbers.approvals == 1
    # From the first alert to resolved: 30 min for one, 1 h and 1 s for the other.
    assert numbers.median_to_resolve == timedelta(seconds=(1800 + 3601) / 2)
    assert [i.id for i in rows.open.items] == [6, 5] and rows.open.total == 2


# ---------------------------------------------------------------- the publisher


class Gate(SystemClock):
    """The publisher's clock: waits are free while open; while shut, they wait there (counted)."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.open.set()
        self.parked = 0

    async def sleep(self, seconds: float) -> None:
        if not self.open.is_set():
            self.parked += 1
        await self.open.wait()


async def fixed_readiness() -> Readiness:
    return Readiness({"sqlite": Availability(ok=True)}, {}, ())


async def publisher_with(
    slack: DevSlack, store: SqliteStore, clock: SystemClock | None = None, **options: Any
) -> HomePublisher:
    client = AsyncWebClient(token=slack.token, base_url=slack.api_url)
    home = HomePublisher(
        store,
        client,
        clock or SystemClock(),
        Metrics(),
        policy=ApprovalPolicy({2: frozenset({"U0ALICE"})}),
        directory=SlackDirectory(client),
        admins=frozenset(),
        **options,
    )
    await home.start(fixed_readiness)
    return home


def published(slack: DevSlack, user: str | None = None) -> list[Any]:
    return [
        c
        for c in slack.calls
        if c.method == "views.publish"
        and c.response.get("ok")
        and user in (None, c.args["user_id"])
    ]


async def test_a_burst_of_changes_is_one_publish_a_viewer(
    devslack_factory: DevSlackFactory, tmp_path: Path
) -> None:
    slack = await devslack_factory()
    gate = Gate()
    async with await SqliteStore.open(tmp_path / "grace.db", SystemClock()) as store:
        home = await publisher_with(slack, store, clock=gate)
        try:
            for user in ("U0ALICE", "U0BOB"):
                await home.opened(user, slack.home.channel(user))
            await slack.wait_for(
                lambda: all(
                    "can act: `sqlite`" in slack.home.render(u) for u in ("U0ALICE", "U0BOB")
                )
            )
            before = len(published(slack))

            gate.open.clear()
            for n in range(30):  # each a commit: the loop runs between them
                await store.ingest_alerts([alert(n, datetime.now(UTC))], f"d{n}")
                home.changed()
            await slack.wait_for(lambda: gate.parked)
            assert len(published(slack)) == before, "nothing goes out while the burst lasts"
            gate.open.set()

            for user in ("U0ALICE", "U0BOB"):
                await slack.wait_for(lambda u=user: "Open incidents:* 30" in slack.home.render(u))
            assert len(published(slack)) == before + 2
        finally:
            await home.stop()


async def test_publishing_keeps_to_the_limit_and_waits_out_a_429(
    devslack_factory: DevSlackFactory, tmp_path: Path
) -> None:
    users = {f"U0P{n:02d}": f"p{n}" for n in range(12)}
    slack = await devslack_factory(users=users)
    slack.home.limit, slack.home.window = 10, 1.0  # a tighter Slack, to feel it in a second
    async with await SqliteStore.open(tmp_path / "grace.db", SystemClock()) as store:
        # 2 at once, then 8 a second: at most 10 in any second.
        home = await publisher_with(slack, store, rate=8.0, burst=2, debounce=0.0)
        try:
            for user in users:
                await home.opened(user, slack.home.channel(user))
            await slack.wait_for(
                lambda: all("can act" in slack.home.render(u) for u in users), timeout=20
            )
            calls = [c for c in slack.calls if c.method == "views.publish"]
            assert all(c.response["ok"] for c in calls), "never over the limit"
            assert len(calls) >= len(users) > slack.home.limit, "more than a window holds"

            # Slack says wait: GRACE waits as long, then publishes.
            slack.fail_next("views.publish", retry_after=1)
            seen = len(published(slack, "U0P00"))
            await home.tell("U0P00", "Your approval is recorded.")
            await slack.wait_for(lambda: len(published(slack, "U0P00")) > seen)
            mine = [c for c in slack.calls if c.method == "views.publish"]
            refused, taken = [c for c in mine if c.args.get("user_id") == "U0P00"][-2:]
            assert refused.response["error"] == "ratelimited" and taken.response["ok"]
            assert taken.at - refused.at >= 1.0
            assert "Your approval is recorded." in slack.home.render("U0P00")
        finally:
            await home.stop()


async def test_only_answers_in_a_home_channel_go_on_the_home(
    devslack_factory: DevSlackFactory, tmp_path: Path
) -> None:
    slack = await devslack_factory()

    class Inner:
        def __init__(self) -> None:
            self.told: list[tuple[str, str, str]] = []

        async def tell_user(self, channel: str, user: str, text: str) -> None:
            self.told.append((channel, user, text))

    async with await SqliteStore.open(tmp_path / "grace.db", SystemClock()) as store:
        home = await publisher_with(slack, store)
        try:
            inner = Inner()
            answers = HomeAnswers(inner, home)  # type: ignore[arg-type]
            await home.opened("U0ALICE", slack.home.channel("U0ALICE"))
            await answers.tell_user("C0ALERTS", "U0ALICE", "in the channel")
            await answers.tell_user(slack.home.channel("U0BOB"), "U0ALICE", "not her Home")
            await answers.tell_user(slack.home.channel("U0ALICE"), "U0ALICE", "on her Home")
            assert [t for _, _, t in inner.told] == ["in the channel", "not her Home"]
            await slack.wait_for(lambda: "on her Home" in slack.home.render("U0ALICE"))
        finally:
            await home.stop()


# ---------------------------------------------------------------- the stand-in's views.publish


async def test_the_stand_in_refuses_what_slack_refuses_for_views_publish(
    devslack_factory: DevSlackFactory,
) -> None:
    slack = await devslack_factory()
    client = AsyncWebClient(token=slack.token, base_url=slack.api_url)
    home = {"type": "home", "blocks": [{"type": "divider"}]}

    async def refusal(**args: Any) -> dict[str, Any]:
        with pytest.raises(SlackApiError) as info:
            await client.views_publish(**{"user_id": "U0ALICE", "view": home, **args})
        return info.value.response.data

    assert (await refusal(user_id="U0NOBODY"))["error"] == "invalid_arguments"
    assert (await refusal(view={**home, "type": "modal"}))["error"] == "invalid_arguments"
    too_many = {**home, "blocks": [{"type": "divider"}] * 101}
    assert (await refusal(view=too_many))["error"] == "invalid_arguments"
    huge = {
        **home,
        "private_metadata": "",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "z" * 2999}}] * 90,
    }
    assert (await refusal(view=huge))["error"] == "view_too_large"
    assert (await refusal(hash="1.1"))["error"] == "hash_conflict"

    first = (await client.views_publish(user_id="U0ALICE", view=home))["view"]
    second = (await client.views_publish(user_id="U0ALICE", view=home, hash=first["hash"]))["view"]
    assert second["id"] == first["id"] and second["hash"] != first["hash"]
    assert (await refusal(hash=first["hash"]))["error"] == "hash_conflict"

    slack.home.enabled = False
    assert (await refusal())["error"] == "not_enabled"
    slack.home.enabled = True

    slack.home.limit = 3  # two were taken: one more this minute, then Slack says wait
    await client.views_publish(user_id="U0BOB", view=home)
    assert (await refusal())["error"] == "ratelimited"
    assert slack.calls[-1].response["error"] == "ratelimited"


async def test_a_home_click_comes_with_the_view_and_no_channel(
    devslack_factory: DevSlackFactory,
) -> None:
    slack = await devslack_factory()
    client = AsyncWebClient(token=slack.token, base_url=slack.api_url)
    button = {
        "type": "button",
        "action_id": "go",
        "text": {"type": "plain_text", "text": "Go"},
        "confirm": {
            "title": {"type": "plain_text", "text": "Sure?"},
            "text": {"type": "mrkdwn", "text": "Really."},
            "confirm": {"type": "plain_text", "text": "Yes"},
            "deny": {"type": "plain_text", "text": "No"},
        },
    }
    view = {
        "type": "home",
        "private_metadata": "m",
        "blocks": [{"type": "actions", "block_id": "b", "elements": [button]}],
    }
    await client.views_publish(user_id="U0ALICE", view=view)
    bad = {
        **button,
        "confirm": {**button["confirm"], "deny": {"type": "plain_text", "text": "n" * 31}},
    }
    with pytest.raises(SlackApiError):
        await client.views_publish(
            user_id="U0ALICE", view={**view, "blocks": [{"type": "actions", "elements": [bad]}]}
        )

    got: list[dict[str, Any]] = []
    slack.signed_post = _capture(got)  # type: ignore[method-assign]
    with pytest.raises(ValueError, match="confirm"):
        await slack.home.click("U0ALICE", "go")
    assert await slack.home.click("U0ALICE", "go", confirm=False) is None and got == []
    await slack.home.click("U0ALICE", "go", confirm=True)
    [payload] = got
    assert payload["container"] == {"type": "view", "view_id": slack.homes["U0ALICE"]["id"]}
    assert payload["view"]["private_metadata"] == "m" and payload["actions"][0]["block_id"] == "b"
    assert "channel" not in payload and "response_url" not in payload
    event = await _opened_event(slack)
    assert event["type"] == "app_home_opened" and event["view"]["id"] == payload["view"]["id"]
    assert event["channel"] == slack.home.channel("U0ALICE") and event["channel"].startswith("D")


def _capture(got: list[dict[str, Any]]) -> Any:
    async def post(body: str, content_type: str, **_: Any) -> Delivery:
        form = dict(urllib.parse.parse_qsl(body))
        got.append(json.loads(form["payload"]) if "payload" in form else json.loads(body))
        return Delivery(200, "", {}, body, {"Content-Type": content_type})

    return post


async def _opened_event(slack: DevSlack) -> dict[str, Any]:
    got: list[dict[str, Any]] = []
    slack.signed_post = _capture(got)  # type: ignore[method-assign]
    await slack.home.open("U0ALICE")
    return got[0]["event"]


def test_both_manifests_turn_the_home_tab_on_and_subscribe_to_its_opening() -> None:
    for name in ("manifest.yml", "manifest.socket.yml"):
        manifest = yaml.safe_load((ROOT / name).read_text())
        assert manifest["features"]["app_home"]["home_tab_enabled"] is True
        assert "app_home_opened" in manifest["settings"]["event_subscriptions"]["bot_events"]


async def test_the_stand_ins_page_opens_homes_and_clicks_on_them(
    devslack_factory: DevSlackFactory,
) -> None:
    """`grace devslack` lets a team try the Home before installing anything."""
    slack = await devslack_factory()
    client = AsyncWebClient(token=slack.token, base_url=slack.api_url)
    confirm = {
        "title": {"type": "plain_text", "text": "Resume?"},
        "text": {"type": "plain_text", "text": "Really resume?"},
        "confirm": {"type": "plain_text", "text": "Resume"},
        "deny": {"type": "plain_text", "text": "Cancel"},
    }
    switch = {
        "type": "button",
        "action_id": ActionId.RESUME,
        "confirm": confirm,
        "text": {"type": "plain_text", "text": "Resume"},
    }
    view = {
        "type": "home",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": "*GRACE is paused*"}},
            {"type": "actions", "block_id": BlockId.HOME_SWITCH, "elements": [switch]},
        ],
    }
    await client.views_publish(user_id="U0BOB", view=view)
    got: list[dict[str, Any]] = []
    slack.signed_post = _capture(got)  # type: ignore[method-assign]
    slack.connect("http://127.0.0.1:9/slack/events")

    page_url = slack.api_url.removesuffix("api/")
    async with aiohttp.ClientSession() as http:
        async with http.get(page_url) as resp:
            page = await resp.text()
        assert "<h3>bob's Home</h3>" in page and "GRACE is paused" in page
        assert 'onsubmit="return confirm(&quot;Really resume?&quot;)"' in page
        token = re.search(r'name="form_token" value="([^"]+)"', page)
        assert token is not None
        base = {"form_token": token[1], "user": "U0ALICE"}
        async with http.post(f"{page_url}act/home", data=base) as resp:
            assert resp.status == 200
        clicked = {
            **base,
            "user": "U0BOB",
            "action_id": ActionId.RESUME,
            "block_id": BlockId.HOME_SWITCH,
            "confirm": "1",
        }
        async with http.post(f"{page_url}act/homeclick", data=clicked) as resp:
            assert resp.status == 200
    await slack.wait_for(lambda: len(got) == 2)
    click, opened = sorted(got, key=lambda d: d.get("type", ""))
    assert click["type"] == "block_actions" and click["user"]["id"] == "U0BOB"
    assert click["actions"][0]["action_id"] == ActionId.RESUME
    assert opened["event"]["type"] == "app_home_opened" and opened["event"]["user"] == "U0ALICE"
