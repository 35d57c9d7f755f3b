"""`grace simulate`: how GRACE reads a payload, a Slack message or a line, touching nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.cli import main

SAMPLES = Path(__file__).parents[1] / "engine" / "intake" / "samples"


@pytest.fixture
def configured(tmp_path, monkeypatch):
    """A config with an allowlisted database and container, and nothing else."""
    db = tmp_path / "data" / "orders.db"
    db.parent.mkdir()
    db.write_bytes(b"")
    config = tmp_path / "grace.yml"
    config.write_text(
        json.dumps(
            {
                "targets": {"sqlite": [f"{db.parent}/*.db"], "docker": ["container:web-*"]},
                "db": str(tmp_path / "grace.db"),
            }
        )
    )
    monkeypatch.setenv("GRACE_CONFIG", str(config))
    return db


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(["simulate", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_a_persons_line_is_read_and_its_plan_shown(configured, tmp_path, capsys):
    line = tmp_path / "said.txt"
    line.write_text(f"db at {configured} is locked again\n")
    status, out, _ = run(capsys, str(line))
    assert status == 0
    assert "Read as: text (1 alert)" in out
    assert "recognised: sqlite_database_locked (pattern sqlite-locked-said)" in out
    assert "because its label `integration` matches `person`, its text says `locked`" in out
    assert f"found db_path = {configured}" in out
    assert f"target: sqlite {configured} (the allowlist admits it)" in out
    assert "playbook: sqlite-recover-lock (Recover from a stale lock), tier 2" in out
    assert "Result: a plan was found." in out
    # Nothing was stored: simulate opens no database.
    assert not (tmp_path / "grace.db").exists()


def test_a_webhook_body_is_guessed_and_every_alert_read(configured, tmp_path, capsys):
    alerts = json.loads((SAMPLES / "alertmanager" / "vmalert_api_v2.json").read_text())
    alerts[0]["endsAt"] = "2099-01-01T00:00:00Z"  # vmalert sends a firing alert's end ahead
    body = tmp_path / "vmalert.json"
    body.write_text(json.dumps(alerts))
    status, out, _ = run(capsys, str(body))
    assert status == 0
    assert "Read as: alertmanager (2 alerts)" in out
    assert "target: docker container:web-1 (the allowlist admits it)" in out
    assert "resolved: GRACE never heals on a resolved alert" in out


def test_what_is_not_understood_says_why_and_exits_1(configured, tmp_path, capsys):
    body = tmp_path / "am.json"
    body.write_text(json.dumps([{"labels": {"alertname": "ContainerUnhealthy", "job": "x"}}]))
    status, out, _ = run(capsys, str(body), "--source", "alertmanager")
    assert status == 1
    assert "no name: looked in label `name`, label `container`" in out
    assert "no plan: Recognised `ContainerUnhealthy`" in out
    assert "Result: no plan." in out


def test_a_slack_message_event_is_read_as_its_layout(configured, capsys):
    status, out, _ = run(capsys, str(SAMPLES / "slack" / "grafana_firing.json"))
    assert "Read as: slack (1 alert)" in out and "integration=grafana" in out
    assert status in (0, 1)


def test_input_that_cannot_be_read_names_the_file_and_exits_2(configured, tmp_path, capsys):
    broken = tmp_path / "broken.json"
    broken.write_text('{"alerts": [')
    status, _, err = run(capsys, str(broken), "--source", "alertmanager")
    assert status == 2 and err.startswith(f"grace: {broken}: as alertmanager: invalid JSON")
    status, _, err = run(capsys, str(tmp_path / "missing.json"))
    assert status == 2 and "cannot read" in err
    status, _, err = run(capsys, str(broken), "--source", "pagerduty")
    assert status == 2 and "unknown source 'pagerduty'" in err
