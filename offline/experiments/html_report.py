"""The analysis as one self-contained HTML page with plots (``encore experiments report``).

``render_html(report)`` returns a complete page: no scripts, no external files or fonts; every plot
is an inline SVG drawn by matplotlib (its object API, no pyplot state, no display needed). Per
experiment, in this order:

1. the verdict, coloured (ship green, stop/invalid red, keep running amber, don't ship grey), with
   its reasons, and the inference method;
2. the decision-metric table (role, CUPED-adjusted values, relative lift with its interval,
   p-value, variance removed by CUPED, and each metric's call);
3. plots: cumulative relative lift with its interval per day for every decision metric
   (guardrails show their margin), per-variant distributions of per-unit values, the sample ratio
   over time (each variant's share against its expected share, SRM p-value per day), and the
   guardrails' one-sided bounds against their margins;
4. the SRM check and the inputs read.

Every element a test or a reader looks for has a stable id or class: ``section.experiment``
(``data-experiment``), ``.verdict`` (``data-verdict``), ``table.decision``, ``figure.plot``
(``data-plot`` = ``lift-over-time`` | ``distributions`` | ``sample-ratio`` | ``guardrails``).
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Sequence
from typing import Final

from matplotlib.figure import Figure

from offline.experiments.analysis import AnalysisReport, ExperimentResult
from offline.experiments.decision import VerdictKind

__all__ = ["render_html"]

_COLOURS: Final[dict[VerdictKind, str]] = {
    "ship": "#1b7f3b",
    "stop": "#b3261e",
    "invalid": "#b3261e",
    "keep_running": "#a86b00",
    "dont_ship": "#555555",
}
_PALETTE: Final[tuple[str, ...]] = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860")
_CSS: Final[str] = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1100px;color:#1d1d1f}
h1{font-size:1.6rem} h2{margin-top:2.5rem;border-bottom:1px solid #ddd;padding-bottom:.3rem}
.verdict{color:#fff;padding:.8rem 1.2rem;border-radius:8px;font-size:1.3rem;font-weight:600}
.verdict ul{font-size:.95rem;font-weight:400;margin:.4rem 0 0 1rem;padding:0}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}
th,td{padding:.3rem .7rem;border-bottom:1px solid #e5e5e5;text-align:right;white-space:nowrap}
th:nth-child(-n+3),td:nth-child(-n+3){text-align:left}
figure.plot{margin:1.5rem 0} figcaption{font-size:.9rem;color:#555;margin-top:.3rem}
.meta{color:#555;font-size:.9rem}
.srm-bad{color:#b3261e;font-weight:600}
"""


def _svg(fig: Figure) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    return re.sub(r"<metadata>.*?</metadata>", "", text[text.index("<svg") :], flags=re.DOTALL)


def _figure(kind: str, fig: Figure, caption: str) -> str:
    return (
        f'<figure class="plot" data-plot="{kind}">{_svg(fig)}<figcaption>{html.escape(caption)}</figcaption></figure>'
    )


def _pct(x: float | None, signed: bool = True) -> str:
    return "n/a" if x is None else format(100.0 * x, "+.1f" if signed else ".1f") + "%"


def _has_lifts(exp: ExperimentResult, m: int) -> bool:
    return any(lift is not None for p in exp.timeline for lift in p.metrics[m].relative)


def _lift_over_time(exp: ExperimentResult) -> str:
    plotted = [m for m in range(len(exp.decision)) if _has_lifts(exp, m)]
    metrics = [exp.decision[m] for m in plotted]
    if not metrics:
        return '<p class="meta">No metric has a defined lift yet; nothing to plot over time.</p>'
    fig = Figure(figsize=(10, 2.6 * len(metrics)), layout="constrained")
    axes = fig.subplots(len(metrics), 1, squeeze=False)[:, 0]
    days = [p.day[5:] for p in exp.timeline]
    for m, ax, d in zip(plotted, axes, metrics, strict=True):
        for i, variant in enumerate(exp.variants[1:]):
            points = [(x, p.metrics[m].relative[i]) for x, p in enumerate(exp.timeline)]
            shown = [(x, lift) for x, lift in points if lift is not None]
            if not shown:
                continue
            xs = [x for x, _ in shown]
            colour = _PALETTE[(i + 1) % len(_PALETTE)]
            est = [100 * lift.estimate for _, lift in shown]
            low, high = [100 * lift.low for _, lift in shown], [100 * lift.high for _, lift in shown]
            if len(xs) > 1:
                ax.fill_between(xs, low, high, color=colour, alpha=0.2, linewidth=0)
            yerr = [[e - lo for e, lo in zip(est, low, strict=True)], [h - e for e, h in zip(est, high, strict=True)]]
            ax.errorbar(xs, est, yerr=yerr, marker="o", color=colour, capsize=3, label=variant)
        ax.axhline(0.0, color="#333", linewidth=0.8)
        if d.spec.margin is not None:
            bad = d.spec.margin * (100 if d.spec.direction == "decrease" else -100)
            ax.axhline(bad, color=_COLOURS["stop"], linestyle="--", linewidth=1, label=f"margin {bad:+g}%")
        ax.set_title(f"{d.spec.name} ({d.spec.role}, {d.spec.direction} is good): cumulative relative lift")
        ax.set_ylabel("lift vs control, %")
        ax.set_xticks(range(len(days)), days, rotation=0 if len(days) <= 16 else 45)
        ax.legend(loc="upper right", fontsize=8)
        ax.grid(alpha=0.3)
    skipped = [d.spec.name for i, d in enumerate(exp.decision) if i not in plotted]
    note = f" Not plotted (no defined lift): {', '.join(skipped)}." if skipped else ""
    return _figure(
        "lift-over-time",
        fig,
        "Cumulative relative lift per UTC day with its interval (shaded); the interval may be read every day "
        "when the method is sequential." + note,
    )


def _distributions(exp: ExperimentResult) -> str:
    empty = {d.spec.name for d in exp.decision if not any(a.raw for a in d.inference.arms if a.raw == a.raw)}
    dists = [d for d in exp.distributions if d.metric not in empty and any(sum(row) for row in d.counts)]
    if not dists:
        return ""
    fig = Figure(figsize=(10, 2.6), layout="constrained")
    axes = fig.subplots(1, len(dists), squeeze=False)[0]
    for ax, dist in zip(axes, dists, strict=True):
        for i, (variant, counts) in enumerate(zip(exp.variants, dist.counts, strict=True)):
            total = sum(counts) or 1
            ax.stairs([c / total for c in counts], dist.edges, label=variant, color=_PALETTE[i % len(_PALETTE)])
        ax.set_title(f"{dist.metric} per unit")
        ax.set_ylabel("share of units")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return _figure(
        "distributions", fig, "Per-unit values by variant (shares of each variant's units; last bin holds the tail)."
    )


def _sample_ratio(exp: ExperimentResult) -> str:
    fig = Figure(figsize=(10, 2.6), layout="constrained")
    ax = fig.subplots()
    days = [p.day[5:] for p in exp.timeline]
    expected = dict(zip(exp.srm.variants, exp.srm.expected, strict=True))
    total_expected = sum(expected.values()) or 1.0
    for i, variant in enumerate(exp.variants):
        shares = [p.units[i] / max(1, sum(p.units)) for p in exp.timeline]
        colour = _PALETTE[i % len(_PALETTE)]
        ax.plot(range(len(days)), [100 * s for s in shares], marker="o", color=colour, label=variant)
        if variant in expected:
            ax.axhline(100 * expected[variant] / total_expected, color=colour, linestyle=":", linewidth=1)
    for x, p in enumerate(exp.timeline):
        if p.srm_p is not None:
            ax.annotate(f"p={p.srm_p:.2g}", (x, 1), xycoords=("data", "axes fraction"), fontsize=7, ha="center",
                        va="top", color=_COLOURS["stop"] if p.srm_p < 0.001 else "#555")  # fmt: skip
    ax.set_title("sample ratio over time: each variant's share of units (dotted: expected)")
    ax.set_ylabel("% of units")
    ax.set_xticks(range(len(days)), days)
    ax.legend(fontsize=8, loc="center right")
    ax.grid(alpha=0.3)
    return _figure("sample-ratio", fig, "Cumulative share of units per variant each day, with the SRM p-value.")


def _guardrails(exp: ExperimentResult) -> str:
    assert exp.verdict is not None
    rows = [
        (v.variant, c)
        for v in exp.verdict.variants
        for c in v.calls
        if c.role == "guardrail" and c.estimate is not None and c.relative
    ]
    margins = {d.spec.name: (d.spec.margin or 0.0, d.spec.direction) for d in exp.decision}
    fig = Figure(figsize=(10, 0.7 * max(1, len(rows)) + 1.0), layout="constrained")
    ax = fig.subplots()
    for y, (variant, call) in enumerate(rows):
        margin, direction = margins[call.metric]
        bad = margin if direction == "decrease" else -margin
        colour = {"non-inferior": _COLOURS["ship"], "deteriorated": _COLOURS["stop"]}.get(call.status, "#a86b00")
        est, bound = 100 * (call.estimate or 0.0), 100 * (call.bound or 0.0)
        ax.plot([est, bound], [y, y], color=colour, linewidth=3)
        ax.plot([est], [y], marker="o", color=colour)
        ax.plot([100 * bad], [y], marker="|", markersize=18, color=_COLOURS["stop"])
        ax.annotate(f"{call.metric} · {variant}: {call.status}", (est, y + 0.25), fontsize=8, ha="center")
    ax.axvline(0.0, color="#333", linewidth=0.8)
    ax.set_yticks([])
    ax.set_ylim(-0.8, max(1, len(rows)) - 0.2)
    ax.set_xlabel("relative lift, % (line: estimate to its one-sided bound; red tick: the margin)")
    ax.set_title("guardrails: the worst case allowed by the data against the margin")
    ax.grid(alpha=0.3, axis="x")
    return _figure("guardrails", fig, "A guardrail passes when its one-sided bound stays inside the margin.")


def _decision_table(exp: ExperimentResult) -> str:
    assert exp.verdict is not None
    calls = {(c.metric, v.variant): c for v in exp.verdict.variants for c in v.calls}
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "metric",
            "role",
            "variant",
            "value",
            "control",
            "relative lift [interval]",
            "p",
            "CUPED: variance removed",
            "call",
        )
    )
    rows = []
    for d in exp.decision:
        inf = d.inference
        for i, variant in enumerate(d.variants[1:]):
            rel = inf.relative[i]
            lift = "n/a" if rel is None else f"{_pct(rel.estimate)} [{_pct(rel.low)}, {_pct(rel.high)}]"
            p = "n/a" if rel is None else f"{rel.p_value:.3g}"
            call = calls.get((d.spec.name, variant))
            role = d.spec.role + ("" if d.spec.margin is None else f" (margin {100 * d.spec.margin:g}%)")
            cells = [
                d.spec.name, role, variant, f"{inf.arms[i + 1].adjusted:.4g}", f"{inf.arms[0].adjusted:.4g}",
                lift, p, _pct(inf.variance_reduction, False), "" if call is None else call.status,
            ]  # fmt: skip
            rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return f'<table class="decision"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _srm_block(exp: ExperimentResult) -> str:
    srm = exp.srm
    cells = ", ".join(f"{v}: {n}" for v, n in zip(srm.variants, srm.observed, strict=True))
    p = "n/a" if srm.p_value is None else f"{srm.p_value:.3g}"
    cls = "srm-bad" if srm.flagged else ""
    return (
        f'<p class="meta {cls}">Sample ratio check: {"MISMATCH" if srm.flagged else "ok"} '
        f"(p = {p}, weights: {srm.weights_source}); units {html.escape(cells)}; "
        f"{exp.multiple_variant_units} multiple-variant units excluded, "
        f"{exp.duplicate_exposures} duplicate exposures dropped.</p>"
    )


def _experiment(exp: ExperimentResult, report: AnalysisReport) -> str:
    key = html.escape(exp.experiment)
    if exp.verdict is None:
        return (
            f'<section class="experiment" data-experiment="{key}"><h2>{key}</h2><p>No decision metrics.</p></section>'
        )
    verdict = exp.verdict
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in verdict.reasons)
    method = (
        f"always-valid confidence sequences (tuned for {report.tuning_units:,} units)"
        if report.method == "sequential"
        else "fixed-horizon intervals (valid at the planned end only)"
    )
    cuped = f"CUPED over {report.cuped_window_days:g} days before exposure" if report.cuped_window_days else "no CUPED"
    parts = [
        f'<section class="experiment" data-experiment="{key}">',
        f"<h2>{key}</h2>",
        f'<div class="verdict" data-verdict="{verdict.kind}" style="background:{_COLOURS[verdict.kind]}">'
        f"{html.escape(verdict.label)}<ul>{reasons}</ul></div>",
        f'<p class="meta">{exp.units:,} units · {html.escape(method)} · {cuped} · '
        f"alpha {report.alpha:g} · control: {html.escape(exp.control)}</p>",
        _decision_table(exp),
    ]
    if exp.timeline:
        parts.append(_lift_over_time(exp))
    if exp.distributions:
        parts.append(_distributions(exp))
    if exp.timeline:
        parts.append(_sample_ratio(exp))
    if any(d.spec.role == "guardrail" for d in exp.decision):
        parts.append(_guardrails(exp))
    parts += [_srm_block(exp), "</section>"]
    return "\n".join(parts)


def render_html(report: AnalysisReport, title: str = "Experiment results", sources: Sequence[str] = ()) -> str:
    """The whole page (see the module docstring); ``sources`` are listed as the inputs read."""
    er, orr = report.exposures_read, report.outcomes_read
    inputs = (
        f"{er.records:,} exposures from {er.files} files, {orr.records:,} outcomes from {orr.files} files "
        f"({report.unmatched_outcomes:,} from never-exposed units ignored)"
    )
    body = [_experiment(exp, report) for exp in report.experiments] or ["<p>No experiments in the exposures.</p>"]
    listed = "".join(f"<li><code>{html.escape(s)}</code></li>" for s in sources)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f'<h1>{html.escape(title)}</h1><p class="meta">{html.escape(inputs)}</p>'
        + (f'<ul class="meta">{listed}</ul>' if listed else "")
        + "\n".join(body)
        + "</body></html>\n"
    )
