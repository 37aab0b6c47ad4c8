"""Did a step hold its rate? The pass/fail maths of the benchmark and its targets (pure functions).

The targets are DESIGN.md's "Performance targets": server p50 within ``FLOOR_RATIO_TARGET`` x the
component floor, a sustained rate at p99 <= ``SUSTAINED_P99_MS`` with fewer than 1 % errors and
1 % degraded answers, and p99 <= ``STEADY_P99_TARGET_MS`` at the steady rate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Targets from DESIGN.md "Performance targets".
FLOOR_RATIO_TARGET = 1.5
SUSTAINED_P99_MS = 25.0
STEADY_P99_TARGET_MS = 15.0
MAX_ERROR_RATIO = 0.01
MAX_DEGRADED_RATIO = 0.01


@dataclass(frozen=True)
class StepVerdict:
    held: bool
    reasons: tuple[str, ...]


def judge_step(
    result: Mapping[str, Any],
    *,
    p99_limit_ms: float = SUSTAINED_P99_MS,
    max_error_ratio: float = MAX_ERROR_RATIO,
    max_degraded_ratio: float = MAX_DEGRADED_RATIO,
) -> StepVerdict:
    """Did an open-loop step hold its rate? p99 ≤ limit, errors and degraded answers under their caps."""
    reasons: list[str] = []
    p99 = float(result["latency_ms"]["p99"])
    if math.isnan(p99) or p99 > p99_limit_ms:
        reasons.append(f"p99 {p99:.1f} ms > {p99_limit_ms:g} ms")
    if float(result["error_ratio"]) >= max_error_ratio:
        reasons.append(f"errors {100 * float(result['error_ratio']):.1f} % >= {100 * max_error_ratio:g} %")
    if float(result["degraded_ratio"]) >= max_degraded_ratio:
        reasons.append(f"degraded {100 * float(result['degraded_ratio']):.1f} % >= {100 * max_degraded_ratio:g} %")
    return StepVerdict(held=not reasons, reasons=tuple(reasons))


def should_continue(held: Sequence[bool], max_consecutive_failures: int = 2) -> bool:
    """Keep stepping the rate up until ``max_consecutive_failures`` steps in a row failed.

    One failure is allowed to be noise (the machine is shared); two in a row end the search.
    """
    run = 0
    for ok in reversed(held):
        if ok:
            break
        run += 1
    return run < max_consecutive_failures


def sustained_rate(steps: Sequence[tuple[float, bool]]) -> float | None:
    """The highest rate that held among ``(rate, held)`` steps; ``None`` when none held."""
    held = [rate for rate, ok in steps if ok]
    return max(held) if held else None


def steady_rate(sustained: float | None, rates: Sequence[float], fraction: float = 0.5) -> float:
    """The operating point for the p99 target: ``fraction`` of the sustained rate, rounded down to
    a multiple of 10 (at least 10); the lowest stepped rate when nothing held."""
    if sustained is None:
        return float(min(rates))
    return float(max(10, int(sustained * fraction) // 10 * 10))
