"""The analysis report as text for people (``format_report``) and as JSON for tools (``report_to_json``).

Both render an ``offline.experiments.analysis.AnalysisReport`` and compute nothing new: the text
has the inputs read, then per experiment the verdict with its reasons, an SRM line (a loud banner
when it failed), the decision metrics (CUPED-adjusted, with the method's intervals) and one aligned
fixed-horizon table per outcome metric; the JSON has stable keys (``schema_version`` 2) and null for
undefined figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from offline.experiments.analysis import SRM_P_THRESHOLD, AnalysisReport, ExperimentResult, Interval, SrmCheck
from offline.experiments.decision import Verdict
from offline.experiments.inference import Lift, MetricInference
from offline.experiments.outcome_logs import ReadStats

__all__ = ["JSON_SCHEMA_VERSION", "format_report", "report_to_json"]

JSON_SCHEMA_VERSION: Final[int] = 2
"""2 added ``decision`` per experiment (verdict, decision metrics, timeline); nothing else changed."""


def _num(x: float | None, spec: str = ".4g") -> str:
    return "n/a" if x is None else format(x, spec)


def _p(x: float | None) -> str:
    """A p-value; exact 0 means it underflowed double precision."""
    return "<1e-300" if x == 0.0 else _num(x, ".3g")


def _pct(x: float | None, signed: bool = False) -> str:
    return "n/a" if x is None else format(100.0 * x, "+.1f" if signed else ".1f") + "%"


def _ci(ci: Interval | None, pct: bool = False) -> str:
    if ci is None:
        return "[n/a]"
    if pct:
        return f"[{_pct(ci.low, True)}, {_pct(ci.high, True)}]"
    return f"[{ci.low:+.4g}, {ci.high:+.4g}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> list[str]:
    """Aligned columns; the first ``left`` columns are left-aligned, the rest right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(
            c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in [header, *rows]
    ]


def _srm_warning(srm: SrmCheck) -> list[str]:
    total = sum(srm.observed) or 1
    observed = ", ".join(f"{v}={n} ({100 * n / total:.1f}%)" for v, n in zip(srm.variants, srm.observed, strict=True))
    expected = ", ".join(f"{v}={100 * e / total:.1f}%" for v, e in zip(srm.variants, srm.expected, strict=True))
    bar = "!" * 78
    lines = [bar, "!! SAMPLE RATIO MISMATCH — the split of units does not match the configured weights."]
    if srm.p_value is not None:
        lines.append(f"!! chi2 = {srm.chi2:.4g}, p = {_p(srm.p_value)} < {SRM_P_THRESHOLD}")
    lines.append(f"!! observed: {observed}")
    lines.append(f"!! expected: {expected} (weights: {srm.weights_source})")
    if srm.unexpected_variants:
        lines.append(f"!! units in variants with no expected weight: {', '.join(srm.unexpected_variants)}")
    lines += ["!! Assignment or exposure logging is broken; do not trust the lifts below.", bar]
    return lines


def format_report(report: AnalysisReport) -> str:
    """Human-readable report: inputs, then per experiment an SRM line and one table per metric."""
    ci_label = f"{100 * (1 - report.alpha):g}% CI"
    er, orr = report.exposures_read, report.outcomes_read
    out = [
        f"Exposures: {er.records} records from {er.files} files, {er.skipped} malformed lines skipped",
        f"Outcomes:  {orr.records} records from {orr.files} files, {orr.skipped} malformed lines skipped, "
        f"{report.unmatched_outcomes} from never-exposed units ignored",
        *(f"  skipped {p}" for p in (*er.problems, *orr.problems)),
        f"Tests: Welch t (means), pooled z (conversion); {report.correction} correction per experiment, "
        f"alpha={report.alpha:g}; {ci_label}s unadjusted",
    ]
    if not report.experiments:
        out += ["", "No experiments found in the exposures."]
    for exp in report.experiments:
        out += ["", f"=== Experiment {exp.experiment} ===", *(_srm_warning(exp.srm) if exp.srm.flagged else [])]
        srm = exp.srm
        verdict = "MISMATCH" if srm.flagged else "ok"
        srm_stat = "n/a" if srm.p_value is None else f"chi2={srm.chi2:.4g} p={_p(srm.p_value)}"
        out += _decision_lines(exp, report.method)
        out += [
            f"units={exp.units}  control={exp.control}  exposure rows={exp.exposure_rows}",
            f"duplicate exposures dropped={exp.duplicate_exposures}  "
            f"multiple-variant units excluded={exp.multiple_variant_units}  "
            f"outcomes before exposure ignored={exp.outcomes_before_exposure}",
            f"SRM: {verdict} ({srm_stat}, weights: {srm.weights_source}, threshold p<{SRM_P_THRESHOLD})",
        ]
        for metric in exp.metrics:
            by_variant = {c.variant: c for c in metric.comparisons}
            rows = []
            for vs in metric.variants:
                c = by_variant.get(vs.variant)
                cells = [vs.variant, str(vs.n), _num(vs.mean), _num(vs.std), _pct(vs.conversion)]
                if c is None:
                    cells += ["(control)", "", "", "", "", "", ""]
                else:
                    cells += [
                        f"{c.abs_lift:+.4g} {_ci(c.abs_ci)}",
                        f"{_pct(c.rel_lift, True)} {_ci(c.rel_ci, pct=True)}",
                        _p(c.p_value),
                        _p(c.p_adjusted),
                        "YES" if c.significant else "no",
                        f"{_pct(c.conversion_lift, True)} {_ci(c.conversion_ci, pct=True)}",
                        _p(c.conversion_p_value),
                    ]
                rows.append(cells)
            header = [
                "variant",
                "n",
                "mean",
                "std",
                "conv",
                f"abs lift [{ci_label}]",
                f"rel lift [{ci_label}]",
                "p",
                "adj p",
            ]
            header += ["sig", f"conv lift [{ci_label}]", "conv p"]
            out += ["", f"metric: {metric.metric} (fixed horizon)", *_table(header, rows)]
    return "\n".join(out) + "\n"


def _lift_text(lift: Lift | None, relative: bool) -> str:
    if lift is None:
        return "n/a"
    if relative:
        return f"{_pct(lift.estimate, True)} [{_pct(lift.low, True)}, {_pct(lift.high, True)}]"
    return f"{lift.estimate:+.4g} [{lift.low:+.4g}, {lift.high:+.4g}]"


def _decision_lines(exp: ExperimentResult, method: str) -> list[str]:
    """The verdict banner and the decision-metric table (empty when the experiment had no decision)."""
    if exp.verdict is None:
        return []
    lines = [f"VERDICT: {exp.verdict.label.upper()}", *(f"  - {r}" for r in exp.verdict.reasons)]
    header = [
        "metric",
        "role",
        "variant",
        "adj value",
        "adj control",
        f"rel lift [{method} CI]",
        "p",
        "CUPED var cut",
        "call",
    ]
    rows = []
    calls = {(c.metric, v.variant): c for v in exp.verdict.variants for c in v.calls}
    for d in exp.decision:
        inf = d.inference
        for i, variant in enumerate(d.variants[1:]):
            rel = inf.relative[i]
            lift, relative = (rel, True) if rel is not None else (inf.absolute[i], False)
            call = calls.get((d.spec.name, variant))
            rows.append(
                [
                    d.spec.name,
                    d.spec.role + ("" if d.spec.margin is None else f" ({100 * d.spec.margin:g}%)"),
                    variant,
                    _num(inf.arms[i + 1].adjusted),
                    _num(inf.arms[0].adjusted),
                    _lift_text(lift, relative),
                    "n/a" if lift is None else _p(lift.p_value),
                    _pct(inf.variance_reduction),
                    "" if call is None else call.status,
                ]
            )
    return [*lines, "", *_table(header, rows, left=3), ""]


def _lift_json(lift: Lift | None) -> dict[str, float] | None:
    if lift is None:
        return None
    return {"estimate": lift.estimate, "se": lift.se, "low": lift.low, "high": lift.high, "p_value": lift.p_value}


def _inference_json(variants: Sequence[str], inf: MetricInference) -> dict[str, Any]:
    return {
        "theta": inf.theta,
        "variance_reduction": inf.variance_reduction,
        "arms": [
            {
                "variant": v,
                "n": a.n,
                "value": _finite(a.raw),
                "adjusted": _finite(a.adjusted),
                "variance": _finite(a.variance),
            }
            for v, a in zip(variants, inf.arms, strict=True)
        ],
        "lifts": [
            {"variant": v, "absolute": _lift_json(ab), "relative": _lift_json(rel)}
            for v, ab, rel in zip(variants[1:], inf.absolute, inf.relative, strict=True)
        ],
    }


def _finite(x: float) -> float | None:
    return x if x == x and abs(x) != float("inf") else None


def _verdict_json(verdict: Verdict) -> dict[str, Any]:
    return {
        "verdict": verdict.kind,
        "label": verdict.label,
        "variant": verdict.variant,
        "reasons": list(verdict.reasons),
        "variants": [
            {
                "variant": v.variant,
                "verdict": v.kind,
                "reasons": list(v.reasons),
                "calls": [
                    {
                        "metric": c.metric,
                        "role": c.role,
                        "status": c.status,
                        "relative": c.relative,
                        "estimate": c.estimate,
                        "bound": c.bound,
                    }
                    for c in v.calls
                ],
            }
            for v in verdict.variants
        ],
    }


def _decision_json(exp: ExperimentResult, report: AnalysisReport) -> dict[str, Any] | None:
    if exp.verdict is None:
        return None
    return {
        "method": report.method,
        "tuning_units": report.tuning_units,
        "cuped_window_days": report.cuped_window_days,
        "variants": list(exp.variants),
        **_verdict_json(exp.verdict),
        "metrics": [
            {
                "metric": d.spec.name,
                "role": d.spec.role,
                "direction": d.spec.direction,
                "margin": d.spec.margin,
                "numerator": d.spec.numerator,
                "denominator": None if d.spec.denominator is None else list(d.spec.denominator),
                **_inference_json(d.variants, d.inference),
            }
            for d in exp.decision
        ],
        "timeline": [
            {
                "day": p.day,
                "end_ms": p.end_ms,
                "units": list(p.units),
                "srm_p": p.srm_p,
                "metrics": [
                    {"metric": d.spec.name, "lifts": _inference_json(d.variants, inf)["lifts"]}
                    for d, inf in zip(exp.decision, p.metrics, strict=True)
                ],
            }
            for p in exp.timeline
        ],
    }


def _interval_json(ci: Interval | None) -> list[float] | None:
    return None if ci is None else [ci.low, ci.high]


def _read_json(r: ReadStats) -> dict[str, Any]:
    return {"files": r.files, "records": r.records, "skipped_lines": r.skipped, "problems": list(r.problems)}


def report_to_json(report: AnalysisReport) -> dict[str, Any]:
    """The report as plain JSON types with stable keys (``schema_version`` 1); undefined → null.

    Intervals are ``[low, high]``. Safe for ``json.dumps(..., allow_nan=False)``.
    """
    return {
        "schema_version": JSON_SCHEMA_VERSION,
        "correction": report.correction,
        "alpha": report.alpha,
        "srm_p_threshold": SRM_P_THRESHOLD,
        "metrics": list(report.metrics),
        "inputs": {
            "exposures": _read_json(report.exposures_read),
            "outcomes": _read_json(report.outcomes_read),
            "unmatched_outcomes": report.unmatched_outcomes,
        },
        "srm_flagged": list(report.srm_flagged),
        "experiments": [
            {
                "experiment": exp.experiment,
                "control": exp.control,
                "units": exp.units,
                "exposure_rows": exp.exposure_rows,
                "duplicate_exposures": exp.duplicate_exposures,
                "multiple_variant_units": exp.multiple_variant_units,
                "outcomes_before_exposure": exp.outcomes_before_exposure,
                "decision": _decision_json(exp, report),
                "srm": {
                    "flagged": exp.srm.flagged,
                    "chi2": exp.srm.chi2,
                    "p_value": exp.srm.p_value,
                    "weights_source": exp.srm.weights_source,
                    "variants": [
                        {"variant": v, "observed": n, "expected": e}
                        for v, n, e in zip(exp.srm.variants, exp.srm.observed, exp.srm.expected, strict=True)
                    ],
                    "unexpected_variants": list(exp.srm.unexpected_variants),
                },
                "metrics": [
                    {
                        "metric": m.metric,
                        "variants": [
                            {"variant": s.variant, "n": s.n, "mean": s.mean, "std": s.std, "conversion": s.conversion}
                            for s in m.variants
                        ],
                        "comparisons": [
                            {
                                "variant": c.variant,
                                "control": c.control,
                                "abs_lift": c.abs_lift,
                                "abs_ci": _interval_json(c.abs_ci),
                                "rel_lift": c.rel_lift,
                                "rel_ci": _interval_json(c.rel_ci),
                                "t_stat": c.t_stat,
                                "df": c.df,
                                "p_value": c.p_value,
                                "p_adjusted": c.p_adjusted,
                                "significant": c.significant,
                                "conversion": {
                                    "lift": c.conversion_lift,
                                    "ci": _interval_json(c.conversion_ci),
                                    "z_stat": c.z_stat,
                                    "p_value": c.conversion_p_value,
                                    "p_adjusted": c.conversion_p_adjusted,
                                },
                            }
                            for c in m.comparisons
                        ],
                    }
                    for m in exp.metrics
                ],
            }
            for exp in report.experiments
        ],
    }
