"""The planner: from an intent to coverage, weights, layer, namespace range, sample size and duration.

Sample size per arm for a two-sided Welch test of the primary metric's mean, each treatment
against control, at ``alpha / (arms - 1)`` (Bonferroni over the treatments) and ``power``:

    n = 2 · (z[1 - α'/2] + z[power])² · σ² / (mde · μ)²

with ``mde`` relative to the control mean ``μ`` and ``σ`` the metric's per-user standard
deviation (from past outcome logs, ``metric_estimate``, or a stated default). Arms get equal
weights (the most power per user). The experiment goes into the surface's layer
(``<surface>-experiments``) on the smallest free namespace range — a multiple of 5 % that never
overlaps a draft or running experiment there — whose users reach ``n`` per arm within the
maximum duration at the observed traffic (``traffic_estimate``: distinct users per day on the
surface). When even the widest free range cannot, the plan says so plainly (``powered`` False)
and how long it would need.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from serving.experiments.lifecycle import experiments_of

STEP = 0.05  # namespace ranges are multiples of 5 %


@dataclass(frozen=True)
class Intent:
    """What a team wants to learn (the planner's input)."""

    key: str
    surface: str  # home | now_playing
    variants: Mapping[str, Mapping[str, Any]]  # variant key → params; the first is the control
    primary_metric: str
    mde: float  # minimum detectable effect, relative to the control mean (0.02 = 2 %)
    guardrails: tuple[str, ...]
    max_days: float
    alpha: float = 0.05
    power: float = 0.8

    def problems(self) -> list[str]:
        found = []
        if len(self.variants) < 2:
            found.append("variants: at least a control and one treatment")
        if not 0 < self.mde < 1:
            found.append(f"mde: a relative effect in (0, 1), got {self.mde}")
        if self.max_days <= 0:
            found.append(f"max_days: must be > 0, got {self.max_days}")
        if not 0 < self.alpha < 1 or not 0 < self.power < 1:
            found.append("alpha and power: each in (0, 1)")
        if not self.primary_metric:
            found.append("primary_metric: required")
        return found


@dataclass(frozen=True)
class MetricEstimate:
    """The primary metric's per-user mean and standard deviation, and where they came from."""

    mean: float
    std: float
    source: str


@dataclass(frozen=True)
class TrafficEstimate:
    """Distinct users per day on a surface, and where the figure came from."""

    users_per_day: float
    source: str


@dataclass(frozen=True)
class Plan:
    """The planner's proposal (``powered`` False: it cannot reach power within ``max_days``)."""

    intent: Intent
    layer: str
    range: tuple[float, float] | None  # None when no free range is left in the layer
    coverage: float
    weights: tuple[float, ...]
    users_per_arm: int
    users_needed: int
    days: float  # at the proposed range; inf when there is no traffic or no free range
    powered: bool
    metric: MetricEstimate
    traffic: TrafficEstimate
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def verdict(self) -> str:
        lo, hi = self.range if self.range is not None else (0.0, 0.0)
        if self.powered:
            return (
                f"powered: {self.users_per_arm:,} users per arm ({self.users_needed:,} in all) in "
                f"{self.days:.1f} days on [{lo:.2f}, {hi:.2f}) of layer {self.layer}"
            )
        return (
            f"NOT powered within {self.intent.max_days:g} days: needs {self.users_needed:,} users "
            f"({self.users_per_arm:,} per arm); {'; '.join(self.notes)}"
        )


def users_per_arm(intent: Intent, metric: MetricEstimate) -> float:
    """Welch sample size per arm (module docstring); inf when the mean is 0 (no relative effect)."""
    comparisons = max(1, len(intent.variants) - 1)
    z_alpha = stats.norm.ppf(1 - intent.alpha / comparisons / 2)
    z_power = stats.norm.ppf(intent.power)
    effect = intent.mde * abs(metric.mean)
    if effect <= 0:
        return math.inf
    return float(math.ceil(2 * (z_alpha + z_power) ** 2 * metric.std**2 / effect**2))


def free_ranges(document: Mapping[str, Any], layer: str) -> list[tuple[float, float]]:
    """The gaps of ``layer``'s namespace not taken by a draft or running experiment, in order."""
    taken = sorted(
        (float(e["range"][0]), float(e["range"][1]))
        for entry in document.get("layers") or []
        if entry.get("key") == layer
        for e in entry.get("experiments") or []
        if e.get("status", "draft") != "stopped" and e.get("range")
    )
    gaps, cursor = [], 0.0
    for lo, hi in taken:
        if lo > cursor + 1e-9:
            gaps.append((cursor, lo))
        cursor = max(cursor, hi)
    if cursor < 1.0 - 1e-9:
        gaps.append((cursor, 1.0))
    return gaps


def plan(intent: Intent, document: Mapping[str, Any], metric: MetricEstimate, traffic: TrafficEstimate) -> Plan:
    """Propose where and how long ``intent`` runs, given the live ``document`` (see module docstring)."""
    problems = intent.problems()
    if problems:
        raise ValueError("; ".join(problems))
    layer = f"{intent.surface}-experiments"
    arms = len(intent.variants)
    weights = tuple(round(1.0 / arms, 12) for _ in range(arms))
    per_arm = users_per_arm(intent, metric)
    needed = per_arm * arms if math.isfinite(per_arm) else per_arm
    notes: list[str] = []
    gaps = free_ranges(document, layer)
    widest = max((hi - lo for lo, hi in gaps), default=0.0)
    share_needed = needed / (traffic.users_per_day * intent.max_days) if traffic.users_per_day > 0 else math.inf
    width = math.ceil(share_needed / STEP - 1e-9) * STEP if math.isfinite(share_needed) else math.inf
    chosen: tuple[float, float] | None = None
    for lo, hi in gaps:  # the first gap wide enough, from its start
        if hi - lo >= width - 1e-9:
            chosen = (round(lo, 6), round(lo + width, 6))
            break
    if chosen is None and gaps:
        lo, hi = max(gaps, key=lambda g: g[1] - g[0])
        chosen = (round(lo, 6), round(hi, 6))
        full_days = needed / (traffic.users_per_day * widest) if traffic.users_per_day > 0 and widest > 0 else math.inf
        notes.append(
            f"even the widest free range of {layer} ({widest:.0%} of users) needs {full_days:.1f} days"
            if math.isfinite(full_days)
            else "no traffic observed on the surface"
        )
    if not gaps:
        notes.append(f"layer {layer} has no free namespace range (stop an experiment first)")
    share = (chosen[1] - chosen[0]) if chosen is not None else 0.0
    days = needed / (traffic.users_per_day * share) if traffic.users_per_day > 0 and share > 0 else math.inf
    powered = math.isfinite(days) and days <= intent.max_days + 1e-9
    if not math.isfinite(per_arm):
        notes.append(f"the metric's mean is 0 ({metric.source}): a relative effect cannot be planned")
    return Plan(
        intent=intent,
        layer=layer,
        range=chosen,
        coverage=1.0,
        weights=weights,
        users_per_arm=int(per_arm) if math.isfinite(per_arm) else 0,
        users_needed=int(needed) if math.isfinite(needed) else 0,
        days=days,
        powered=powered,
        metric=metric,
        traffic=traffic,
        notes=tuple(notes),
    )


def metric_estimate(outcome_paths: Sequence[Path], metric: str, default: MetricEstimate) -> MetricEstimate:
    """Per-user mean and std of ``metric`` from outcome logs (users with no event count as 0 only
    when they have another metric); ``default`` when the logs hold no such metric."""
    from offline.experiments.outcome_logs import load_outcomes

    if not outcome_paths:
        return default
    outcomes = load_outcomes(outcome_paths, strict=False)
    if metric not in outcomes.metrics:
        return default
    index = outcomes.metrics.index(metric)
    per_user = np.zeros(len(outcomes.unit_ids))
    np.add.at(per_user, outcomes.unit[outcomes.metric == index], outcomes.value[outcomes.metric == index])
    if per_user.size < 2:
        return default
    return MetricEstimate(
        float(per_user.mean()), float(per_user.std(ddof=1)), f"{per_user.size:,} users in {len(outcome_paths)} log(s)"
    )


SURFACES = ("home", "now_playing")


def traffic_estimate(
    exposure_paths: Iterable[Path], document: Mapping[str, Any], surface: str, default: TrafficEstimate
) -> TrafficEstimate:
    """``traffic_estimates`` for one surface."""
    return traffic_estimates(exposure_paths, document, default, (surface,))[surface]


def traffic_estimates(
    exposure_paths: Iterable[Path],
    document: Mapping[str, Any],
    default: TrafficEstimate,
    surfaces: Sequence[str] = SURFACES,
) -> dict[str, TrafficEstimate]:
    """Distinct exposed users per day on each surface from exposure logs, read once (a lower bound on
    its traffic: only users in some experiment are logged); ``default`` where the logs say nothing."""
    from offline.experiments.outcome_logs import load_exposures

    paths = list(exposure_paths)
    if not paths:
        return dict.fromkeys(surfaces, default)
    exposures = load_exposures(paths, strict=False)
    found = {}
    for surface in surfaces:
        on_surface = {str(e.get("key")) for e in experiments_of(document) if e.get("surface") == surface}
        keep = np.array([name in on_surface for name in exposures.experiments], dtype=np.bool_)
        wanted = keep[exposures.experiment] if keep.size else np.zeros(0, dtype=np.bool_)
        if not wanted.any():
            found[surface] = default
            continue
        ts = exposures.ts_ms[wanted]
        days = max((int(ts.max()) - int(ts.min())) / 86_400_000, 1.0)
        users = np.unique(exposures.unit[wanted]).size
        found[surface] = TrafficEstimate(users / days, f"{users:,} exposed users over {days:.1f} days of exposure logs")
    return found
