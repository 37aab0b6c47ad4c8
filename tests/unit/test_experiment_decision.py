"""Decision metrics, guardrails and verdicts through ``analyze``; metric specs; CUPED windows; days."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from offline.experiments.analysis import DAY_MS, AnalysisOptions, AnalysisReport, ExperimentResult, analyze
from offline.experiments.metric_specs import DEFAULT_METRICS, load_metric_specs, parse_metric_specs
from offline.experiments.outcome_logs import AnalysisInputError, Exposures, Outcomes

T0 = 1_764_547_200_000  # 2025-12-01T00:00:00Z


def experiment(
    *,
    units: int = 3_000,
    stream_lift: float = 0.0,
    skip_lift: float = 0.0,
    treatment_share: float = 0.5,
    days: int = 7,
    pre_days: int = 0,
    seed: int = 0,
) -> tuple[Exposures, Outcomes]:
    """A two-arm experiment: units arrive over ``days``; streams and skips after exposure (and before)."""
    rng = np.random.default_rng(seed)
    exposures: list[dict[str, object]] = []
    outcomes: list[dict[str, object]] = []
    for i in range(units):
        unit = f"u{i}"
        treated = rng.random() < treatment_share
        ts = T0 + int(rng.integers(0, days * DAY_MS))
        exposures.append(
            {"ts_ms": ts, "unit_id": unit, "experiment": "exp", "variant": "treatment" if treated else "control"}
        )
        activity = rng.gamma(2.0, 1.5)
        streams = rng.poisson(activity * (1.0 + stream_lift * treated) * 3)
        skips = rng.poisson(activity * (1.0 + skip_lift * treated))
        for metric, count in (("stream", streams), ("skip", skips)):
            outcomes += [{"ts_ms": ts + int(rng.integers(0, DAY_MS)), "unit_id": unit, "metric": metric}] * count
        if pre_days:
            for _ in range(rng.poisson(activity * 3)):
                ago = int(rng.integers(1, pre_days * DAY_MS))
                outcomes.append({"ts_ms": ts - ago, "unit_id": unit, "metric": "stream"})
    return Exposures.from_records(exposures), Outcomes.from_records(outcomes)


def result(report: AnalysisReport) -> ExperimentResult:
    (only,) = report.experiments
    return only


def test_a_better_arm_with_a_safe_guardrail_ships() -> None:
    exp = result(analyze(*experiment(stream_lift=0.3)))
    assert exp.verdict is not None and exp.verdict.kind == "ship" and exp.verdict.variant == "treatment"
    assert any("streams improved" in r for r in exp.verdict.reasons)
    assert any("guardrail skip_rate within its 5% margin" in r for r in exp.verdict.reasons)


def test_a_harmed_guardrail_stops_even_when_the_success_metric_wins() -> None:
    exp = result(analyze(*experiment(stream_lift=0.3, skip_lift=0.8)))
    assert exp.verdict is not None and exp.verdict.kind == "stop", exp.verdict
    assert exp.verdict.label == "stop: guardrail harmed (treatment)"
    assert any("skip_rate got significantly worse" in r for r in exp.verdict.reasons)


def test_no_effect_keeps_running_until_the_plan_is_complete() -> None:
    exposures, outcomes = experiment(stream_lift=0.0, seed=3)
    running = result(analyze(exposures, outcomes))
    assert running.verdict is not None and running.verdict.kind == "keep_running"
    assert any("no success metric has improved" in r for r in running.verdict.reasons)
    done = result(analyze(exposures, outcomes, AnalysisOptions(planned_units=2_000)))  # fewer than the 3,000 seen
    assert done.verdict is not None and done.verdict.kind == "dont_ship"
    assert any("planned sample is complete" in r for r in done.verdict.reasons)


def test_a_worse_success_metric_is_dont_ship() -> None:
    exp = result(analyze(*experiment(stream_lift=-0.3, skip_lift=-0.3)))
    assert exp.verdict is not None and exp.verdict.kind == "dont_ship"
    assert any("streams got significantly worse" in r for r in exp.verdict.reasons)


def test_a_sample_ratio_mismatch_makes_the_result_invalid() -> None:
    report = analyze(
        *experiment(stream_lift=0.15, treatment_share=0.6),
        AnalysisOptions(expected_weights={"exp": {"control": 0.5, "treatment": 0.5}}),
    )
    exp = result(report)
    assert exp.verdict is not None and exp.verdict.kind == "invalid"
    assert exp.verdict.label == "invalid: sample-ratio mismatch"


def test_sequential_needs_more_evidence_than_fixed() -> None:
    exposures, outcomes = experiment(units=1_200, stream_lift=0.08, seed=5)
    seq = result(analyze(exposures, outcomes, AnalysisOptions(method="sequential"))).decision[0].inference.relative[0]
    fix = result(analyze(exposures, outcomes, AnalysisOptions(method="fixed"))).decision[0].inference.relative[0]
    assert seq is not None and fix is not None
    assert seq.estimate == pytest.approx(fix.estimate)
    assert seq.high - seq.low > fix.high - fix.low


def test_cuped_uses_only_outcomes_inside_the_window_before_exposure() -> None:
    exposures, outcomes = experiment(units=2_000, pre_days=10, seed=7)
    wide = result(analyze(exposures, outcomes, AnalysisOptions(cuped_window_days=14))).decision[0].inference
    off = result(analyze(exposures, outcomes, AnalysisOptions(cuped_window_days=0))).decision[0].inference
    narrow = result(analyze(exposures, outcomes, AnalysisOptions(cuped_window_days=0.5))).decision[0].inference
    assert off.variance_reduction == 0.0 and off.theta == 0.0
    assert wide.variance_reduction > narrow.variance_reduction > 0.0
    # pre-period outcomes never count as results
    assert [a.raw for a in wide.arms] == [a.raw for a in off.arms]


def test_the_timeline_is_cumulative_per_utc_day() -> None:
    exp = result(analyze(*experiment(units=1_500, stream_lift=0.15, days=5)))
    days = [p.day for p in exp.timeline]
    assert days[0] == "2025-12-01" and len(days) >= 5
    totals = [sum(p.units) for p in exp.timeline]
    assert totals == sorted(totals) and totals[-1] == exp.units
    assert all(p.end_ms - T0 == (i + 1) * DAY_MS for i, p in enumerate(exp.timeline))
    final = exp.timeline[-1].metrics[0].relative[0]
    assert final == exp.decision[0].inference.relative[0]


def test_metric_specs_name_the_bad_field(tmp_path: Path) -> None:
    assert parse_metric_specs({"metrics": [{"name": "s", "role": "success", "numerator": "stream"}]})[0].name == "s"
    cases = [
        ({"metrics": [{"name": "g", "role": "guardrail", "numerator": "skip"}]}, r"metrics\[0\]\.margin"),
        ({"metrics": [{"name": "s", "role": "winner", "numerator": "x"}]}, r"metrics\[0\]\.role"),
        ({"metrics": [{"name": "s", "role": "success", "numerator": "x", "direction": "up"}]}, "direction"),
        ({"metrics": [{"name": "s", "role": "success", "numerator": "x", "denominator": []}]}, "denominator"),
        ({"metrics": [{"name": "s", "role": "secondary", "numerator": "x"}]}, "at least one success"),
        ({"metrics": [{"name": "s", "role": "success", "numerator": "x", "extra": 1}]}, "unknown keys"),
    ]
    for doc, pattern in cases:
        with pytest.raises(AnalysisInputError, match=pattern):
            parse_metric_specs(doc)
    path = tmp_path / "metrics.yaml"
    path.write_text("metrics:\n  - {name: streams, role: success, numerator: stream}\n  - {name: g, role: guardrail}\n")
    with pytest.raises(AnalysisInputError, match=r"metrics.yaml: metrics\[1\]\.numerator"):
        load_metric_specs(path)
    assert {s.role for s in DEFAULT_METRICS} == {"success", "guardrail", "secondary"}
