"""Statistics shared by the load tools: nearest-rank percentiles, summaries, Zipf weights, strict JSON.

Pure functions with no I/O, used by the benchmark (``loadtests.bench``), the shadow replay and its
diff (``loadtests.replay``) and the fault-injection report (``tests/fault/report.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import PurePath
from typing import Any

#: Percentiles reported everywhere in the benchmark.
QUANTILES: tuple[float, ...] = (50.0, 90.0, 99.0, 99.9)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (the smallest value with at least ``q`` % of values at or below it).

    Never interpolates, so a p99 is always a latency some request really saw. ``nan`` for no values.
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be in 0..100, got {q}")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return float(ordered[rank - 1])


def _label(q: float) -> str:
    return f"p{q:g}".replace(".", "")


def summarize(values: Sequence[float], quantiles: Sequence[float] = QUANTILES) -> dict[str, float]:
    """``{"n", "mean", "p50", "p90", "p99", "p999", "max"}`` of ``values`` (``nan`` when empty)."""
    ordered = sorted(values)
    out: dict[str, float] = {"n": float(len(ordered))}
    out["mean"] = math.fsum(ordered) / len(ordered) if ordered else math.nan
    for q in quantiles:
        out[_label(q)] = percentile(ordered, q)
    out["max"] = float(ordered[-1]) if ordered else math.nan
    return out


def zipf_probabilities(n: int, exponent: float) -> list[float]:
    """Bounded Zipf over ranks 1..n: p(k) ∝ k^-exponent (exponent 0 is uniform)."""
    if n <= 0:
        raise ValueError("zipf_probabilities: n must be positive")
    if exponent < 0:
        raise ValueError("zipf_probabilities: exponent must be >= 0")
    weights = [k**-exponent for k in range(1, n + 1)]
    total = math.fsum(weights)
    return [w / total for w in weights]


def jsonable(value: Any) -> Any:
    """``value`` with NaN/inf floats as ``None`` (strict JSON) and paths as strings, through mappings,
    lists and tuples."""
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value
