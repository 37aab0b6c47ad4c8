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
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
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
    "MetricMoments",
    "confidence_interval",
    "infer_from_moments",
    "infer_metric",
    "metric_moments",
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


V_Y, V_D, V_X, V_XD = 0, 1, 2, 3
"""Positions of ``(y, d, x, xd)`` in ``MetricMoments.sums``/``products``."""


@dataclass(frozen=True)
class MetricMoments:
    """Per-arm sufficient statistics of one metric: everything ``infer_from_moments`` needs.

    With ``v = (y, d, x, xd)`` per unit (a mean metric has ``d = xd = 1``; without CUPED ``x`` and
    ``xd`` are ignored) and ``w = v - shift``: ``n[a]`` units, ``sums[a, k] = Σ w_k`` and
    ``products[a, k, l] = Σ w_k·w_l`` over arm ``a``'s units. ``shift`` (one value per component,
    the same for every arm) only buys precision; results do not depend on it analytically.
    """

    n: Floats
    """Shape ``(arms,)``."""
    sums: Floats
    """Shape ``(arms, 4)``."""
    products: Floats
    """Shape ``(arms, 4, 4)``, symmetric."""
    ratio: bool
    cuped: bool
    shift: Floats = field(default_factory=lambda: np.zeros(4))

    def take(self, order: Sequence[int]) -> MetricMoments:
        """The same moments with arms reordered (``order[i]`` is the old index of new arm ``i``; -1
        gives an arm without units)."""
        idx = np.asarray(order, dtype=np.intp)
        return replace(
            self,
            n=np.append(self.n, 0.0)[idx],
            sums=np.concatenate([self.sums, np.zeros((1, 4))])[idx],
            products=np.concatenate([self.products, np.zeros((1, 4, 4))])[idx],
        )

    def __add__(self, other: MetricMoments) -> MetricMoments:
        """Moments of the union of two disjoint unit sets (same shift)."""
        return replace(self, n=self.n + other.n, sums=self.sums + other.sums, products=self.products + other.products)


def metric_moments(
    arm: NDArray[np.intp],
    y: Floats,
    d: Floats | None = None,
    x: Floats | None = None,
    xd: Floats | None = None,
    *,
    n_arms: int,
    centre: bool = False,
) -> MetricMoments:
    """Per-arm moments of per-unit arrays (``centre`` shifts each component by its overall mean)."""
    cols = [y, d, x, xd if d is not None else None]
    if x is None:
        cols[V_XD] = None
    n = np.bincount(arm, minlength=n_arms).astype(np.float64)
    shift = np.zeros(4)
    if centre and y.size:
        shift = np.array([1.0 if c is None else float(c.mean()) for c in cols])
    # A missing component is the constant 1: its sums and products follow from n and the others'.
    w = [None if c is None else c - shift[k] if shift[k] else c for k, c in enumerate(cols)]
    const = [1.0 - shift[k] for k in range(4)]
    sums = np.empty((n_arms, 4))
    for k in range(4):
        wk = w[k]
        sums[:, k] = n * const[k] if wk is None else np.bincount(arm, weights=wk, minlength=n_arms)
    products = np.empty((n_arms, 4, 4))
    for k in range(4):
        for j in range(k, 4):
            wk, wj = w[k], w[j]
            if wk is None:
                value = const[k] * sums[:, j]
            elif wj is None:
                value = const[j] * sums[:, k]
            else:
                value = np.bincount(arm, weights=wk * wj, minlength=n_arms)
            products[:, k, j] = products[:, j, k] = value
    return MetricMoments(n, sums, products, d is not None, x is not None, shift)


def _quad(c: Floats, a: Floats, b: Floats) -> Floats:
    """Per arm ``a_arm^T · C_arm · b_arm`` (``a``/``b`` of shape ``(arms, 4)`` or ``(4,)``)."""
    return np.asarray(np.einsum("...k,...kl,...l->...", a, c, b), dtype=np.float64)


def infer_from_moments(
    moments: MetricMoments,
    *,
    alpha: float = 0.05,
    method: Method = "sequential",
    tuning_units: int = DEFAULT_TUNING_UNITS,
) -> MetricInference:
    """``infer_metric`` from per-arm moments alone (formulas in the module docstring).

    Within arm ``a``, with ``C_a = Σ(v - v̄_a)(v - v̄_a)^T`` (from ``products - sums·sums^T/n``),
    ``L - L̄_a = α_a·(v - v̄_a)`` and ``M - M̄_a = β·(v - v̄_a)`` are linear in ``v``: a mean metric
    has ``α = e_y``, a ratio metric ``α_a = (e_y - R_a·e_d)/d̄_a``; CUPED has ``β = e_x`` or
    ``β = (e_x - R_x·e_xd)/mean(xd)``. So ``Σ(L-L̄_a)² = α_aᵀC_aα_a``, ``Σ(L-L̄_a)(M-M̄_a) = α_aᵀC_aβ``
    and ``Σ(M-M̄_a)² = βᵀC_aβ``: the same figures the per-unit formulas give, up to rounding.
    """
    if method not in get_args(Method):
        raise ValueError(f"method must be one of {get_args(Method)}, got {method!r}")
    if tuning_units < 1:
        raise ValueError(f"tuning_units must be >= 1, got {tuning_units!r}")
    counts = moments.n
    n_arms = counts.shape[0]
    nn = np.maximum(counts, 1.0)
    shift = moments.shift
    w_means = moments.sums / nn[:, None]
    comoments = moments.products - moments.sums[:, :, None] * moments.sums[:, None, :] / nn[:, None, None]
    raw_sums = moments.sums + counts[:, None] * shift[None, :]
    alpha_vec = np.zeros((n_arms, 4))
    alpha_vec[:, V_Y] = 1.0
    if moments.ratio:
        y_sum, d_sum = raw_sums[:, V_Y], raw_sums[:, V_D]
        with np.errstate(divide="ignore", invalid="ignore"):
            estimates = np.where(d_sum > 0.0, y_sum / d_sum, np.nan)
            d_mean = d_sum / nn
        scale = np.where(d_mean > 0.0, d_mean, 1.0)
        alpha_vec[:, V_Y] = 1.0 / scale
        alpha_vec[:, V_D] = -np.nan_to_num(estimates) / scale
    else:
        estimates = raw_sums[:, V_Y] / nn
    s_ll = np.maximum(_quad(comoments, alpha_vec, alpha_vec), 0.0)
    theta = 0.0
    adjusted = estimates.copy()
    s_lm = s_mm = np.zeros(n_arms)
    if moments.cuped:
        beta = np.zeros(4)
        beta[V_X] = 1.0
        total = raw_sums.sum(axis=0)
        total_n = float(counts.sum())
        if moments.ratio:
            if total[V_XD] > 0.0:
                r_x = float(total[V_X]) / float(total[V_XD])
                beta = np.zeros(4)
                beta[V_X], beta[V_XD] = 1.0, -r_x
                beta /= float(total[V_XD]) / total_n
            else:
                beta = np.zeros(4)
        s_lm = _quad(comoments, alpha_vec, beta)
        s_mm = np.maximum(_quad(comoments, beta, beta), 0.0)
        # Σ over all units of (M - M̄)²: within-arm parts plus the between-arm part.
        arm_m = w_means @ beta
        grand = float(np.sum(moments.sums @ beta)) / max(total_n, 1.0)
        total_mm = float(np.sum(s_mm) + np.sum(counts * (arm_m - grand) ** 2))
        sxx, sxy = float(np.sum(s_mm)), float(np.sum(s_lm))
        theta = sxy / sxx if sxx > 1e-12 * max(1.0, total_mm) else 0.0
        if theta != 0.0:
            adjusted = estimates - theta * np.where(counts > 0.0, arm_m - grand, -grand)
    ss_raw = s_ll
    ss_adj = np.maximum(s_ll - 2.0 * theta * s_lm + theta * theta * s_mm, 0.0)
    reduction = 1.0 - float(ss_adj.sum()) / float(ss_raw.sum()) if ss_raw.sum() > 0.0 else 0.0
    variance = np.where(counts > 1.0, ss_adj / np.maximum(counts - 1.0, 1.0) / nn, np.nan)
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
    moments = metric_moments(arm, y, d, x, xd, n_arms=n_arms, centre=True)
    return infer_from_moments(moments, alpha=alpha, method=method, tuning_units=tuning_units)
