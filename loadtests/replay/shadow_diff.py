"""Shadow diff: compare a primary's answers with a candidate's, above the noise floor a secondary shows.

Pure functions over what ``loadtests.replay.run`` collected; no I/O except ``format_report``'s string.

Per request (``diff_request``), between a base answer B and another answer O of the same request:
overlap@K, rank-biased overlap (p = 0.9), Kendall tau over the items in both lists (``None`` with
fewer than 2 shared), new items (in O, not in B), dropped items (in B, not in O), mean |score delta|
over shared items, the latency delta O − B, and which "fields" differ (status, top-K set, order,
scores, degraded stages, model version). Agreement metrics exist only when both answers are OK.

In aggregate (``summarize_pair``, ``summarize_target``): means and p10/p50/p90 of the per-request
metrics, per-target latency percentiles, error and degradation rates, model and bundle versions seen.

**Noise floor (Diffy).** Two servers running the same version (primary P and secondary S) can still
disagree: timeouts that fall back, load-dependent latency. Twitter's Diffy multicasts each request to
primary, secondary and candidate, counts differences P-vs-C ("raw") and P-vs-S ("noise") per field,
and shows a field only when it stands out from the noise (``JoinedDifferences``: raw > noise,
relative difference |raw − noise| / (raw + noise) > R % and absolute difference
|raw − noise| / requests > A %). We apply that rule to the per-field difference counts
(defaults R = 20 %, A = 1 %), and its analogue to each aggregate metric m, oriented so that larger
means "more different" (1 − RBO, 1 − overlap@K, 1 − tau, new/dropped items, |score delta|, latency
increase, new-error and new-degradation rates)::

    excess(m)      = m(P, C) − |m(P, S)|                       (noise 0 without a secondary)
    significant(m) = excess(m) > floor(m)  and  excess(m) / (|m(P, C)| + |m(P, S)|) > R

where ``floor`` is a small per-metric absolute margin (``METRICS``). Thresholds are checked against
the excess, i.e. only the disagreement beyond what two identical servers show counts:

=========================  ===============================================================  =======
option                     check                                                            default
=========================  ===============================================================  =======
``max_rbo_drop``           (1 − RBO(P, C)) − (1 − RBO(P, S))  <=  limit                     0.10
``min_overlap``            1 − [(1 − ovl@K(P, C)) − (1 − ovl@K(P, S))]  >=  limit            0.80
``max_p99_increase_ms``    (p99(C) − p99(P)) − |p99(S) − p99(P)|  <=  limit                 10 ms
``max_error_rate``         new errors (P OK, C failed) / requests, minus the same for S     0.01
``max_degraded_rate``      new degradation (P whole, C degraded) / requests, minus for S    0.01
=========================  ===============================================================  =======

Error and degradation checks count *new* failures per request, so captured requests that fail on
every version (an invalid request replayed) never fail the verdict.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from scipy.stats import kendalltau

from loadtests.stats import percentile
from ranking.agreement import overlap_at_k, rank_biased_overlap

RBO_P = 0.9
#: Diffy's relative threshold (percent) and our absolute one (percent of requests).
RELATIVE_PCT = 20.0
ABSOLUTE_PCT = 1.0
#: Two scores of one item are "equal" within this (same model, same features, float32 on the wire).
SCORE_TOLERANCE = 1e-5

#: Aggregate metrics compared with the noise floor: key → (label, unit, absolute floor).
METRICS: dict[str, tuple[str, str, float]] = {
    "rbo_drop": ("1 − RBO (mean)", "", 0.01),
    "overlap_drop": ("1 − overlap@K (mean)", "", 0.01),
    "tau_drop": ("1 − Kendall tau, shared (mean)", "", 0.02),
    "new_items": ("new items / request (mean)", "", 0.1),
    "dropped_items": ("dropped items / request (mean)", "", 0.1),
    "score_delta": ("|score Δ|, shared (mean)", "", 1e-4),
    "latency_p50_increase_ms": ("latency p50 increase", "ms", 1.0),
    "latency_p90_increase_ms": ("latency p90 increase", "ms", 1.0),
    "latency_p99_increase_ms": ("latency p99 increase", "ms", 1.0),
    "new_error_rate": ("new error rate", "", 0.001),
    "new_degraded_rate": ("new degraded rate", "", 0.001),
}

#: Per-request fields counted as "differs" (Diffy's field differences).
FIELDS: tuple[str, ...] = ("status", "top_k", "order", "scores", "degraded", "model_version")


# ---------------------------------------------------------------------------------------------
# Per request


@dataclass(frozen=True)
class Outcome:
    """One target's answer to one replayed request."""

    status: str  # "OK" or the gRPC status code name
    latency_ms: float  # client-observed
    item_ids: tuple[str, ...] = ()
    scores: tuple[float, ...] = ()
    degraded: tuple[str, ...] = ()
    model_version: str = ""
    bundle_version: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "OK"


@dataclass(frozen=True)
class RequestDiff:
    """How answer O of one request differs from base answer B (agreement fields ``None`` unless both OK)."""

    both_ok: bool
    base_ok: bool
    other_ok: bool
    overlap: float | None
    rbo: float | None
    tau: float | None
    new_items: tuple[str, ...]
    dropped_items: tuple[str, ...]
    score_delta: float | None  # mean |score_O − score_B| over shared items
    latency_delta_ms: float  # O − B
    new_degraded: bool  # B OK and whole, O OK and degraded
    differs: frozenset[str] = field(default_factory=frozenset)  # subset of FIELDS


def kendall_tau_shared(base: Sequence[str], other: Sequence[str]) -> float | None:
    """Kendall tau between the positions, in both lists, of the items they share (None if < 2 shared)."""
    position = {item: i for i, item in enumerate(other)}
    shared = [(i, position[item]) for i, item in enumerate(base) if item in position]
    if len(shared) < 2:
        return None
    tau = kendalltau([a for a, _ in shared], [b for _, b in shared]).statistic
    return None if tau is None or math.isnan(tau) else float(tau)


def diff_request(base: Outcome, other: Outcome, k: int, p: float = RBO_P) -> RequestDiff:
    """Compare ``other``'s answer with ``base``'s for one request (top ``k`` for overlap@K)."""
    differs: set[str] = set()
    if base.status != other.status:
        differs.add("status")
    latency_delta = other.latency_ms - base.latency_ms
    if not (base.ok and other.ok):
        return RequestDiff(
            False, base.ok, other.ok, None, None, None, (), (), None, latency_delta, False, frozenset(differs)
        )
    b_items, o_items = base.item_ids, other.item_ids
    b_set, o_set = set(b_items), set(o_items)
    b_scores = dict(zip(b_items, base.scores, strict=False))
    o_scores = dict(zip(o_items, other.scores, strict=False))
    shared = [item for item in b_items if item in o_set and item in b_scores and item in o_scores]
    deltas = [abs(o_scores[item] - b_scores[item]) for item in shared]
    score_delta = math.fsum(deltas) / len(deltas) if deltas else None
    if set(b_items[:k]) != set(o_items[:k]):
        differs.add("top_k")
    if b_items != o_items:
        differs.add("order")
    if any(d > SCORE_TOLERANCE * max(1.0, abs(b_scores[i])) for d, i in zip(deltas, shared, strict=True)):
        differs.add("scores")
    if set(base.degraded) != set(other.degraded):
        differs.add("degraded")
    if base.model_version != other.model_version:
        differs.add("model_version")
    return RequestDiff(
        both_ok=True,
        base_ok=True,
        other_ok=True,
        overlap=overlap_at_k(b_items, o_items, k),
        rbo=rank_biased_overlap(b_items, o_items, p),
        tau=kendall_tau_shared(b_items, o_items),
        new_items=tuple(item for item in o_items if item not in b_set),
        dropped_items=tuple(item for item in b_items if item not in o_set),
        score_delta=score_delta,
        latency_delta_ms=latency_delta,
        new_degraded=not base.degraded and bool(other.degraded),
        differs=frozenset(differs),
    )


# ---------------------------------------------------------------------------------------------
# Aggregates


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def distribution(values: Sequence[float]) -> dict[str, float | None]:
    """``{"n", "mean", "p10", "p50", "p90"}`` (nearest-rank percentiles; ``None`` when empty)."""
    if not values:
        return {"n": 0, "mean": None, "p10": None, "p50": None, "p90": None}
    return {
        "n": len(values),
        "mean": _mean(values),
        "p10": percentile(values, 10),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
    }


def latency_summary(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "p50": None, "p90": None, "p99": None, "max": None}
    return {
        "mean": _mean(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values),
    }


def summarize_target(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Requests, OK count, errors by code, error and degraded rates, latency, versions seen."""
    n = len(outcomes)
    ok = [o for o in outcomes if o.ok]
    degraded = [o for o in ok if o.degraded]
    return {
        "requests": n,
        "ok": len(ok),
        "errors": dict(sorted(Counter(o.status for o in outcomes if not o.ok).items())),
        "error_rate": (n - len(ok)) / n if n else None,
        "degraded": len(degraded),
        "degraded_rate": len(degraded) / n if n else None,
        "degraded_stages": dict(sorted(Counter(s for o in degraded for s in o.degraded).items())),
        "latency_ms": latency_summary([o.latency_ms for o in outcomes]),
        "model_versions": dict(sorted(Counter(o.model_version for o in ok).items())),
        "bundle_versions": dict(sorted(Counter(o.bundle_version for o in ok).items())),
    }


def summarize_pair(diffs: Sequence[RequestDiff]) -> dict[str, Any]:
    """Aggregate of per-request diffs between a base target and another."""
    compared = [d for d in diffs if d.both_ok]
    n = len(diffs)
    taus = [d.tau for d in compared if d.tau is not None]
    deltas = [d.score_delta for d in compared if d.score_delta is not None]
    return {
        "requests": n,
        "compared": len(compared),
        "overlap_at_k": distribution([d.overlap for d in compared if d.overlap is not None]),
        "rbo": distribution([d.rbo for d in compared if d.rbo is not None]),
        "kendall_tau": distribution(taus),
        "new_items": distribution([float(len(d.new_items)) for d in compared]),
        "dropped_items": distribution([float(len(d.dropped_items)) for d in compared]),
        "score_delta": distribution(deltas),
        "latency_delta_ms": latency_summary([d.latency_delta_ms for d in diffs]),
        "new_error_rate": sum(d.base_ok and not d.other_ok for d in diffs) / n if n else None,
        "new_degraded_rate": sum(d.new_degraded for d in diffs) / n if n else None,
        "identical_rate": sum(not d.differs for d in compared) / len(compared) if compared else None,
        "field_differences": {f: sum(f in d.differs for d in diffs) for f in FIELDS},
    }


def _disagreement(
    pair: Mapping[str, Any], base: Mapping[str, Any], other: Mapping[str, Any]
) -> dict[str, float | None]:
    """Aggregate metrics oriented so that larger = more different (see ``METRICS``)."""

    def one_minus(key: str) -> float | None:
        mean = pair[key]["mean"]
        return None if mean is None else 1.0 - float(mean)

    def increase(q: str) -> float | None:
        a, b = base["latency_ms"][q], other["latency_ms"][q]
        return None if a is None or b is None else float(b) - float(a)

    return {
        "rbo_drop": one_minus("rbo"),
        "overlap_drop": one_minus("overlap_at_k"),
        "tau_drop": one_minus("kendall_tau"),
        "new_items": pair["new_items"]["mean"],
        "dropped_items": pair["dropped_items"]["mean"],
        "score_delta": pair["score_delta"]["mean"],
        "latency_p50_increase_ms": increase("p50"),
        "latency_p90_increase_ms": increase("p90"),
        "latency_p99_increase_ms": increase("p99"),
        "new_error_rate": pair["new_error_rate"],
        "new_degraded_rate": pair["new_degraded_rate"],
    }


def significant(value: float, noise: float, floor: float, relative_pct: float = RELATIVE_PCT) -> bool:
    """Diffy's rule on one metric: beyond the noise by more than ``floor`` and by ``relative_pct`` %."""
    excess = value - abs(noise)
    scale = abs(value) + abs(noise)
    return excess > floor and scale > 0 and 100.0 * excess / scale > relative_pct


def noise_floor(
    candidate: Mapping[str, Any],
    secondary: Mapping[str, Any] | None,
    targets: Mapping[str, Mapping[str, Any]],
    relative_pct: float = RELATIVE_PCT,
    absolute_pct: float = ABSOLUTE_PCT,
) -> dict[str, Any]:
    """Each metric P-vs-C next to its P-vs-S noise, the excess and whether it is significant."""
    raw = _disagreement(candidate, targets["primary"], targets["candidate"])
    noise = (
        _disagreement(secondary, targets["primary"], targets["secondary"])
        if secondary is not None
        else dict.fromkeys(raw, 0.0)
    )
    metrics: dict[str, Any] = {}
    for key, (_label, _unit, floor) in METRICS.items():
        value, noise_value = raw[key], noise[key]
        if value is None:
            metrics[key] = {"value": None, "noise": noise_value, "excess": None, "significant": False}
            continue
        n_value = 0.0 if noise_value is None else noise_value
        metrics[key] = {
            "value": value,
            "noise": noise_value,
            "excess": value - abs(n_value),
            "significant": significant(value, n_value, floor, relative_pct),
        }
    fields: dict[str, Any] = {}
    total = candidate["requests"]
    for name in FIELDS:
        diff_count = candidate["field_differences"][name]
        noise_count = secondary["field_differences"][name] if secondary is not None else 0
        gap = abs(diff_count - noise_count)
        absolute = 100.0 * gap / total if total else 0.0
        relative = 100.0 * gap / (diff_count + noise_count) if diff_count + noise_count else 0.0
        fields[name] = {
            "differences": diff_count,
            "noise_differences": noise_count,
            "absolute_pct": absolute,
            "relative_pct": relative,
            "significant": diff_count > noise_count and relative > relative_pct and absolute > absolute_pct,
        }
    return {
        "measured": secondary is not None,
        "rule": {"relative_pct": relative_pct, "absolute_pct": absolute_pct},
        "metrics": metrics,
        "fields": fields,
    }


# ---------------------------------------------------------------------------------------------
# Thresholds and verdict


@dataclass(frozen=True)
class Thresholds:
    """Limits on the candidate's disagreement beyond the noise floor (see the module docstring)."""

    max_rbo_drop: float = 0.10
    min_overlap: float = 0.80
    max_p99_increase_ms: float = 10.0
    max_error_rate: float = 0.01
    max_degraded_rate: float = 0.01


def verdict(floor: Mapping[str, Any], thresholds: Thresholds) -> dict[str, Any]:
    """One check per threshold; a metric that could not be measured (no answers to compare) fails."""
    metrics = floor["metrics"]

    def check(name: str, metric: str, limit: float, *, as_overlap: bool = False) -> dict[str, Any]:
        m = metrics[metric]
        excess = m["excess"]
        if excess is None:
            return {
                "name": name,
                "metric": metric,
                "value": None,
                "noise": m["noise"],
                "adjusted": None,
                "limit": limit,
                "passed": False,
                "note": "not measured: no request answered by both",
            }
        if as_overlap:
            value = 1.0 - m["value"]
            noise = None if m["noise"] is None else 1.0 - m["noise"]
            adjusted = min(1.0, 1.0 - excess)
            passed = adjusted >= limit
        else:
            value, noise, adjusted = m["value"], m["noise"], excess
            passed = adjusted <= limit
        return {
            "name": name,
            "metric": metric,
            "value": value,
            "noise": noise,
            "adjusted": adjusted,
            "limit": limit,
            "passed": passed,
            "note": "",
        }

    checks = [
        check("max_rbo_drop", "rbo_drop", thresholds.max_rbo_drop),
        check("min_overlap", "overlap_drop", thresholds.min_overlap, as_overlap=True),
        check("max_p99_increase_ms", "latency_p99_increase_ms", thresholds.max_p99_increase_ms),
        check("max_error_rate", "new_error_rate", thresholds.max_error_rate),
        check("max_degraded_rate", "new_degraded_rate", thresholds.max_degraded_rate),
    ]
    return {"passed": all(c["passed"] for c in checks), "checks": checks}


# ---------------------------------------------------------------------------------------------
# The report


def build_report(
    outcomes: Mapping[str, Sequence[Outcome]],
    *,
    k: int,
    thresholds: Thresholds,
    replay: Mapping[str, Any],
    relative_pct: float = RELATIVE_PCT,
    absolute_pct: float = ABSOLUTE_PCT,
) -> dict[str, Any]:
    """The whole report as plain JSON data (stable keys). ``outcomes`` maps role → index-aligned answers.

    Roles: ``primary`` (required), ``candidate`` and ``secondary`` (optional). Without a candidate there
    is nothing to gate: ``noise_floor`` and ``verdict`` are ``None`` and the run passes.
    """
    primary = outcomes["primary"]
    for role, answers in outcomes.items():
        if len(answers) != len(primary):
            raise ValueError(f"{role}: {len(answers)} answers for {len(primary)} requests")
    targets = {role: summarize_target(answers) for role, answers in outcomes.items()}

    def pair(role: str) -> dict[str, Any] | None:
        if role not in outcomes:
            return None
        return summarize_pair([diff_request(b, o, k) for b, o in zip(primary, outcomes[role], strict=True)])

    agreement = {"candidate": pair("candidate"), "secondary": pair("secondary")}
    floor: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    if agreement["candidate"] is not None:
        floor = noise_floor(agreement["candidate"], agreement["secondary"], targets, relative_pct, absolute_pct)
        result = verdict(floor, thresholds)
    return {
        "schema": "encore.replay.v1",
        "replay": dict(replay),
        "k": k,
        "targets": targets,
        "agreement": agreement,
        "noise_floor": floor,
        "thresholds": {
            "max_rbo_drop": thresholds.max_rbo_drop,
            "min_overlap": thresholds.min_overlap,
            "max_p99_increase_ms": thresholds.max_p99_increase_ms,
            "max_error_rate": thresholds.max_error_rate,
            "max_degraded_rate": thresholds.max_degraded_rate,
        },
        "verdict": result,
        "passed": True if result is None else bool(result["passed"]),
        "significant": [] if floor is None else [m for m, v in floor["metrics"].items() if v["significant"]],
    }


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    text = f"{float(value):.{digits}f}"
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text  # no "-0.000"


def _table(rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for row in rows:
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        out.append(indent + "  ".join(cells).rstrip())
    return out


def _counts(mapping: Mapping[str, int]) -> str:
    return ", ".join(f"{k or '(none)'} {v}" for k, v in mapping.items()) or "–"


def format_report(report: Mapping[str, Any], *, verdict_only: bool = False) -> str:
    """The human-readable report: replay summary, agreement, latency, errors, verdict."""
    lines: list[str] = []
    replay, targets, k = report["replay"], report["targets"], report["k"]
    cand, sec = report["agreement"]["candidate"], report["agreement"]["secondary"]
    floor = report["noise_floor"]
    if not verdict_only:
        lines.append("REPLAY")
        pace = (
            f"recorded timing / {replay['speed']:g}"
            if replay.get("rate") is None
            else f"fixed {replay['rate']:g} req/s"
        )
        rows = [
            [
                "captures",
                f"{replay['captures']} ({_counts(replay['surfaces'])}; captured status "
                f"{_counts(replay['captured_status'])})",
            ],
            ["pace", f"{pace}; concurrency {replay['concurrency']}; deadline {replay['deadline_ms']:g} ms; K = {k}"],
            [
                "duration",
                f"{replay['duration_s']:.2f} s (recorded span {replay['recorded_span_s']:.2f} s); "
                f"send lag p99 {_num(replay['send_lag_ms']['p99'], 1)} ms",
            ],
        ]
        rows += [[role, addr] for role, addr in replay["targets"].items()]
        width = max(len(r[0]) for r in rows)
        lines += [f"  {key:<{width}}  {value}" for key, value in rows]

        lines.append("")
        if cand is None:
            lines.append("AGREEMENT  no --candidate: nothing compared, nothing gated")
        else:
            noise_note = (
                "noise = primary vs secondary (same version)"
                if sec is not None
                else "no --secondary: noise assumed 0, every difference counts"
            )
            lines.append(
                f"AGREEMENT  primary vs candidate, {cand['compared']}/{cand['requests']} answered by both; {noise_note}"
            )
            rows = [["metric", "candidate", "noise", "beyond noise", ""]]
            for key, (label, unit, _floor) in METRICS.items():
                m = floor["metrics"][key]
                name = label.replace("@K", f"@{k}") + (f" ({unit})" if unit else "")
                digits = 1 if unit == "ms" else 3
                flag = "SIGNIFICANT" if m["significant"] else ""
                rows.append([name, _num(m["value"], digits), _num(m["noise"], digits), _num(m["excess"], digits), flag])
            lines += _table(rows)
            lines.append("")
            rows = [["per-request dist. (candidate)", "mean", "p10", "p50", "p90"]]
            for key, label in (
                ("overlap_at_k", f"overlap@{k}"),
                ("rbo", "RBO"),
                ("kendall_tau", "Kendall tau"),
                ("new_items", "new items"),
                ("dropped_items", "dropped items"),
                ("score_delta", "|score Δ|"),
            ):
                d = cand[key]
                rows.append([label, *(_num(d[q]) for q in ("mean", "p10", "p50", "p90"))])
            lines += _table(rows)
            lines.append("")
            rows = [["requests differing in", "candidate", "noise", "abs %", "rel %", ""]]
            for name, f in floor["fields"].items():
                rows.append(
                    [
                        name,
                        str(f["differences"]),
                        str(f["noise_differences"]),
                        _num(f["absolute_pct"], 1),
                        _num(f["relative_pct"], 1),
                        "SIGNIFICANT" if f["significant"] else "",
                    ]
                )
            lines += _table(rows)
            ident = cand["identical_rate"]
            lines.append(f"  identical answers: {_num(None if ident is None else 100 * ident, 1)} % of compared")

        lines.append("")
        lines.append("LATENCY  client-observed ms, every request (failed ones at their elapsed time)")
        rows = [["target", "p50", "p90", "p99", "mean", "max"]]
        for role, t in targets.items():
            lat = t["latency_ms"]
            rows.append([role, *(_num(lat[q], 1) for q in ("p50", "p90", "p99", "mean", "max"))])
        for role, pair in (("candidate", cand), ("secondary", sec)):
            if pair is not None:
                delta = pair["latency_delta_ms"]
                rows.append(
                    [f"paired Δ {role}−primary", *(_num(delta[q], 1) for q in ("p50", "p90", "p99", "mean", "max"))]
                )
        lines += _table(rows)

        lines.append("")
        lines.append("ERRORS AND DEGRADATION")
        rows = [["target", "ok", "error rate", "degraded rate", "errors", "degraded stages", "models", "bundles"]]
        for role, t in targets.items():
            rows.append(
                [
                    role,
                    str(t["ok"]),
                    _num(t["error_rate"]),
                    _num(t["degraded_rate"]),
                    _counts(t["errors"]),
                    _counts(t["degraded_stages"]),
                    _counts(t["model_versions"]),
                    _counts(t["bundle_versions"]),
                ]
            )
        lines += _table(rows)
        lines.append("")

    result = report["verdict"]
    if result is None:
        lines.append("VERDICT  PASS (no candidate, nothing gated)")
        return "\n".join(lines) + "\n"
    adjusted = "beyond noise" if floor["measured"] else "noise 0"
    lines.append(f"VERDICT  {'PASS' if result['passed'] else 'FAIL'}  (thresholds on the difference {adjusted})")
    rows = [["check", "candidate", "noise", "adjusted", "limit", "result"]]
    for c in result["checks"]:
        digits = 1 if c["name"].endswith("_ms") else 3
        op = ">=" if c["name"].startswith("min_") else "<="
        rows.append(
            [
                c["name"],
                _num(c["value"], digits),
                _num(c["noise"], digits),
                _num(c["adjusted"], digits),
                f"{op} {c['limit']:g}",
                ("PASS" if c["passed"] else "FAIL") + (f" ({c['note']})" if c["note"] else ""),
            ]
        )
    lines += _table(rows)
    if report["significant"]:
        lines.append(f"  candidate differs beyond noise in: {', '.join(report['significant'])}")
    else:
        lines.append("  candidate shows no difference beyond noise")
    return "\n".join(lines) + "\n"
