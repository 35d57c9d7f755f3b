"""A cloud playbook through the whole bot: a CloudWatch alarm on the generic
webhook, an approval in Slack, and a real change in moto's AWS; and what GRACE
says when a platform is not configured here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.models import IncidentState
from tests.engine.executors.moto_server import REGION, World, moto_url_fixture, reset  # noqa: F401

S = IncidentState
GROUP = "web-prod"


def cpu_alarm(group: str) -> str:
    return json.dumps(
        {
            "alerts": [
                {
                    "name": "web-prod-cpu-high",
                    "severity": "warning",
                    "labels": {
                        "alarm_name": "web-prod-cpu-high",
                        "metric": "CPUUtilization",
                        "namespace": "AWS/EC2",
                        "AutoScalingGroupName": group,
                    },
                    "text": "Threshold Crossed: 1 datapoint [91.2] > 80.0",
                }
            ]
        }
    )


@pytest.fixture
def no_aws_of_the_machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Nothing of this machine's AWS set-up is read, and never its metadata address."""
    for name in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


async def test_a_cpu_alarm_scales_the_group_out_after_approval(
    make_harness, moto_url, no_aws_of_the_machine, monkeypatch
):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    reset(moto_url)
    aws = World(moto_url)
    aws.group(GROUP, min_size=1, max_size=4, desired=2)
    h = await make_harness(
        targets={"aws": ["asg:web-*"]}, aws_endpoint_url=moto_url, aws_region=REGION
    )

    status, _ = await h.post("generic", cpu_alarm(GROUP))

    assert status == 200
    card = await h.card()
    await h.click(card)
    incident = await h.finished(card, within_s=60)
    assert incident.state is S.RESOLVED, incident.reason
    assert aws.capacity(GROUP) == {"desired": 3, "min": 1, "max": 4}
    thread = h.thread(card)
    assert any("Snapshot taken: `aws asg web-prod: desired 2 (min 1, max 4)`." in t for t in thread)


async def test_a_group_outside_the_allowlist_is_refused_and_left_alone(
    make_harness, moto_url, no_aws_of_the_machine, monkeypatch
):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    reset(moto_url)
    aws = World(moto_url)
    aws.group("billing", min_size=1, max_size=4, desired=2)
    h = await make_harness(
        targets={"aws": ["asg:web-*"]}, aws_endpoint_url=moto_url, aws_region=REGION
    )

    await h.post("generic", cpu_alarm("billing"))

    card = await h.card()
    told = await h.slack.wait_for(lambda: [t for t in h.thread(card) if "Needs a human" in t])
    assert "allowlist" in told[0]
    assert aws.capacity("billing") == {"desired": 2, "min": 1, "max": 4}


async def test_an_unconfigured_platform_is_named_on_the_card_without_a_traceback(
    make_harness, no_aws_of_the_machine, caplog
):
    h = await make_harness(targets={"aws": ["asg:web-*"]}, aws_region=REGION)

    await h.post("generic", cpu_alarm(GROUP))

    card = await h.card()
    told = await h.slack.wait_for(lambda: [t for t in h.thread(card) if "Needs a human" in t])
    assert "The `aws` executor cannot act here: no AWS credentials" in told[0]
    assert "Traceback" not in caplog.text
    [incident] = await h.incidents()
    assert incident.state is S.NEEDS_HUMAN
