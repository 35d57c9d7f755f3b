"""Dry-run and playbook texts, the rejection modal, form values and `/grace heal` parsing."""

from __future__ import annotations

import pytest

from bot.blocks import TEXT_LIMIT
from bot.devslack import MAX_VIEW_BLOCKS, block_errors
from bot.ids import ActionId, BlockId, CallbackId, CardButton, RejectForm
from bot.listeners.commands import HealRequest, parse_heal, slack_unescape
from bot.modals import REASON_MAX, reject_modal
from bot.playbook_text import dry_run_text, playbooks_text
from engine.catalog import PlaybookSpec
from engine.models import Plan, PlannedBenchmark, PlannedCheck, PlannedStep, Target
from engine.proposal import DryRun

HOSTILE = "<!channel> & <https://evil.example|x>"
PLAN = Plan(
    playbook_id="fix-it",
    title=f"Fix {HOSTILE}",
    tier=3,
    target=Target(executor="sqlite", name=f"/db/{HOSTILE}.db"),
    steps=(
        PlannedStep(action="wal_checkpoint", params={"mode": HOSTILE}, timeout_s=60),
        PlannedStep(action="vacuum", timeout_s=2.5),
    ),
    checks=(PlannedCheck(check="integrity_ok"), PlannedCheck(check="size", params={"max": 3})),
    benchmarks=(PlannedBenchmark(benchmark="read_latency", params={"n": 5}, tolerance=0.25),),
)


def test_dry_run_text_says_everything_and_escapes_it():
    text = dry_run_text(DryRun(plan=PLAN, snapshot=f"a copy of {HOSTILE}"))
    lines = text.splitlines()
    assert lines[0].startswith(":test_tube: *Dry run: nothing was touched.*")
    for line in [
        "*Playbook:* Fix &lt;!channel&gt; &amp; &lt;https://evil.example|x&gt; (`fix-it`), "
        "tier 3: two approvers",
        "*Target:* sqlite `/db/&lt;!channel&gt; &amp; &lt;https://evil.example|x&gt;.db`",
        "*1. Snapshot:* a copy of &lt;!channel&gt; &amp; &lt;https://evil.example|x&gt;",
        "   1. `wal_checkpoint` mode=&lt;!channel&gt; &amp; &lt;https://evil.example|x&gt; "
        "(deadline 60 s)",
        "   2. `vacuum` (deadline 2.5 s)",
        "   • `integrity_ok`",
        "   • `size` max=3",
        "   • `read_latency` n=5: may be at most 25% slower after than before",
        f"Plan `{PLAN.hash}`",
    ]:
        assert line in lines, line
    assert "restores that snapshot if verification fails" in text
    assert "<!channel>" not in text and "<https" not in text


def test_dry_run_text_without_benchmarks_says_none_and_is_capped():
    plain = PLAN.model_copy(update={"benchmarks": ()})
    assert "   none" in dry_run_text(DryRun(plan=plain, snapshot="s")).splitlines()
    huge = dry_run_text(DryRun(plan=plain, snapshot="x" * 50_000))
    assert len(huge) == TEXT_LIMIT and huge.endswith("… (truncated)")


def test_playbooks_text():
    spec = PlaybookSpec.model_validate(
        {
            "id": "fix-it",
            "title": "Fix <it>",
            "treats": ["broken"],
            "tier": 2,
            "target": {"executor": "sqlite", "from_label": "db_path"},
            "steps": [{"action": "wal_checkpoint"}],
            "checks": [{"check": "integrity_ok"}],
            "approval": {"required": 2},
        }
    )
    text = playbooks_text([spec])
    assert (
        "• `fix-it`: Fix &lt;it&gt; · tier 2 (two approvers) · executor `sqlite` · "
        "TARGET is its `db_path`"
    ) in text
    assert "no playbooks" in playbooks_text([])


def test_the_reject_modal_fits_slack_and_requires_a_bounded_reason():
    form = RejectForm(42, "abc123", "C0ALERTS")
    view = reject_modal(form).to_dict()
    assert view["callback_id"] == CallbackId.REJECT
    assert RejectForm.decode(view["private_metadata"]) == form
    assert block_errors(view["blocks"], "/view/blocks", MAX_VIEW_BLOCKS) == []
    assert all(len(view[k]["text"]) <= 24 for k in ("title", "submit", "close"))
    [field] = [b for b in view["blocks"] if b["type"] == "input"]
    assert field["block_id"] == BlockId.REJECT_REASON and not field.get("optional")
    element = field["element"]
    assert element["action_id"] == ActionId.REJECT_REASON
    assert (element["type"], element["multiline"], element["max_length"]) == (
        "plain_text_input",
        True,
        REASON_MAX,
    )


@pytest.mark.parametrize(
    "value",
    [
        "",
        "null",
        "{}",
        "[1]",
        '{"incident": 1, "plan": "abc"}',
        '{"incident": "1", "plan": "abc", "channel": "C0A"}',
        '{"incident": true, "plan": "abc", "channel": "C0A"}',
        '{"incident": 0, "plan": "abc", "channel": "C0A"}',
        '{"incident": 1, "plan": "ABC!", "channel": "C0A"}',
        '{"incident": 1, "plan": "abc", "channel": "<!channel>"}',
        '{"incident": 1, "plan": "abc", "channel": 5}',
    ],
)
def test_foreign_form_metadata_is_refused(value):
    with pytest.raises(ValueError, match="not a GRACE rejection form"):
        RejectForm.decode(value)


@pytest.mark.parametrize(
    "value", ['{"incident": 7, "plan": 1}', '{"incident": 7, "plan": "<@U1>"}', "7"]
)
def test_button_values_are_checked_too(value):
    with pytest.raises(ValueError, match="not a GRACE button value"):
        CardButton.decode(value)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["p", "/t.db"], HealRequest("p", "/t.db", dry_run=False)),
        (["p", "/t.db", "--dry-run"], HealRequest("p", "/t.db", dry_run=True)),
        (["--DRY-RUN", "p", "/t.db"], HealRequest("p", "/t.db", dry_run=True)),
        ([], "`heal` is missing PLAYBOOK and TARGET"),
        (["p"], "`heal` is missing TARGET"),
        (["p", "t", "x"], "`heal` takes two arguments, got 3: `p`, `t`, `x`"),
        (["p", "t", "--now"], "Unknown option `--now` for `heal`"),
        (["<!here>"], "`heal` is missing TARGET"),
    ],
)
def test_parse_heal(args, expected):
    parsed = parse_heal(args)
    if isinstance(expected, HealRequest):
        assert parsed == expected
    else:
        assert isinstance(parsed, str) and parsed.startswith(expected)
        assert "/grace heal PLAYBOOK TARGET [--dry-run]" in parsed


def test_slack_unescape():
    assert slack_unescape("a &lt;b&gt; &amp;lt; &amp;") == "a <b> &lt; &"
