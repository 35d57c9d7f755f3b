"""The weekly report as people read it, and `grace report --now` posting one."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta

from bot.devslack.blockkit import block_errors
from bot.weekly_report import report_message
from engine.autonomy import TierChange
from engine.clock import SystemClock
from engine.stats import PeriodStats, StatsReport
from engine.weekly import Period, WeeklyReport
from storage.store import SqliteStore

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def _stats(since: datetime, until: datetime, incidents: int = 0) -> PeriodStats:
    return PeriodStats(
        since=since,
        until=until,
        incidents=incidents,
        resolved=0,
        healed_alone=0,
        approved=0,
        rejected=0,
        expired=0,
        needed_human=incidents,
        heals=0,
        heal_successes=0,
        resolve_p50_s=None,
        resolve_p90_s=None,
        approve_p50_s=None,
        approve_p90_s=None,
        top_alerts=(("<!channel> Boom", incidents),) if incidents else (),
        playbooks=(),
    )


def _report(**changes) -> WeeklyReport:
    period = Period(start=T0 - timedelta(days=7), end=T0)
    before = period.before()
    fields = {
        "period": period,
        "tz": "UTC",
        "stats": StatsReport(
            current=_stats(period.start, period.end, 6), previous=_stats(before.start, before.end)
        ),
        "days": (),
        "tier_changes": (),
        "toil": (),
        **changes,
    }
    return WeeklyReport(**fields)


def _body(message: dict) -> str:
    return "\n".join(b["text"]["text"] for b in message["blocks"] if b["type"] == "section")


def test_the_report_names_tier_changes_and_toil_and_escapes_alert_names():
    demoted = TierChange(
        playbook_id="restart-api", tier=2, base_tier=1, by="grace", reason="2/6", at=T0
    )
    promoted = TierChange(
        playbook_id="wal", tier=1, base_tier=2, by="U0LEAD", reason="25/25", at=T0
    )
    back = TierChange(playbook_id="vac", tier=2, base_tier=2, by="grace", reason="1/6", at=T0)
    message = report_message(
        _report(tier_changes=(demoted, promoted, back), toil=(("<!channel> Boom", 6), ("Odd", 2))),
        [],
        {},
        "0 9 * * MON",
    )
    assert block_errors(message["blocks"]) == []
    assert message["text"] == "GRACE's report: Mon 23 Nov 08:00 to Mon 30 Nov 08:00"
    body = _body(message)
    assert "• `restart-api` demoted to tier 2 (catalog tier 1) by grace: 2/6" in body
    assert "• `wal` promoted to tier 1 (catalog tier 2) by <@U0LEAD>: 25/25" in body
    assert (
        "*Toil candidates* (needed a human, no playbook): `&lt;!channel&gt; Boom` 6 · `Odd` 2"
        in body
    )
    assert "<!channel>" not in body
    assert "on schedule `0 9 * * MON`" in message["blocks"][-1]["elements"][0]["text"]


def test_a_huge_report_stays_inside_slacks_block_limits():
    toil = tuple((f"Alert{n:04d}" + "x" * 200, n) for n in range(60))
    message = report_message(_report(toil=toil), [], {})
    assert block_errors(message["blocks"]) == []
    assert "on demand" in message["blocks"][-1]["elements"][0]["text"]


async def test_report_now_posts_the_report_and_its_chart_in_its_thread(devslack, tmp_path):
    db = tmp_path / "grace.db"
    store = await SqliteStore.open(db, SystemClock())
    await store.close()
    env = {
        **os.environ,
        "SLACK_BOT_TOKEN": devslack.token,
        "SLACK_API_URL": devslack.api_url,
        "GRACE_DB": str(db),
    }
    env.pop("GRACE_CONFIG", None)

    async def report(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "report",
            *args,
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    code, out, err = await report("--now", "--channel", "C0OPS")
    assert code == 0, err
    [posted] = devslack.messages("C0OPS")
    assert posted.text.startswith("GRACE's report: ")
    assert f"report posted in C0OPS (ts {posted.ts})" in out
    [upload] = devslack.uploads.values()
    assert upload.thread_ts == posted.ts and upload.data.startswith(b"\x89PNG")

    code, _, err = await report("--now", "--channel", "#ops")
    assert code == 2 and "--channel: " in err and "not a channel ID" in err
    code, _, err = await report("--now")
    assert code == 2 and "--channel is needed" in err
    code, _, err = await report("--now", "--channel", "C0NOWHERE")
    assert code == 1 and "Slack refused the report: channel_not_found" in err
    assert len(devslack.messages("C0OPS")) == 1


def test_report_without_now_is_refused(capsys):
    from bot.cli import main

    try:
        main(["report"])
    except SystemExit as exit_:
        assert exit_.code == 2
    assert "--now" in capsys.readouterr().err


def test_a_bad_weekly_report_setting_names_the_file_and_field(monkeypatch, tmp_path, capsys):
    from bot.cli import main

    config = tmp_path / "grace.yml"
    config.write_text("weekly_report: {channel: C0OPS, cron: '0 9 * *', tz: Europe/Berlin}\n")
    monkeypatch.setenv("GRACE_CONFIG", str(config))
    assert main(["check"]) == 2
    err = capsys.readouterr().err
    assert f"{config}: weekly_report.cron: Value error, '0 9 * *' is not a cron" in err
