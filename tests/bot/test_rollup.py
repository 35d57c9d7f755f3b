"""The storm rollup: every incident a line, within Slack's block limits, and a Show menu."""

from __future__ import annotations

import json

from bot.devslack import block_errors
from bot.ids import ActionId
from bot.rollup import rollup_message
from engine.models import IncidentState
from engine.records import Rollup
from tests.bot.samples import HOSTILE, incident


def storm(n: int, carded: frozenset[int] = frozenset()) -> Rollup:
    base = incident(IncidentState.NEEDS_HUMAN)
    members = []
    for k in range(1, n + 1):
        alert = base.alert.model_copy(
            update={"name": f"StormAlert{k % 5} {HOSTILE}", "labels": {"instance": f"host-{k}"}}
        )
        members.append(
            base.model_copy(
                update={"id": k, "alert": alert, "plan": None, "diagnosis": None, "alert_count": 3}
            )
        )
    return Rollup(1, "C1", None, members, carded)


def lines(message: dict) -> str:
    return "\n".join(b["text"]["text"] for b in message["blocks"] if b["type"] == "section")


def menus(message: dict) -> list[dict]:
    return [e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]


def test_five_hundred_incidents_are_each_a_line_in_one_message_slack_accepts():
    message = rollup_message(storm(500))
    assert block_errors(message["blocks"]) == []
    assert len(message["blocks"]) <= 50
    shown = lines(message)
    for k in range(1, 501):
        assert f"• #{k} :raising_hand: Needs a human · StormAlert{k % 5}" in shown
    assert "on `host-500` · ×3" in shown
    assert all(len(b["text"]["text"]) <= 3000 for b in message["blocks"] if "text" in b)
    assert "Alert storm: 500 incident(s)" in json.dumps(message["blocks"])


def test_alert_text_in_a_rollup_cannot_mention_or_link():
    rendered = json.dumps(rollup_message(storm(3)))
    assert "<!channel>" not in rendered and "<@U0BOSS>" not in rendered
    assert "<https://evil" not in rendered


def test_show_menus_offer_every_incident_without_a_card_100_at_a_time():
    message = rollup_message(storm(250, carded=frozenset({7})))
    selects = menus(message)
    assert [s["type"] for s in selects] == ["static_select"] * 3
    assert [s["action_id"] for s in selects] == [f"{ActionId.SHOW_CARD}:{k}" for k in range(3)]
    values = [o["value"] for s in selects for o in s["options"]]
    assert values == [str(k) for k in range(1, 251) if k != 7]
    assert all(len(s["options"]) <= 100 for s in selects)
    assert all(len(o["text"]["text"]) <= 75 for s in selects for o in s["options"])
    assert "#7 :raising_hand: Needs a human" in lines(message)
    assert "its own card below" in lines(message).split("\n")[6]


def test_beyond_what_a_message_holds_the_rest_are_counted():
    message = rollup_message(storm(3000))
    assert block_errors(message["blocks"]) == []
    shown = lines(message)
    last = shown.splitlines()[-1]
    assert last.startswith("… and ") and last.endswith("more: `/grace incidents` lists them")
    listed = shown.count("\n• #") + 1
    assert listed + int(last.split()[2]) == 3000
    assert len(menus(message)) == 25, "Slack's most: 2,500 to pick from"
