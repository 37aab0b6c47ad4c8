"""CUPED (against statsmodels OLS), ratio metrics, sequential intervals, and the A/A false-positive table."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm

from offline.experiments.aa_simulation import simulate_aa
from offline.experiments.inference import confidence_interval, infer_metric, sequential_p_value


def correlated(n: int, effect: float, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arms, a pre-period covariate (last period's streams) and outcomes that depend on it."""
    rng = np.random.default_rng(seed)
    arm = rng.integers(0, 2, n).astype(np.intp)
    x = rng.poisson(rng.gamma(2.0, 2.5, n)).astype(np.float64)
    y = 0.8 * x + rng.normal(0.0, 2.0, n) + effect * arm
    return arm, x, y


def test_cuped_matches_an_independent_ols_with_the_covariate() -> None:
    arm, x, y = correlated(20_000, effect=0.1)
    result = infer_metric(arm, y, x=x, n_arms=2, method="fixed")
    lift = result.absolute[0]
    assert lift is not None
    ols = sm.OLS(y, sm.add_constant(np.column_stack([arm, x - x.mean()]))).fit(cov_type="HC2")
    assert lift.estimate == pytest.approx(ols.params[1], rel=1e-9, abs=1e-12)
    assert lift.se == pytest.approx(ols.bse[1], rel=2e-3)
    assert result.theta == pytest.approx(ols.params[2], rel=1e-3)  # pooled within-arm slope ≈ the OLS slope


def test_cuped_reports_the_variance_it_removed_and_narrows_the_interval() -> None:
    arm, x, y = correlated(20_000, effect=0.1)
    plain = infer_metric(arm, y, n_arms=2, method="fixed")
    cuped = infer_metric(arm, y, x=x, n_arms=2, method="fixed")
    p, c = plain.absolute[0], cuped.absolute[0]
    assert p is not None and c is not None
    assert plain.variance_reduction == 0.0
    assert 0.3 < cuped.variance_reduction < 1.0
    # the reported reduction is the reduction of the estimator's variance
    assert (c.se / p.se) ** 2 == pytest.approx(1.0 - cuped.variance_reduction, rel=0.02)
    unrelated = infer_metric(arm, y, x=np.random.default_rng(9).normal(size=arm.shape[0]), n_arms=2)
    assert abs(unrelated.variance_reduction) < 0.01


def test_a_constant_covariate_leaves_the_estimate_alone() -> None:
    arm, _, y = correlated(2_000, effect=0.0)
    plain = infer_metric(arm, y, n_arms=2, method="fixed")
    constant = infer_metric(arm, y, x=np.full(y.shape, 3.0), n_arms=2, method="fixed")
    assert constant.theta == 0.0
    assert constant.absolute == plain.absolute


def test_ratio_metric_is_the_ratio_of_sums_with_a_delta_method_error() -> None:
    rng = np.random.default_rng(3)
    n = 40_000
    arm = rng.integers(0, 2, n).astype(np.intp)
    shown = rng.poisson(8.0, n).astype(np.float64)
    skips = rng.binomial(shown.astype(np.int64), np.where(arm == 1, 0.33, 0.30)).astype(np.float64)
    result = infer_metric(arm, skips, shown, n_arms=2, method="fixed")
    for a in (0, 1):
        assert result.arms[a].raw == pytest.approx(skips[arm == a].sum() / shown[arm == a].sum(), rel=1e-12)
    lift = result.absolute[0]
    assert lift is not None and lift.low < 0.03 < lift.high
    # the delta-method SE agrees with a bootstrap of the ratio of sums
    boot = []
    for _ in range(300):
        idx = rng.integers(0, n, n)
        a, s, d = arm[idx], skips[idx], shown[idx]
        boot.append(s[a == 1].sum() / d[a == 1].sum() - s[a == 0].sum() / d[a == 0].sum())
    assert lift.se == pytest.approx(float(np.std(boot)), rel=0.15)


def test_ratio_cuped_uses_the_pre_period_ratio() -> None:
    rng = np.random.default_rng(4)
    n = 20_000
    arm = rng.integers(0, 2, n).astype(np.intp)
    propensity = rng.beta(3, 7, n)  # a user's own skip tendency, stable across periods
    shown_pre, shown = rng.poisson(10.0, n).astype(np.float64), rng.poisson(10.0, n).astype(np.float64)
    skips_pre = rng.binomial(shown_pre.astype(np.int64), propensity).astype(np.float64)
    skips = rng.binomial(shown.astype(np.int64), propensity).astype(np.float64)
    plain = infer_metric(arm, skips, shown, n_arms=2, method="fixed")
    cuped = infer_metric(arm, skips, shown, skips_pre, shown_pre, n_arms=2, method="fixed")
    assert cuped.variance_reduction > 0.2
    p, c = plain.absolute[0], cuped.absolute[0]
    assert p is not None and c is not None and c.se < p.se


def test_the_confidence_sequence_is_wider_than_the_fixed_interval_and_its_p_value_agrees() -> None:
    for estimate, se, n in [(0.02, 0.01, 10_000), (0.05, 0.01, 10_000), (-0.08, 0.02, 2_000), (0.0, 0.01, 500)]:
        f_low, f_high = confidence_interval(estimate, se, n, 0.05, "fixed")
        s_low, s_high = confidence_interval(estimate, se, n, 0.05, "sequential", tuning_units=5_000)
        assert s_low < f_low < f_high < s_high
        p = sequential_p_value(estimate, se, n, 0.05, 5_000)
        assert (p < 0.05) == (s_low > 0.0 or s_high < 0.0)
    # tightest near the tuning sample size: the width ratio to the fixed interval is smallest there
    ratio = {
        n: np.subtract(*confidence_interval(0.0, 1 / math.sqrt(n), n, 0.05, "sequential", 5_000)[::-1])
        / np.subtract(*confidence_interval(0.0, 1 / math.sqrt(n), n, 0.05, "fixed")[::-1])
        for n in (500, 5_000, 500_000)
    }
    assert ratio[5_000] < ratio[500] and ratio[5_000] < ratio[500_000]


def test_bad_arguments_name_the_argument() -> None:
    arm, x, y = correlated(100, effect=0.0)
    with pytest.raises(ValueError, match="method"):
        infer_metric(arm, y, n_arms=2, method="bayes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ratio metric"):
        infer_metric(arm, y, y, x, n_arms=2)
    with pytest.raises(ValueError, match="tuning_units"):
        infer_metric(arm, y, n_arms=2, tuning_units=0)


def test_aa_daily_peeking_inflates_fixed_horizon_but_not_the_sequential_test(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = simulate_aa(runs=1_000, days=14, units_per_day=400, alpha=0.05, seed=0)
    with capsys.disabled():
        print("\n" + result.table())
    assert result.runs == 1_000 and result.days == 14
    assert result.sequential_any_look <= 0.05
    assert result.fixed_any_look > 0.10  # peeking at a fixed-horizon test: far above alpha
    assert result.fixed_final_look < 0.08  # the same test read once is near alpha (1,000 runs: ±1.4 %)
