"""One verdict per experiment from all its metrics: ship, don't ship, keep running, stop, invalid.

Spotify's decision rule (Schultzberg, Ankargren & Frånberg 2024), applied to each treatment
variant against control on the relative lift (the absolute one when control's value is 0), with
the intervals of the analysis's method (``sequential`` by default, so a verdict may be read daily):

- **invalid: sample-ratio mismatch** — the experiment's SRM check failed; nothing else is trusted.
- **stop: guardrail harmed** — a guardrail's ``1 - alpha`` interval lies wholly on its bad side.
- **don't ship** — a success metric's ``1 - alpha`` interval lies wholly on its bad side
  (deterioration), or the plan is complete (``planned_units`` reached or ``plan_complete``) without
  a ship.
- **ship** — at least one success metric improved (its interval at ``alpha / #success``, Bonferroni,
  lies wholly on its good side) and every guardrail is non-inferior (the one-sided ``1 - alpha``
  bound on its bad side is within ``margin`` of 0).
- **keep running** — otherwise; the reasons say what is still missing.

The experiment's verdict: invalid if SRM; else stop if any variant harmed a guardrail; else ship
(the shippable variant with the largest lift on the first success metric); else keep running if
any variant may still ship; else don't ship.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from offline.experiments.inference import Lift, MetricInference, confidence_interval
from offline.experiments.metric_specs import MetricSpec

__all__ = ["VERDICT_LABELS", "MetricCall", "VariantVerdict", "Verdict", "VerdictKind", "decide"]

VerdictKind = Literal["invalid", "stop", "dont_ship", "ship", "keep_running"]
VERDICT_LABELS: Final[dict[VerdictKind, str]] = {
    "invalid": "invalid: sample-ratio mismatch",
    "stop": "stop: guardrail harmed",
    "dont_ship": "don't ship",
    "ship": "ship",
    "keep_running": "keep running",
}
Status = Literal["improved", "deteriorated", "non-inferior", "inconclusive", "undefined"]


@dataclass(frozen=True)
class MetricCall:
    """What one metric says about one variant: its status and the bound that decided it."""

    metric: str
    role: str
    status: Status
    relative: bool
    estimate: float | None
    bound: float | None
    """The decisive bound (success: the Bonferroni interval's bound nearer 0; guardrail: the one-sided
    bound on the bad side), in the metric's own units of lift (a fraction when ``relative``)."""


@dataclass(frozen=True)
class VariantVerdict:
    variant: str
    kind: VerdictKind
    reasons: tuple[str, ...]
    calls: tuple[MetricCall, ...]

    @property
    def label(self) -> str:
        return VERDICT_LABELS[self.kind]


@dataclass(frozen=True)
class Verdict:
    """The experiment's verdict, the variant it names (ship/stop), and every variant's own."""

    kind: VerdictKind
    variant: str | None
    reasons: tuple[str, ...]
    variants: tuple[VariantVerdict, ...]

    @property
    def label(self) -> str:
        return VERDICT_LABELS[self.kind] + (f" ({self.variant})" if self.variant else "")


def _fmt(value: float, relative: bool) -> str:
    return f"{100 * value:+.2f}%" if relative else f"{value:+.4g}"


def _pick(inference: MetricInference, index: int) -> tuple[Lift | None, bool]:
    rel = inference.relative[index]
    return (rel, True) if rel is not None else (inference.absolute[index], False)


def _call(spec: MetricSpec, inference: MetricInference, index: int, n_success: int) -> MetricCall:
    lift, relative = _pick(inference, index)
    if lift is None:
        return MetricCall(spec.name, spec.role, "undefined", relative, None, None)
    n = inference.arms[0].n + inference.arms[index + 1].n
    good = spec.sign
    bad_side = lift.high if good < 0 else lift.low  # the reported interval's bound nearest the good side
    deteriorated = (lift.high < 0.0) if good > 0 else (lift.low > 0.0)
    if spec.role == "success":
        low, high = confidence_interval(
            lift.estimate, lift.se, n, inference.alpha / max(1, n_success), inference.method, inference.tuning_units
        )
        near = low if good > 0 else high
        if near * good > 0.0:
            return MetricCall(spec.name, spec.role, "improved", relative, lift.estimate, near)
        status: Status = "deteriorated" if deteriorated else "inconclusive"
        return MetricCall(spec.name, spec.role, status, relative, lift.estimate, near)
    if spec.role == "guardrail":
        low, high = confidence_interval(
            lift.estimate, lift.se, n, 2.0 * inference.alpha, inference.method, inference.tuning_units
        )
        worst = high if good < 0 else low
        if deteriorated:
            return MetricCall(spec.name, spec.role, "deteriorated", relative, lift.estimate, worst)
        margin = spec.margin or 0.0
        within = relative and -worst * good < margin
        return MetricCall(
            spec.name, spec.role, "non-inferior" if within else "inconclusive", relative, lift.estimate, worst
        )
    status = "deteriorated" if deteriorated else ("improved" if bad_side * good > 0 else "inconclusive")
    return MetricCall(spec.name, spec.role, status, relative, lift.estimate, bad_side)


def _variant_verdict(
    variant: str, calls: Sequence[MetricCall], specs: Sequence[MetricSpec], done: bool
) -> VariantVerdict:
    margins = {s.name: s.margin for s in specs}
    harmed = [c for c in calls if c.role == "guardrail" and c.status == "deteriorated"]
    if harmed:
        reasons = tuple(
            f"guardrail {c.metric} got significantly worse ({_fmt(c.estimate or 0.0, c.relative)})" for c in harmed
        )
        return VariantVerdict(variant, "stop", reasons, tuple(calls))
    worse = [c for c in calls if c.role == "success" and c.status == "deteriorated"]
    if worse:
        reasons = tuple(
            f"success metric {c.metric} got significantly worse ({_fmt(c.estimate or 0.0, c.relative)})" for c in worse
        )
        return VariantVerdict(variant, "dont_ship", reasons, tuple(calls))
    improved = [c for c in calls if c.role == "success" and c.status == "improved"]
    unproven = [c for c in calls if c.role == "guardrail" and c.status != "non-inferior"]
    if improved and not unproven:
        reasons = tuple(
            f"{c.metric} improved {_fmt(c.estimate or 0.0, c.relative)} (bound {_fmt(c.bound or 0.0, c.relative)})"
            for c in improved
        ) + tuple(
            f"guardrail {c.metric} within its {100 * (margins[c.metric] or 0.0):g}% margin "
            f"(worst case {_fmt(c.bound or 0.0, c.relative)})"
            for c in calls
            if c.role == "guardrail"
        )
        return VariantVerdict(variant, "ship", reasons, tuple(calls))
    missing = [] if improved else ["no success metric has improved significantly yet"]
    missing += [
        f"guardrail {c.metric} not yet shown within its {100 * (margins[c.metric] or 0.0):g}% margin"
        + ("" if c.bound is None else f" (worst case {_fmt(c.bound, c.relative)})")
        for c in unproven
    ]
    if done:
        return VariantVerdict(variant, "dont_ship", ("the planned sample is complete", *missing), tuple(calls))
    return VariantVerdict(variant, "keep_running", tuple(missing), tuple(calls))


def decide(
    variants: Sequence[str],
    specs: Sequence[MetricSpec],
    inferences: Sequence[MetricInference],
    *,
    srm_flagged: bool,
    srm_p: float | None = None,
    plan_complete: bool = False,
) -> Verdict:
    """The verdict for one experiment; ``variants[0]`` is control, ``inferences[i]`` is ``specs[i]``."""
    n_success = sum(1 for s in specs if s.role == "success")
    per_variant = []
    for index, variant in enumerate(variants[1:]):
        calls = [_call(spec, inf, index, n_success) for spec, inf in zip(specs, inferences, strict=True)]
        per_variant.append(_variant_verdict(variant, calls, specs, plan_complete))
    if srm_flagged:
        p = "" if srm_p is None else f" (p = {srm_p:.2g})"
        return Verdict(
            "invalid",
            None,
            (f"the split of units does not match the configured weights{p}; fix assignment or logging",),
            tuple(per_variant),
        )
    for kind in ("stop", "ship"):
        chosen = [v for v in per_variant if v.kind == kind]
        if chosen:
            best = max(chosen, key=lambda v: _first_success_lift(v))
            return Verdict(best.kind, best.variant, best.reasons, tuple(per_variant))
    if any(v.kind == "keep_running" for v in per_variant):
        reasons = tuple(f"{v.variant}: {r}" for v in per_variant if v.kind == "keep_running" for r in v.reasons)
        return Verdict("keep_running", None, reasons, tuple(per_variant))
    if not per_variant:
        return Verdict("keep_running", None, ("only one variant has units so far",), ())
    reasons = tuple(f"{v.variant}: {r}" for v in per_variant for r in v.reasons)
    return Verdict("dont_ship", None, reasons, tuple(per_variant))


def _first_success_lift(verdict: VariantVerdict) -> float:
    for call in verdict.calls:
        if call.role == "success" and call.estimate is not None:
            return call.estimate * (1.0 if call.status != "deteriorated" else -1.0)
    return -math.inf
