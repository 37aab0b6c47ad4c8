"""Offline A/B analysis: join exposures with outcomes, compare each variant with control.

Contract (per experiment, per metric):

- **Units.** The unit is the exposed ``unit_id``. Exposures are deduped by (unit, experiment),
  keeping the earliest ``ts_ms`` (file order breaks ties). A unit exposed to two or more variants of
  one experiment is dropped from that experiment and counted as a *multiple-variant unit*.
- **Values.** A unit's value for a metric is the sum of its outcome ``value``s with
  ``ts_ms >= first exposure ts_ms``; units without such outcomes count as 0. Earlier outcomes are
  counted in ``outcomes_before_exposure``, never in a value.
- **Per variant.** n, mean, sample std (ddof=1) and conversion = share of units with value > 0.
- **Control.** The variant named ``control`` if present, else the first variant of the experiment
  in ``expected_weights`` that has units, else the alphabetically first.
- **Absolute lift** ``d = m_t - m_c``, Welch's t-test::

      se = sqrt(s_t²/n_t + s_c²/n_c),  t = d / se,
      df = se⁴ / ((s_t²/n_t)²/(n_t-1) + (s_c²/n_c)²/(n_c-1)),
      p = 2·T_df.sf(|t|),  CI = d ± T_df.ppf(1 - alpha/2)·se

- **Relative lift** ``r = m_t/m_c - 1`` with a delta-method normal CI::

      se_r = sqrt(s_t²/(n_t·m_c²) + m_t²·s_c²/(n_c·m_c⁴)),  CI = r ± z_(1-alpha/2)·se_r

- **Conversion**, pooled two-proportion z-test ``z = (p_t - p_c) / sqrt(p̄(1-p̄)(1/n_t + 1/n_c))``,
  ``p = 2·Φ(-|z|)``, with an unpooled Wald CI for ``p_t - p_c``.
- **Multiple testing.** Within an experiment the Welch p-values of all (variant, metric)
  comparisons form one family, adjusted by Holm–Bonferroni (``holm``) or Benjamini–Hochberg
  (``bh``); ``significant`` means adjusted p < alpha. Conversion p-values are adjusted the same way
  as a separate family (reported, not used for ``significant``). CIs are per comparison, level
  ``1 - alpha``, not adjusted.
- **SRM.** Chi-square goodness of fit of units per variant against the expected weights
  (``expected_weights[experiment]``, else equal), ``scipy.stats.chisquare``; flagged when
  p < ``SRM_P_THRESHOLD`` or when a variant with no (or zero) expected weight has units.

- **Decision layer** (``ExperimentResult.variants``/``decision``/``distributions``/``verdict``/
  ``timeline``): each of ``decision_metrics`` (``offline.experiments.metric_specs``) is analysed
  with ``offline.experiments.inference`` — CUPED with the unit's outcomes in the
  ``cuped_window_days`` before its first exposure as covariate, fixed or always-valid intervals —
  and ``offline.experiments.decision`` turns them into the verdict. ``timeline`` repeats the
  inference at the end of each UTC day on the units exposed, and the outcomes logged, before it.

**Engines.** Everything above is computed from per-variant sufficient statistics
(``ExperimentSums``: counts, sums, sums of squares, and ``inference.MetricMoments`` per decision
metric and per timeline day); ``analyze`` builds them from in-memory arrays,
``offline.experiments.spark_engine.analyze_spark`` with Spark, and both end in ``build_report``.
Sums of squares come from raw moments (``Σy² - (Σy)²/n``), not a second pass over the units.

A statistic that is undefined (a variant with n < 2, zero variance in both arms, control mean 0)
is ``None``; ``None`` p-values are left out of the correction family. Bad arguments raise
``ValueError``. Reading the logs is ``offline.experiments.outcome_logs`` (bad input files raise
``AnalysisInputError`` there); the text and JSON reports are ``offline.experiments.report``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Final, Literal, TypedDict, get_args

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from offline.experiments.decision import Verdict, decide
from offline.experiments.inference import (
    DEFAULT_TUNING_UNITS,
    Method,
    MetricInference,
    MetricMoments,
    infer_from_moments,
    metric_moments,
)
from offline.experiments.metric_specs import DEFAULT_METRICS, MetricSpec
from offline.experiments.outcome_logs import Exposures, Outcomes, ReadStats, codes_in

__all__ = [
    "SRM_P_THRESHOLD",
    "AnalysisOptions",
    "AnalysisReport",
    "Comparison",
    "Correction",
    "DayPoint",
    "DecisionMetric",
    "Distribution",
    "ExperimentResult",
    "ExperimentSums",
    "Interval",
    "MetricResult",
    "SrmCheck",
    "VariantStats",
    "adjust_p_values",
    "analyze",
    "build_report",
    "unit_metric_values",
]

Correction = Literal["holm", "bh"]
SRM_P_THRESHOLD: Final[float] = 0.001
CONTROL_NAME: Final[str] = "control"
DAY_MS: Final[int] = 86_400_000
DEFAULT_CUPED_WINDOW_DAYS: Final[float] = 14.0


@dataclass(frozen=True)
class Interval:
    """A closed confidence interval."""

    low: float
    high: float


@dataclass(frozen=True)
class VariantStats:
    """One variant's units and value distribution for one metric (``std`` is None when n < 2)."""

    variant: str
    n: int
    mean: float
    std: float | None
    conversion: float


@dataclass(frozen=True)
class Comparison:
    """One non-control variant against control on one metric (see the module docstring)."""

    variant: str
    control: str
    metric: str
    abs_lift: float
    abs_ci: Interval | None
    rel_lift: float | None
    rel_ci: Interval | None
    t_stat: float | None
    df: float | None
    p_value: float | None
    p_adjusted: float | None
    significant: bool
    conversion_lift: float
    conversion_ci: Interval | None
    z_stat: float | None
    conversion_p_value: float | None
    conversion_p_adjusted: float | None


@dataclass(frozen=True)
class MetricResult:
    """Per-variant stats (control first) and comparisons for one metric."""

    metric: str
    variants: tuple[VariantStats, ...]
    comparisons: tuple[Comparison, ...]


@dataclass(frozen=True)
class SrmCheck:
    """Sample ratio mismatch check: ``observed`` units vs ``expected`` counts, per ``variants``."""

    variants: tuple[str, ...]
    observed: tuple[int, ...]
    expected: tuple[float, ...]
    weights_source: Literal["config", "equal"]
    chi2: float | None
    p_value: float | None
    unexpected_variants: tuple[str, ...]
    """Variants with units but no (or zero) expected weight; not part of the chi-square."""
    flagged: bool


@dataclass(frozen=True)
class DecisionMetric:
    """A decision metric's inference; ``variants`` names the inference's arms (control first)."""

    spec: MetricSpec
    variants: tuple[str, ...]
    inference: MetricInference


@dataclass(frozen=True)
class Distribution:
    """Per-unit values of one decision metric as a histogram per variant (shared bins).

    A mean metric's unit value is its sum; a ratio metric's is the unit's own ratio (units with a
    zero denominator left out). Bins span 0 (or the minimum) to the 99th percentile; the last bin
    also holds everything above it.
    """

    metric: str
    edges: tuple[float, ...]
    counts: tuple[tuple[int, ...], ...]
    """One row per variant, in ``ExperimentResult.variants`` order."""


@dataclass(frozen=True)
class DayPoint:
    """The cumulative analysis at the end of one UTC day (units exposed and outcomes before it)."""

    day: str
    """``YYYY-MM-DD`` (UTC)."""
    end_ms: int
    units: tuple[int, ...]
    """Units per variant, in ``ExperimentResult.variants`` order."""
    srm_p: float | None
    metrics: tuple[MetricInference, ...]
    """One per decision metric, in ``ExperimentResult.decision`` order."""


@dataclass(frozen=True)
class ExperimentResult:
    """Everything reported for one experiment; ``units`` counts analysed (kept) units."""

    experiment: str
    control: str
    units: int
    exposure_rows: int
    duplicate_exposures: int
    multiple_variant_units: int
    outcomes_before_exposure: int
    srm: SrmCheck
    metrics: tuple[MetricResult, ...]
    variants: tuple[str, ...] = ()
    """Variants with units, control first (the order of every decision inference's arms)."""
    decision: tuple[DecisionMetric, ...] = ()
    distributions: tuple[Distribution, ...] = ()
    verdict: Verdict | None = None
    timeline: tuple[DayPoint, ...] = ()
    first_exposure_ms: int = 0
    last_event_ms: int = 0


@dataclass(frozen=True)
class AnalysisReport:
    """The full analysis; experiments sorted by key."""

    experiments: tuple[ExperimentResult, ...]
    metrics: tuple[str, ...]
    correction: Correction
    alpha: float
    exposures_read: ReadStats
    outcomes_read: ReadStats
    unmatched_outcomes: int
    """Outcome records whose unit has no exposure at all (ignored)."""
    method: Method = "sequential"
    cuped_window_days: float = DEFAULT_CUPED_WINDOW_DAYS
    tuning_units: int = DEFAULT_TUNING_UNITS

    @property
    def srm_flagged(self) -> tuple[str, ...]:
        """Keys of experiments whose SRM check failed."""
        return tuple(e.experiment for e in self.experiments if e.srm.flagged)


# --- statistics ----------------------------------------------------------------------------------


def adjust_p_values(p_values: Sequence[float | None], method: Correction = "holm") -> list[float | None]:
    """Multiple-testing adjusted p-values, in input order; ``None`` stays ``None`` and is not counted.

    Holm: sort ascending, ``adj_(i) = max_{j<=i} min(1, (m-j+1)·p_(j))``.
    BH:   sort ascending, ``adj_(i) = min_{j>=i} min(1, m·p_(j)/j)``.
    """
    if method not in get_args(Correction):
        raise ValueError(f"correction must be one of {get_args(Correction)}, got {method!r}")
    present = [i for i, p in enumerate(p_values) if p is not None]
    result: list[float | None] = [None] * len(p_values)
    m = len(present)
    if m == 0:
        return result
    p = np.array([p_values[i] for i in present], dtype=np.float64)
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    ranks = np.arange(1, m + 1, dtype=np.float64)
    if method == "holm":
        adjusted = np.maximum.accumulate(np.minimum(1.0, (m - ranks + 1) * ranked))
    else:
        adjusted = np.minimum.accumulate(np.minimum(1.0, m * ranked / ranks)[::-1])[::-1]
    out = np.empty(m)
    out[order] = adjusted
    for i, value in zip(present, out, strict=True):
        result[i] = float(value)
    return result


@dataclass(frozen=True)
class _Arm:
    n: int
    mean: float
    var: float  # ddof=1; nan when n < 2
    conversions: int


def _welch(t: _Arm, c: _Arm, alpha: float) -> tuple[float | None, float | None, float | None, Interval | None]:
    """(t, df, p, CI) of Welch's test for ``t.mean - c.mean``; all None when undefined."""
    if t.n < 2 or c.n < 2:
        return None, None, None, None
    vt, vc = t.var / t.n, c.var / c.n
    se = math.sqrt(vt + vc)
    if se == 0.0:
        return None, None, None, None
    diff = t.mean - c.mean
    df = (vt + vc) ** 2 / (vt**2 / (t.n - 1) + vc**2 / (c.n - 1))
    t_stat = diff / se
    p = float(2.0 * stats.t.sf(abs(t_stat), df))
    half = float(stats.t.ppf(1.0 - alpha / 2.0, df)) * se
    return t_stat, df, p, Interval(diff - half, diff + half)


def _relative(t: _Arm, c: _Arm, alpha: float) -> tuple[float | None, Interval | None]:
    """Relative lift ``m_t/m_c - 1`` and its delta-method CI."""
    if c.mean == 0.0:
        return None, None
    rel = t.mean / c.mean - 1.0
    if t.n < 2 or c.n < 2:
        return rel, None
    var = t.var / (t.n * c.mean**2) + t.mean**2 * c.var / (c.n * c.mean**4)
    half = float(stats.norm.ppf(1.0 - alpha / 2.0)) * math.sqrt(var)
    return rel, Interval(rel - half, rel + half)


def _proportions(t: _Arm, c: _Arm, alpha: float) -> tuple[float, Interval | None, float | None, float | None]:
    """(p_t - p_c, Wald CI, pooled z, two-sided p) for conversion."""
    pt, pc = t.conversions / t.n, c.conversions / c.n
    diff = pt - pc
    se_wald = math.sqrt(pt * (1 - pt) / t.n + pc * (1 - pc) / c.n)
    half = float(stats.norm.ppf(1.0 - alpha / 2.0)) * se_wald
    ci = Interval(diff - half, diff + half) if se_wald > 0.0 else None
    pooled = (t.conversions + c.conversions) / (t.n + c.n)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / t.n + 1 / c.n))
    if se0 == 0.0:
        return diff, ci, None, None
    z = diff / se0
    return diff, ci, z, float(2.0 * stats.norm.sf(abs(z)))


def _srm(variants: Sequence[str], counts: Sequence[int], weights: Mapping[str, float] | None) -> SrmCheck:
    """Chi-square goodness of fit of ``counts`` against ``weights`` (equal when None)."""
    observed = dict(zip(variants, counts, strict=True))
    if weights is None:
        tested = list(variants)
        shares = [1.0 / len(tested)] * len(tested) if tested else []
        unexpected: list[str] = []
    else:
        tested = [v for v, w in weights.items() if w > 0.0]
        total_w = sum(weights[v] for v in tested)
        shares = [weights[v] / total_w for v in tested]
        unexpected = [v for v in variants if weights.get(v, 0.0) <= 0.0]
    obs = [observed.get(v, 0) for v in tested]
    total = sum(obs)
    expected = [total * s for s in shares]
    chi2: float | None = None
    p: float | None = None
    if len(tested) >= 2 and total > 0:
        result = stats.chisquare(obs, f_exp=expected)
        chi2, p = float(result.statistic), float(result.pvalue)
    return SrmCheck(
        variants=tuple(tested),
        observed=tuple(obs),
        expected=tuple(expected),
        weights_source="equal" if weights is None else "config",
        chi2=chi2,
        p_value=p,
        unexpected_variants=tuple(unexpected),
        flagged=bool(unexpected) or (p is not None and p < SRM_P_THRESHOLD),
    )


# --- analysis ------------------------------------------------------------------------------------


def _compare(metric: str, variant: str, control: str, t: _Arm, c: _Arm, alpha: float) -> Comparison:
    """``variant`` vs ``control`` on ``metric``, before multiple-testing correction."""
    t_stat, df, p, abs_ci = _welch(t, c, alpha)
    rel, rel_ci = _relative(t, c, alpha)
    conv_lift, conv_ci, z, conv_p = _proportions(t, c, alpha)
    return Comparison(
        variant=variant,
        control=control,
        metric=metric,
        abs_lift=t.mean - c.mean,
        abs_ci=abs_ci,
        rel_lift=rel,
        rel_ci=rel_ci,
        t_stat=t_stat,
        df=df,
        p_value=p,
        p_adjusted=None,
        significant=False,
        conversion_lift=conv_lift,
        conversion_ci=conv_ci,
        z_stat=z,
        conversion_p_value=conv_p,
        conversion_p_adjusted=None,
    )


def _choose_control(variants: Sequence[str], weights: Mapping[str, float] | None) -> str:
    if CONTROL_NAME in variants:
        return CONTROL_NAME
    for v in weights or ():
        if v in variants:
            return v
    return min(variants)


@dataclass(frozen=True)
class AnalysisOptions:
    """How every engine analyses (``analyze``, ``spark_engine.analyze_spark``, ``build_report``).

    ``expected_weights`` maps experiment → variant → weight (any positive scale; its variant order
    also picks the control when none is named ``control``). ``metrics`` defaults to every metric in
    the outcomes, sorted; a requested metric without outcomes is all zeros.

    The decision layer (``ExperimentResult.decision``/``verdict``/``timeline``) analyses
    ``decision_metrics`` with ``offline.experiments.inference`` (``method``; CUPED over the
    ``cuped_window_days`` before each unit's first exposure, 0 disables it) and
    ``offline.experiments.decision``. ``planned_units`` (the planned total units of an experiment)
    tunes the sequential intervals and completes the plan once reached; ``plan_complete`` states it.
    ``timeline``: also the cumulative analysis at the end of each UTC day.

    Raises ``ValueError`` naming the first bad option.
    """

    expected_weights: Mapping[str, Mapping[str, float]] | None = None
    correction: Correction = "holm"
    alpha: float = 0.05
    metrics: Sequence[str] | None = None
    decision_metrics: Sequence[MetricSpec] = DEFAULT_METRICS
    method: Method = "sequential"
    cuped_window_days: float = DEFAULT_CUPED_WINDOW_DAYS
    planned_units: int | None = None
    plan_complete: bool = False
    timeline: bool = True

    def __post_init__(self) -> None:
        if self.correction not in get_args(Correction):
            raise ValueError(f"correction must be one of {get_args(Correction)}, got {self.correction!r}")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha!r}")
        if not (math.isfinite(self.cuped_window_days) and self.cuped_window_days >= 0.0):
            raise ValueError(f"cuped_window_days must be >= 0, got {self.cuped_window_days!r}")
        if self.planned_units is not None and self.planned_units < 2:
            raise ValueError(f"planned_units must be >= 2, got {self.planned_units!r}")
        for exp_key, weights in (self.expected_weights or {}).items():
            bad = {v: w for v, w in weights.items() if not (math.isfinite(w) and w >= 0.0)}
            if bad or not any(w > 0.0 for w in weights.values()):
                raise ValueError(f"expected_weights[{exp_key!r}] needs finite weights >= 0, some > 0; got {weights!r}")

    def metric_names(self, present: Iterable[str]) -> tuple[str, ...]:
        """The reported metrics: ``metrics`` as given (deduplicated), else those ``present``, sorted."""
        return tuple(sorted(present)) if self.metrics is None else tuple(dict.fromkeys(self.metrics))


def analyze(exposures: Exposures, outcomes: Outcomes, options: AnalysisOptions | None = None) -> AnalysisReport:
    """Analyse every experiment in ``exposures`` with ``options`` (default ``AnalysisOptions()``);
    contract and formulas in the module docstring."""
    options = options or AnalysisOptions()
    decision_metrics = options.decision_metrics
    metric_names = options.metric_names(outcomes.metrics)
    all_names = _all_names(metric_names, decision_metrics)

    # Outcomes → exposure unit codes and metric positions; drop what cannot matter.
    unit_map = codes_in(outcomes.unit_ids, exposures.unit_ids)
    metric_pos = {m: i for i, m in enumerate(all_names)}
    metric_map = np.fromiter((metric_pos.get(m, -1) for m in outcomes.metrics), np.intp, len(outcomes.metrics))
    o_unit = unit_map[outcomes.unit] if len(outcomes) else np.empty(0, np.intp)
    o_metric = metric_map[outcomes.metric] if len(outcomes) else np.empty(0, np.intp)
    unmatched = int(np.count_nonzero(o_unit < 0))
    keep = (o_unit >= 0) & (o_metric >= 0)
    sums = _UnitSums(o_unit[keep], o_metric[keep], outcomes.ts_ms[keep], outcomes.value[keep], len(all_names))
    window_ms = round(options.cuped_window_days * DAY_MS)

    # Group exposures by (experiment, unit), earliest first; file order breaks ts ties.
    n_rows = len(exposures)
    order = np.lexsort((np.arange(n_rows), exposures.ts_ms, exposures.unit, exposures.experiment))
    e, u = exposures.experiment[order], exposures.unit[order]
    v, ts = exposures.variant[order], exposures.ts_ms[order]
    new_group = np.ones(n_rows, dtype=bool)
    new_group[1:] = (e[1:] != e[:-1]) | (u[1:] != u[:-1])
    starts = np.flatnonzero(new_group)
    mixed = np.minimum.reduceat(v, starts) != np.maximum.reduceat(v, starts) if n_rows else np.empty(0, dtype=bool)
    g_exp, g_unit, g_var, g_ts = e[starts], u[starts], v[starts], ts[starts]
    g_rows = np.diff(np.append(starts, n_rows))
    last_event = max(int(exposures.ts_ms.max()) if n_rows else 0, int(sums.ts.max()) if sums.ts.size else 0)

    collected = []
    positions = np.full(len(exposures.unit_ids), -1, dtype=np.intp)
    for exp_code in np.unique(g_exp).tolist():
        in_exp = g_exp == exp_code
        kept = in_exp & ~mixed
        units, variant_codes, first_ts = g_unit[kept], g_var[kept], g_ts[kept]
        positions[units] = np.arange(units.shape[0])
        view = sums.for_units(positions, first_ts)
        positions[units] = -1
        rows = int(g_rows[in_exp].sum())
        present, local = np.unique(variant_codes, return_inverse=True)
        collected.append(
            _local_sums(
                key=exposures.experiments[exp_code],
                variants=tuple(exposures.variants[c] for c in present.tolist()),
                local=np.asarray(local, dtype=np.intp).reshape(-1),
                first_ts=first_ts,
                view=view,
                n_reported=len(metric_names),
                names=all_names,
                specs=decision_metrics,
                window_ms=window_ms,
                exposure_rows=rows,
                duplicates=rows - int(np.count_nonzero(in_exp)),
                multiple_variant_units=int(np.count_nonzero(in_exp & mixed)),
                timeline=options.timeline,
                last_event=last_event,
            )
        )
    return build_report(
        collected,
        options,
        metric_names=metric_names,
        last_event=last_event,
        exposures_read=exposures.read,
        outcomes_read=outcomes.read,
        unmatched_outcomes=unmatched,
    )


def _all_names(metric_names: Sequence[str], specs: Sequence[MetricSpec]) -> tuple[str, ...]:
    """Raw metrics summed per unit: the reported ones, then whatever the decision metrics read."""
    return tuple(dict.fromkeys([*metric_names, *(m for s in specs for m in s.outcome_metrics)]))


@dataclass(frozen=True)
class ExperimentSums:
    """One experiment's sufficient statistics, as either engine computes them.

    Variant index ``v`` refers to ``variants`` (those with kept units, any order). Reported metric
    ``m`` (``AnalysisReport.metrics`` order): ``sums[v, m]``/``squares[v, m]`` are the sums of the
    unit values and of their squares, ``positives[v, m]`` the units with value > 0. ``decision``
    holds one ``MetricMoments`` per decision metric (arms = ``variants``); ``distributions`` per
    decision metric the ``(variant index, unit value)`` arrays of ``Distribution``'s histogram;
    ``days`` the UTC day numbers of the timeline, ``day_counts[i, v]`` the units exposed before the
    end of ``days[i]`` and ``day_moments[i]`` their cumulative moments per decision metric.
    """

    key: str
    variants: tuple[str, ...]
    counts: NDArray[np.int64]
    sums: NDArray[np.float64]
    squares: NDArray[np.float64]
    positives: NDArray[np.float64]
    exposure_rows: int
    duplicates: int
    multiple_variant_units: int
    before_exposure: int
    first_exposure_ms: int
    decision: tuple[MetricMoments, ...] = ()
    distributions: tuple[tuple[NDArray[np.intp], NDArray[np.float64]], ...] = ()
    days: tuple[int, ...] = ()
    day_counts: NDArray[np.int64] = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    day_moments: tuple[tuple[MetricMoments, ...], ...] = ()


def build_report(
    experiments: Sequence[ExperimentSums],
    options: AnalysisOptions,
    *,
    metric_names: tuple[str, ...],
    last_event: int,
    exposures_read: ReadStats,
    outcomes_read: ReadStats,
    unmatched_outcomes: int,
) -> AnalysisReport:
    """The report from per-experiment sufficient statistics: every engine ends here."""
    expected_weights, correction, alpha = options.expected_weights, options.correction, options.alpha
    decision_metrics, method, planned_units = options.decision_metrics, options.method, options.planned_units
    plan_complete = options.plan_complete
    tuning = planned_units or DEFAULT_TUNING_UNITS
    results = []
    for sums in sorted(experiments, key=lambda s: s.key):
        weights = None if expected_weights is None else expected_weights.get(sums.key)
        result = _experiment_result(sums, metric_names, weights, correction, alpha)
        if result.units and decision_metrics:
            names = [*result.srm.variants, *(x for x in result.srm.unexpected_variants)]
            arm_names = tuple(dict.fromkeys([result.control, *names]))
            # A configured variant without units is an empty arm (index -1).
            order = [sums.variants.index(n) if n in sums.variants else -1 for n in arm_names]
            lut = np.empty(len(sums.variants), dtype=np.intp)
            for arm_index, variant_index in enumerate(order):
                if variant_index >= 0:
                    lut[variant_index] = arm_index
            decision = tuple(
                DecisionMetric(spec, arm_names, infer_from_moments(m.take(order), **_opts(alpha, method, tuning)))
                for spec, m in zip(decision_metrics, sums.decision, strict=True)
            )
            verdict = decide(
                arm_names,
                decision_metrics,
                [d.inference for d in decision],
                srm_flagged=result.srm.flagged,
                srm_p=result.srm.p_value,
                plan_complete=plan_complete or (planned_units is not None and result.units >= planned_units),
            )
            days = []
            for i, day in enumerate(sums.days):
                counts = np.append(sums.day_counts[i], 0)[order]
                if not counts.any():
                    continue
                days.append(
                    DayPoint(
                        day=np.datetime64(day, "D").astype(str),
                        end_ms=(day + 1) * DAY_MS,
                        units=tuple(int(c) for c in counts),
                        srm_p=_srm(list(arm_names), [int(c) for c in counts], weights).p_value,
                        metrics=tuple(
                            infer_from_moments(m.take(order), **_opts(alpha, method, tuning))
                            for m in sums.day_moments[i]
                        ),
                    )
                )
            result = replace(
                result,
                variants=arm_names,
                decision=decision,
                distributions=tuple(
                    _distribution(spec, lut[v], values, len(arm_names))
                    for spec, (v, values) in zip(decision_metrics, sums.distributions, strict=True)
                ),
                verdict=verdict,
                timeline=tuple(days),
                first_exposure_ms=sums.first_exposure_ms,
                last_event_ms=last_event,
            )
        results.append(result)
    return AnalysisReport(
        experiments=tuple(results),
        metrics=metric_names,
        correction=correction,
        alpha=alpha,
        exposures_read=exposures_read,
        outcomes_read=outcomes_read,
        unmatched_outcomes=unmatched_outcomes,
        method=method,
        cuped_window_days=options.cuped_window_days,
        tuning_units=tuning,
    )


class _InferOptions(TypedDict):
    alpha: float
    method: Method
    tuning_units: int


def _opts(alpha: float, method: Method, tuning: int) -> _InferOptions:
    return {"alpha": alpha, "method": method, "tuning_units": tuning}


class _UnitSums:
    """Outcomes already mapped to exposure unit codes and metric positions; sums them per unit."""

    def __init__(
        self,
        unit: NDArray[np.intp],
        metric: NDArray[np.intp],
        ts: NDArray[np.int64],
        value: NDArray[np.float64],
        n_metrics: int,
    ) -> None:
        self.unit, self.metric, self.ts, self.value, self.n_metrics = unit, metric, ts, value, n_metrics

    def for_units(self, positions: NDArray[np.intp], first_ts: NDArray[np.int64]) -> _UnitView:
        """The outcomes of one experiment's units (``positions[code]`` is the unit's row, or -1)."""
        idx = positions[self.unit] if self.unit.size else np.empty(0, np.intp)
        hit = idx >= 0
        idx = idx[hit]
        offset = self.ts[hit] - first_ts[idx]
        return _UnitView(
            idx, self.metric[hit], offset, self.ts[hit], self.value[hit], first_ts.shape[0], self.n_metrics
        )


class _UnitView:
    """One experiment's outcomes, each with its unit's row and its time since that unit's first exposure."""

    def __init__(
        self,
        row: NDArray[np.intp],
        metric: NDArray[np.intp],
        offset: NDArray[np.int64],
        ts: NDArray[np.int64],
        value: NDArray[np.float64],
        n_units: int,
        n_metrics: int,
    ) -> None:
        self.row, self.metric, self.offset, self.ts, self.value = row, metric, offset, ts, value
        self.n_units, self.n_metrics = n_units, n_metrics
        self.before_exposure = int(np.count_nonzero(offset < 0))

    def between(self, start_ms: int, end_ms: int | None) -> NDArray[np.float64]:
        """Units × metrics sums of outcomes with ``start <= ts - first exposure < end``."""
        mask = self.offset >= start_ms
        if end_ms is not None:
            mask &= self.offset < end_ms
        totals = np.bincount(
            self.row[mask] * self.n_metrics + self.metric[mask],
            weights=self.value[mask],
            minlength=self.n_units * self.n_metrics,
        )
        return np.asarray(totals, dtype=np.float64).reshape(self.n_units, self.n_metrics)


def _column(values: NDArray[np.float64], names: Sequence[str], wanted: Sequence[str]) -> NDArray[np.float64]:
    cols = [names.index(m) for m in wanted]
    return values[:, cols[0]] if len(cols) == 1 else values[:, cols].sum(axis=1)


def _moments(
    spec: MetricSpec,
    names: Sequence[str],
    arm: NDArray[np.intp],
    values: NDArray[np.float64],
    pre: NDArray[np.float64] | None,
    n_arms: int,
) -> MetricMoments:
    y = _column(values, names, [spec.numerator])
    d = _column(values, names, spec.denominator) if spec.denominator else None
    x = None if pre is None else _column(pre, names, [spec.numerator])
    xd = None if pre is None or not spec.denominator else _column(pre, names, spec.denominator)
    return metric_moments(arm, y, d, x, xd, n_arms=n_arms)


def unit_metric_values(
    spec: MetricSpec, names: Sequence[str], arm: NDArray[np.intp], values: NDArray[np.float64]
) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
    """``(arm, value)`` of the units in a decision metric's histogram (a ratio: only ``d > 0``, ``y/d``)."""
    y = _column(values, names, [spec.numerator])
    if spec.denominator:
        d = _column(values, names, spec.denominator)
        keep = d > 0.0
        return arm[keep], y[keep] / d[keep]
    return arm, y


def _distribution(spec: MetricSpec, arm: NDArray[np.intp], y: NDArray[np.float64], n_arms: int) -> Distribution:
    if y.size == 0:
        return Distribution(spec.name, (0.0, 1.0), tuple((0,) for _ in range(n_arms)))
    low, high = min(0.0, float(y.min())), float(np.quantile(y, 0.99))
    high = high if high > low else low + 1.0
    bins = 30 if spec.denominator else int(min(30, max(1, np.ceil(high - low))))
    edges = np.linspace(low, high, bins + 1)
    clipped = np.minimum(y, high)
    counts = [np.histogram(clipped[arm == a], bins=edges)[0] for a in range(n_arms)]
    return Distribution(spec.name, tuple(edges.tolist()), tuple(tuple(int(c) for c in row) for row in counts))


def _local_sums(
    *,
    key: str,
    variants: tuple[str, ...],
    local: NDArray[np.intp],
    first_ts: NDArray[np.int64],
    view: _UnitView,
    n_reported: int,
    names: Sequence[str],
    specs: Sequence[MetricSpec],
    window_ms: int,
    exposure_rows: int,
    duplicates: int,
    multiple_variant_units: int,
    timeline: bool,
    last_event: int,
) -> ExperimentSums:
    """The local engine's ``ExperimentSums`` of one experiment, from per-unit arrays."""
    n_var = len(variants)
    values = view.between(0, None)
    reported = values[:, :n_reported]
    counts = np.bincount(local, minlength=n_var).astype(np.int64)

    def per_variant(weights: NDArray[np.float64]) -> NDArray[np.float64]:
        cols = [np.bincount(local, weights=weights[:, m], minlength=n_var) for m in range(n_reported)]
        return np.asarray(np.column_stack(cols) if cols else np.zeros((n_var, 0)), dtype=np.float64)

    base = ExperimentSums(
        key=key,
        variants=variants,
        counts=counts,
        sums=per_variant(reported),
        squares=per_variant(reported * reported),
        positives=per_variant((reported > 0.0).astype(np.float64)),
        exposure_rows=exposure_rows,
        duplicates=duplicates,
        multiple_variant_units=multiple_variant_units,
        before_exposure=view.before_exposure,
        first_exposure_ms=int(first_ts.min()) if first_ts.size else 0,
    )
    if not specs or not first_ts.size:
        return base
    pre = view.between(-window_ms, 0) if window_ms > 0 else None
    decision = tuple(_moments(spec, names, local, values, pre, n_var) for spec in specs)
    distributions = tuple(unit_metric_values(spec, names, local, values) for spec in specs)
    if not timeline:
        return replace(base, decision=decision, distributions=distributions)
    # Outcomes after exposure in time order, added to running per-unit sums one day at a time.
    post = view.offset >= 0
    order = np.argsort(view.ts[post], kind="stable")
    ts = view.ts[post][order]
    cells = (view.row[post] * view.n_metrics + view.metric[post])[order]
    weights_sorted = view.value[post][order]
    running = np.zeros(view.n_units * view.n_metrics)
    done = 0
    days = list(range(int(first_ts.min()) // DAY_MS, last_event // DAY_MS + 1))
    day_counts = np.zeros((len(days), n_var), np.int64)
    day_moments = []
    for i, day in enumerate(days):
        end = (day + 1) * DAY_MS
        upto = int(np.searchsorted(ts, end, side="left"))
        if upto > done:
            running += np.bincount(cells[done:upto], weights=weights_sorted[done:upto], minlength=running.shape[0])
            done = upto
        present = first_ts < end
        day_values = running.reshape(view.n_units, view.n_metrics)[present]
        a = local[present]
        day_counts[i] = np.bincount(a, minlength=n_var)
        sub_pre = None if pre is None else pre[present]
        day_moments.append(tuple(_moments(spec, names, a, day_values, sub_pre, n_var) for spec in specs))
    return replace(
        base,
        decision=decision,
        distributions=distributions,
        days=tuple(days),
        day_counts=day_counts,
        day_moments=tuple(day_moments),
    )


def _experiment_result(
    sums: ExperimentSums,
    metric_names: Sequence[str],
    weights: Mapping[str, float] | None,
    correction: Correction,
    alpha: float,
) -> ExperimentResult:
    """SRM check and fixed-horizon tables from per-variant counts, sums and sums of squares."""
    names = list(sums.variants)
    counts = sums.counts
    control = _choose_control(names, weights) if names else ""
    config_order = {v: i for i, v in enumerate(weights or ())}
    display = sorted(
        range(len(names)), key=lambda i: (names[i] != control, config_order.get(names[i], 1 << 30), names[i])
    )
    n = np.maximum(counts, 1).astype(np.float64)

    per_metric: list[tuple[str, list[VariantStats], list[tuple[str, _Arm, _Arm]]]] = []
    for m, metric in enumerate(metric_names):
        means = sums.sums[:, m] / n
        sq = np.maximum(sums.squares[:, m] - sums.sums[:, m] * means, 0.0)
        var = np.where(counts > 1, sq / np.maximum(counts - 1, 1), np.nan)
        conv = sums.positives[:, m]
        arms = {names[i]: _Arm(int(counts[i]), float(means[i]), float(var[i]), round(float(conv[i]))) for i in display}
        stats_rows = [
            VariantStats(
                variant=name,
                n=arm.n,
                mean=arm.mean,
                std=math.sqrt(arm.var) if arm.n > 1 else None,
                conversion=arm.conversions / arm.n,
            )
            for name, arm in arms.items()
        ]
        pairs = [(name, arm, arms[control]) for name, arm in arms.items() if name != control]
        per_metric.append((metric, stats_rows, pairs))

    # Build every comparison unadjusted, then correct across the experiment's whole family.
    unadjusted = [
        _compare(metric, name, control, t, c, alpha) for metric, _, pairs in per_metric for name, t, c in pairs
    ]
    adj_p = adjust_p_values([c.p_value for c in unadjusted], correction)
    adj_conv = adjust_p_values([c.conversion_p_value for c in unadjusted], correction)
    comparisons: dict[str, list[Comparison]] = {metric: [] for metric in metric_names}
    for c, p_adj, conv_adj in zip(unadjusted, adj_p, adj_conv, strict=True):
        comparisons[c.metric].append(
            replace(
                c,
                p_adjusted=p_adj,
                significant=p_adj is not None and p_adj < alpha,
                conversion_p_adjusted=conv_adj,
            )
        )
    return ExperimentResult(
        experiment=sums.key,
        control=control,
        units=int(counts.sum()),
        exposure_rows=sums.exposure_rows,
        duplicate_exposures=sums.duplicates,
        multiple_variant_units=sums.multiple_variant_units,
        outcomes_before_exposure=sums.before_exposure,
        srm=_srm([names[i] for i in display], [int(counts[i]) for i in display], weights),
        metrics=tuple(
            MetricResult(metric=metric, variants=tuple(rows), comparisons=tuple(comparisons[metric]))
            for metric, rows, _ in per_metric
        ),
    )
