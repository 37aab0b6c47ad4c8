"""Decision-grade inference for one metric: CUPED-adjusted estimates, fixed and always-valid intervals.

Inputs are per-unit arrays of one experiment (units in any order): ``arm`` (0 = control, 1.. =
treatments), the metric's numerator ``y`` after exposure and, for a ratio metric, its denominator
``d``; and the same sums over the pre-exposure window (``x``, ``xd``) for CUPED.

**Estimates.** A mean metric's arm estimate is ``E_a = mean(y)``; a ratio metric's is
``E_a = sum(y)/sum(d)`` with the delta method, through its linearisation
``L_i = (y_i - E_a·d_i) / mean_a(d)``, so that ``var(E_a) ≈ var_a(L)/n_a`` for both kinds (for a
mean metric ``L = y``).

**CUPED** (Deng, Xu, Kohavi & Walker 2013). The covariate is the unit's pre-exposure value of the
same metric, linearised the same way with pooled pre-period figures (``M = x``, or
``M_i = (x_i - R_x·xd_i)/mean(xd)`` with ``R_x = sum(x)/sum(xd)`` over all units). One slope for
every arm, the pooled within-arm least-squares slope ``θ = Σ_a Σ (M-M̄_a)(L-L̄_a) / Σ_a Σ (M-M̄_a)²``
(0 when no unit has pre-period variation); then ``E'_a = E_a - θ·(M̄_a - M̄)`` and
``var(E'_a) = var_a(L - θM)/n_a``. For a mean metric ``E'_t - E'_c`` is exactly the treatment
coefficient of OLS ``y ~ 1 + treatment + M``. ``variance_reduction = 1 - Σ_a (n_a-1)var_a(L-θM) /
Σ_a (n_a-1)var_a(L)``, the share of the estimator's variance CUPED removed (0 without CUPED).

**Lifts.** Absolute ``Δ = E'_t - E'_c`` with ``se = sqrt(V_t + V_c)``; relative
``r = E'_t/E'_c - 1`` with the delta-method ``se_r = sqrt(V_t/E'_c² + E'_t²·V_c/E'_c⁴)``.

**Intervals** on either lift, at level ``1 - alpha``:

- ``fixed``: ``est ± z_(1-alpha/2)·se`` — valid once, at a horizon fixed in advance.
- ``sequential``: the asymptotic confidence sequence of Waudby-Smith et al. (2023), as GrowthBook
  and Eppo use it: with ``N = n_t + n_c``, ``v = N·se²`` and ``ρ² = (-2 ln α + ln(-2 ln α + 1))/N*``
  (``N*``, the tuning sample size, is where the sequence is tightest: the planned units, else
  GrowthBook's default 5,000), ``half = sqrt(v · 2(Nρ²+1)/(N²ρ²) · ln(sqrt(Nρ²+1)/α))``. The
  interval may be read after every day (or every unit) without raising the false-positive rate.
  Its p-value is the always-valid ``min(1, sqrt(Nρ²+1)·exp(-est²·N²ρ²/(2v(Nρ²+1))))``: it is below
  ``alpha`` exactly when the interval excludes 0.

A one-sided test at ``alpha`` uses the matching bound of the two-sided interval at ``2·alpha``.
Undefined figures (an arm with < 2 units, zero variance, a control estimate of 0) are ``None``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal, get_args

import numpy as np
from numpy.typing import NDArray
from scipy import stats

__all__ = [
    "DEFAULT_TUNING_UNITS",
    "ArmEstimate",
    "Lift",
    "Method",
    "MetricInference",
    "confidence_interval",
    "infer_metric",
    "sequential_p_value",
]

Method = Literal["sequential", "fixed"]
DEFAULT_TUNING_UNITS: Final[int] = 5_000
"""GrowthBook's default ``N*`` when no planned sample size is known."""

Floats = NDArray[np.float64]


@dataclass(frozen=True)
class ArmEstimate:
    """One arm: units, raw and CUPED-adjusted estimates, and the adjusted estimator's variance."""

    arm: int
    n: int
    raw: float
    adjusted: float
    variance: float  # of the adjusted estimator; nan when n < 2


@dataclass(frozen=True)
class Lift:
    """A treatment arm against control: estimate, standard error, interval and p-value of a lift."""

    estimate: float
    se: float
    low: float
    high: float
    p_value: float


@dataclass(frozen=True)
class MetricInference:
    """Per-arm estimates and per-treatment lifts of one metric, with the CUPED slope and its gain."""

    arms: tuple[ArmEstimate, ...]
    absolute: tuple[Lift | None, ...]
    """One per treatment arm (arms[1:]), in arm order; None when undefined."""
    relative: tuple[Lift | None, ...]
    theta: float
    variance_reduction: float
    method: Method
    alpha: float
    tuning_units: int


def _rho_squared(alpha: float, tuning_units: int) -> float:
    log_a = -2.0 * math.log(alpha)
    return (log_a + math.log(log_a + 1.0)) / tuning_units


def confidence_interval(
    estimate: float, se: float, n: int, alpha: float, method: Method, tuning_units: int = DEFAULT_TUNING_UNITS
) -> tuple[float, float]:
    """The two-sided ``1 - alpha`` interval around ``estimate`` (see the module docstring)."""
    if method not in get_args(Method):
        raise ValueError(f"method must be one of {get_args(Method)}, got {method!r}")
    if method == "fixed":
        half = float(stats.norm.ppf(1.0 - alpha / 2.0)) * se
    else:
        rho2 = _rho_squared(alpha, tuning_units)
        v = n * se * se
        half = math.sqrt(v * 2.0 * (n * rho2 + 1.0) / (n * n * rho2) * math.log(math.sqrt(n * rho2 + 1.0) / alpha))
    return estimate - half, estimate + half


def sequential_p_value(estimate: float, se: float, n: int, alpha: float, tuning_units: int) -> float:
    """The always-valid p-value matching the confidence sequence (``< alpha`` iff it excludes 0)."""
    rho2 = _rho_squared(alpha, tuning_units)
    v = n * se * se
    if v == 0.0:
        return 0.0 if estimate != 0.0 else 1.0
    exponent = estimate * estimate * n * n * rho2 / (2.0 * v * (n * rho2 + 1.0))
    return float(min(1.0, math.sqrt(n * rho2 + 1.0) * math.exp(-exponent)))


def _lift(estimate: float, se: float, n: int, alpha: float, method: Method, tuning_units: int) -> Lift | None:
    if not (math.isfinite(se) and se > 0.0 and math.isfinite(estimate)):
        return None
    low, high = confidence_interval(estimate, se, n, alpha, method, tuning_units)
    if method == "fixed":
        p = float(2.0 * stats.norm.sf(abs(estimate) / se))
    else:
        p = sequential_p_value(estimate, se, n, alpha, tuning_units)
    return Lift(estimate=estimate, se=se, low=low, high=high, p_value=p)


def _linearised(y: Floats, d: Floats | None, arm: NDArray[np.intp], n_arms: int) -> tuple[Floats, Floats]:
    """Per-arm estimates and the per-unit linearised values ``L`` (see the module docstring)."""
    counts = np.bincount(arm, minlength=n_arms).astype(np.float64)
    y_sum = np.bincount(arm, weights=y, minlength=n_arms)
    if d is None:
        return np.asarray(y_sum / np.maximum(counts, 1.0), dtype=np.float64), y
    d_sum = np.bincount(arm, weights=d, minlength=n_arms)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(d_sum > 0.0, y_sum / d_sum, np.nan)
        d_mean = d_sum / np.maximum(counts, 1.0)
        linear = (y - np.nan_to_num(ratio)[arm] * d) / np.where(d_mean > 0.0, d_mean, 1.0)[arm]
    return ratio, linear


def _pre_linearised(x: Floats, xd: Floats | None) -> Floats:
    if xd is None:
        return x
    total_d = float(xd.sum())
    if total_d <= 0.0:
        return np.zeros_like(x)
    return np.asarray((x - (float(x.sum()) / total_d) * xd) / (total_d / x.shape[0]), dtype=np.float64)


def _sums(arm: NDArray[np.intp], weights: Floats, n_arms: int) -> Floats:
    return np.asarray(np.bincount(arm, weights=weights, minlength=n_arms), dtype=np.float64)


class _Moments:
    """Per-arm sums of ``L``, ``M``, ``L²``, ``M²`` and ``L·M`` (values centred on their overall
    means first, for precision): every within-arm sum of squares and products without another pass."""

    def __init__(self, arm: NDArray[np.intp], n_arms: int, counts: Floats, linear: Floats, cov: Floats | None) -> None:
        lc = linear - float(linear.mean()) if linear.size else linear
        self.counts = counts
        self.sl = _sums(arm, lc, n_arms)
        self.sll = _sums(arm, lc * lc, n_arms)
        if cov is None:
            zeros = np.zeros(n_arms)
            self.sm, self.smm, self.slm = zeros, zeros, zeros
        else:
            mc = cov - float(cov.mean())
            self.sm, self.smm, self.slm = (
                _sums(arm, mc, n_arms),
                _sums(arm, mc * mc, n_arms),
                _sums(arm, lc * mc, n_arms),
            )

    def within(self, theta: float) -> Floats:
        """Per arm: ``Σ (r - r̄_a)²`` of ``r = L - θM``."""
        n = np.maximum(self.counts, 1.0)
        sum_r = self.sl - theta * self.sm
        sum_rr = self.sll - 2.0 * theta * self.slm + theta * theta * self.smm
        return np.asarray(np.maximum(sum_rr - sum_r * sum_r / n, 0.0), dtype=np.float64)

    def slope(self) -> float:
        """The pooled within-arm least-squares slope of ``L`` on ``M`` (0 without variation in ``M``)."""
        n = np.maximum(self.counts, 1.0)
        sxx = float(np.sum(self.smm - self.sm * self.sm / n))
        sxy = float(np.sum(self.slm - self.sl * self.sm / n))
        return sxy / sxx if sxx > 1e-12 * max(1.0, float(np.sum(self.smm))) else 0.0


def infer_metric(
    arm: NDArray[np.intp],
    y: Floats,
    d: Floats | None = None,
    x: Floats | None = None,
    xd: Floats | None = None,
    *,
    n_arms: int,
    alpha: float = 0.05,
    method: Method = "sequential",
    tuning_units: int = DEFAULT_TUNING_UNITS,
) -> MetricInference:
    """Estimates and lifts of every treatment arm against arm 0 (formulas in the module docstring).

    ``x`` (and ``xd`` for a ratio metric) are the pre-exposure sums; ``None`` disables CUPED.
    """
    if method not in get_args(Method):
        raise ValueError(f"method must be one of {get_args(Method)}, got {method!r}")
    if x is not None and (d is None) != (xd is None):
        raise ValueError("a ratio metric needs both d and xd (or x=None); a mean metric neither")
    if tuning_units < 1:
        raise ValueError(f"tuning_units must be >= 1, got {tuning_units!r}")
    counts = np.bincount(arm, minlength=n_arms).astype(np.float64)
    estimates, linear = _linearised(y, d, arm, n_arms)
    covariate = None if x is None else _pre_linearised(x, xd)
    moments = _Moments(arm, n_arms, counts, linear, covariate)
    theta = moments.slope() if covariate is not None else 0.0
    adjusted = estimates.copy()
    if covariate is not None and theta != 0.0:
        m_arm = np.bincount(arm, weights=covariate, minlength=n_arms) / np.maximum(counts, 1.0)
        adjusted = estimates - theta * (m_arm - float(covariate.mean()))
    ss_raw, ss_adj = moments.within(0.0), moments.within(theta)
    reduction = 1.0 - float(ss_adj.sum()) / float(ss_raw.sum()) if ss_raw.sum() > 0.0 else 0.0
    variance = np.where(counts > 1.0, ss_adj / np.maximum(counts - 1.0, 1.0) / np.maximum(counts, 1.0), np.nan)
    arms = tuple(
        ArmEstimate(i, int(counts[i]), float(estimates[i]), float(adjusted[i]), float(variance[i]))
        for i in range(n_arms)
    )
    control = arms[0]
    absolute: list[Lift | None] = []
    relative: list[Lift | None] = []
    for t in arms[1:]:
        n = t.n + control.n
        se = math.sqrt(t.variance + control.variance) if t.n > 1 and control.n > 1 else math.nan
        absolute.append(_lift(t.adjusted - control.adjusted, se, n, alpha, method, tuning_units))
        c = control.adjusted
        if c == 0.0 or not math.isfinite(c) or not math.isfinite(t.adjusted):
            relative.append(None)
            continue
        se_r = math.sqrt(t.variance / c**2 + t.adjusted**2 * control.variance / c**4) if math.isfinite(se) else se
        relative.append(_lift(t.adjusted / c - 1.0, se_r, n, alpha, method, tuning_units))
    return MetricInference(
        arms=arms,
        absolute=tuple(absolute),
        relative=tuple(relative),
        theta=theta,
        variance_reduction=reduction,
        method=method,
        alpha=alpha,
        tuning_units=tuning_units,
    )
