"""The planner: Welch sample size, a free namespace range in the surface's layer, duration from
traffic, and a plain verdict when the experiment cannot reach power in time."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from experimentation.planner import (
    Intent,
    MetricEstimate,
    TrafficEstimate,
    free_ranges,
    metric_estimate,
    plan,
    traffic_estimate,
    users_per_arm,
)

METRIC = MetricEstimate(mean=1.0, std=1.0, source="stated")


def intent(mde: float = 0.1, max_days: float = 14.0, arms: int = 2) -> Intent:
    variants = {"control": {}, **{f"t{i}": {"diversity_cap": 2 + i} for i in range(1, arms)}}
    return Intent("cap", "home", variants, "stream", mde, ("skip",), max_days)


def test_the_sample_size_is_the_textbook_welch_figure() -> None:
    assert users_per_arm(intent(), METRIC) == 1570  # 2 (1.95996 + 0.84162)^2 / 0.1^2, rounded up
    # three arms: each treatment against control at alpha / 2
    assert users_per_arm(intent(arms=3), METRIC) > 1570
    assert math.isinf(users_per_arm(intent(), MetricEstimate(0.0, 1.0, "zero")))


def test_the_plan_takes_the_smallest_free_range_that_reaches_power_in_time() -> None:
    running = {
        "layers": [
            {
                "key": "home-experiments",
                "surface": "home",
                "experiments": [{"key": "old", "status": "running", "range": [0.0, 0.5]}],
            }
        ]
    }
    assert free_ranges(running, "home-experiments") == [(0.5, 1.0)]
    p = plan(intent(), running, METRIC, TrafficEstimate(2_000.0, "stated"))
    # 3,140 users over 14 days at 2,000 a day need 11.2 % of the users: a 15 % range after the old one
    assert p.range == (0.5, 0.65) and p.powered and p.weights == (0.5, 0.5)
    assert p.days == pytest.approx(3140 / (2000 * 0.15)) and "powered: 1,570 users per arm" in p.verdict


def test_it_says_plainly_when_the_experiment_cannot_reach_power() -> None:
    p = plan(intent(mde=0.01), {}, METRIC, TrafficEstimate(1_000.0, "stated"))
    assert not p.powered and p.range == (0.0, 1.0)
    assert p.verdict.startswith("NOT powered within 14 days: needs 313,956 users (156,978 per arm)")
    assert "needs 314.0 days" in p.verdict


def test_bad_intents_are_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="mde: a relative effect"):
        plan(intent(mde=2.0), {}, METRIC, TrafficEstimate(1.0, "stated"))


def test_metric_and_traffic_come_from_the_logs(tmp_path: Path) -> None:
    outcomes = tmp_path / "outcomes.jsonl"
    values = [1.0, 3.0, 2.0, 2.0]
    outcomes.write_text(
        "".join(
            json.dumps({"ts_ms": 1, "unit_id": f"u{i}", "metric": "stream", "value": v}) + "\n"
            for i, v in enumerate(values)
        )
    )
    estimate = metric_estimate([outcomes], "stream", METRIC)
    assert estimate.mean == pytest.approx(2.0) and estimate.std == pytest.approx(0.8164966, rel=1e-6)
    assert metric_estimate([outcomes], "missing", METRIC) is METRIC
    exposures = tmp_path / "exposures.jsonl"
    day = 86_400_000
    exposures.write_text(
        "".join(
            json.dumps({"ts_ms": t, "unit_id": u, "experiment": "old", "variant": "a"}) + "\n"
            for t, u in [(0, "u1"), (day, "u2"), (2 * day, "u3"), (2 * day, "u1")]
        )
    )
    document = {"experiments": [{"key": "old", "surface": "home"}]}
    traffic = traffic_estimate([exposures], document, "home", TrafficEstimate(5.0, "stated"))
    assert traffic.users_per_day == pytest.approx(1.5)  # 3 users over 2 days
    assert traffic_estimate([exposures], document, "now_playing", TrafficEstimate(5.0, "stated")).users_per_day == 5.0
