"""The labelled set (tests/labelled/) holds GRACE to issue 15's targets.

Reading is deterministic, so the bench's figures are checked here too: at
least 150 samples across every source and people's words, at least 95% of
them understood, no proposal for noise or a resolved alert, and no target
outside the allowlists.
"""

from __future__ import annotations

from collections import Counter

from bench.diagnosis_eval import MIN_UNDERSTOOD, SAMPLES, evaluate, load_samples
from engine.intake.sources import webhook_plugins


def test_the_set_covers_every_source_and_peoples_words():
    samples = load_samples()
    assert len(samples) >= 150
    folders = Counter(name.split("/", 1)[0] for name, _ in samples)
    assert set(webhook_plugins()) | {"slack", "people"} <= set(folders), folders
    slack_layouts = {name.split("/")[1].split("_")[0] for name, _ in samples if "slack/" in name}
    assert {"alertmanager", "grafana", "sentry", "datadog", "cloudwatch"} <= slack_layouts
    kinds = Counter(
        "noise" if "noise" in s["expect"] else "resolved" if s["expect"].get("resolved") else "p"
        for _, s in samples
    )
    assert kinds["noise"] >= 20 and kinds["resolved"] >= 10, kinds


async def test_grace_meets_the_targets_on_the_labelled_set():
    report = await evaluate(SAMPLES)
    misses = [f"{o.path}: {o.got}" for o in report.outcomes if o.wrong]
    assert report.understood_share >= MIN_UNDERSTOOD, misses
    assert report.noise_proposals == [], misses
    assert report.outside == [], misses
