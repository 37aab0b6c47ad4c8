"""``infer_from_moments`` (per-arm sufficient statistics) against ``infer_metric`` (per-unit arrays)."""

from __future__ import annotations

import numpy as np
import pytest

from offline.experiments.analysis import AnalysisOptions, analyze
from offline.experiments.inference import MetricInference, infer_from_moments, infer_metric, metric_moments
from offline.experiments.outcome_logs import Exposures, Outcomes


def _flat(r: MetricInference) -> np.ndarray:
    out = [r.theta, r.variance_reduction]
    for a in r.arms:
        out += [a.n, a.raw, a.adjusted, a.variance]
    for lift in (*r.absolute, *r.relative):
        assert lift is not None
        out += [lift.estimate, lift.se, lift.low, lift.high, lift.p_value]
    return np.array(out, dtype=np.float64)


def _data(seed: int = 4, n: int = 6000) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    arm = rng.integers(0, 3, n).astype(np.intp)
    y = rng.poisson(3.0, n).astype(np.float64) + 0.4 * arm
    d = y + rng.poisson(2.0, n)
    x = rng.poisson(3.0, n) + 0.5 * y
    xd = x + rng.poisson(1.0, n)
    return arm, y, d, x, xd


@pytest.mark.parametrize("kind", ["mean", "mean+cuped", "ratio", "ratio+cuped"])
@pytest.mark.parametrize("method", ["fixed", "sequential"])
def test_moments_core_equals_the_array_results(kind: str, method: str) -> None:
    arm, y, d, x, xd = _data()
    args = {
        "mean": (y, None, None, None),
        "mean+cuped": (y, None, x, None),
        "ratio": (y, d, None, None),
        "ratio+cuped": (y, d, x, xd),
    }[kind]
    direct = infer_metric(arm, *args, n_arms=3, method=method)  # type: ignore[arg-type]
    raw = infer_from_moments(metric_moments(arm, *args, n_arms=3), method=method)  # type: ignore[arg-type]
    assert np.allclose(_flat(raw), _flat(direct), rtol=1e-10, atol=0.0)
    if "cuped" in kind:
        assert direct.theta != 0.0 and direct.variance_reduction > 0.0


def test_moments_add_over_disjoint_units_and_reorder_arms() -> None:
    arm, y, d, x, xd = _data(seed=5)
    half = arm.shape[0] // 2
    whole = metric_moments(arm, y, d, x, xd, n_arms=3)
    first = metric_moments(arm[:half], y[:half], d[:half], x[:half], xd[:half], n_arms=3)
    second = metric_moments(arm[half:], y[half:], d[half:], x[half:], xd[half:], n_arms=3)
    summed = first + second
    assert np.array_equal(summed.n, whole.n)
    assert np.allclose(summed.products, whole.products, rtol=1e-14)  # integer data: exact in practice
    swapped = infer_from_moments(whole.take([2, 0, 1]))
    direct = infer_metric(np.array([1, 2, 0])[arm], y, d, x, xd, n_arms=3)
    assert swapped.arms[0].raw == pytest.approx(direct.arms[0].raw, rel=1e-12)
    assert swapped.theta == pytest.approx(direct.theta, rel=1e-9)


def test_a_configured_variant_without_units_is_an_empty_arm_in_decision_and_timeline() -> None:
    day = 86_400_000
    exposures = [
        {"ts_ms": day + i, "unit_id": f"u{i}", "experiment": "e", "variant": "control" if i % 2 else "lite"}
        for i in range(40)
    ]
    outcomes = [
        {"ts_ms": day + 1_000 + i, "unit_id": f"u{i}", "metric": "stream", "value": float(i % 3)} for i in range(40)
    ]
    report = analyze(
        Exposures.from_records(exposures),
        Outcomes.from_records(outcomes),
        AnalysisOptions(expected_weights={"e": {"control": 1.0, "lite": 1.0, "heavy": 1.0}}),
    )
    (exp,) = report.experiments
    assert exp.variants == ("control", "lite", "heavy")
    assert [a.n for a in exp.decision[0].inference.arms] == [20, 20, 0]
    assert exp.timeline and exp.timeline[-1].units == (20, 20, 0)
    assert exp.srm.flagged
