"""A/A simulation with daily looks: the false-positive rate of sequential vs peeking fixed-horizon tests.

Each run is an A/A experiment (no true effect) that gains ``units_per_day`` units a day, split
50/50, over ``days`` days; each unit's metric is skewed (gamma-Poisson, like streams per user).
After every day the cumulative data are analysed with ``offline.experiments.inference`` — the
same ``infer_metric`` the analysis uses — once with the always-valid confidence sequence and once
with the fixed-horizon interval. A run is a false positive for a method when its interval on the
relative lift excluded 0 at any look (``peeking``), or, for the fixed test, at the last look
only (``fixed_horizon_once``: the test as designed, the reference that must stay at alpha).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from offline.experiments.inference import infer_metric

__all__ = ["AaResult", "simulate_aa"]


@dataclass(frozen=True)
class AaResult:
    runs: int
    days: int
    units_per_day: int
    alpha: float
    sequential_any_look: float
    """Share of runs whose confidence sequence excluded 0 at some daily look."""
    fixed_any_look: float
    """Share of runs whose fixed-horizon interval excluded 0 at some daily look (peeking)."""
    fixed_final_look: float
    """Share of runs whose fixed-horizon interval excluded 0 at the last look only (no peeking)."""

    def table(self) -> str:
        """The false-positive table as text."""
        rows = [
            ("sequential (confidence sequence), any daily look", self.sequential_any_look),
            ("fixed-horizon, peeking at every daily look", self.fixed_any_look),
            ("fixed-horizon, read once at the end", self.fixed_final_look),
        ]
        head = (
            f"A/A false-positive rate: {self.runs} runs × {self.days} daily looks, "
            f"{self.units_per_day} units/day, alpha = {self.alpha:g}"
        )
        return "\n".join([head, *(f"  {name:<50} {rate:6.1%}" for name, rate in rows)])


def simulate_aa(
    runs: int = 1_000,
    days: int = 14,
    units_per_day: int = 400,
    alpha: float = 0.05,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> AaResult:
    """Run ``runs`` seeded A/A experiments (see the module docstring) and count false positives."""
    if runs < 1 or days < 1 or units_per_day < 4:
        raise ValueError("runs >= 1, days >= 1 and units_per_day >= 4 are required")
    rng = np.random.default_rng(seed)
    n_total = days * units_per_day
    tuning = n_total  # the planned sample: where the confidence sequence is tightest
    seq_hits = fixed_hits = final_hits = 0
    for run in range(runs):
        arm = rng.integers(0, 2, n_total).astype(np.intp)
        activity = rng.gamma(1.5, 2.0, n_total)
        y = rng.poisson(activity).astype(np.float64)
        seq_any = fixed_any = False
        for day in range(1, days + 1):
            n = day * units_per_day
            seq = infer_metric(arm[:n], y[:n], n_arms=2, alpha=alpha, method="sequential", tuning_units=tuning)
            fix = infer_metric(arm[:n], y[:n], n_arms=2, alpha=alpha, method="fixed")
            s, f = seq.relative[0], fix.relative[0]
            seq_any |= s is not None and (s.low > 0.0 or s.high < 0.0)
            rejected = f is not None and (f.low > 0.0 or f.high < 0.0)
            fixed_any |= rejected
            if day == days:
                final_hits += rejected
        seq_hits += seq_any
        fixed_hits += fixed_any
        if progress is not None and (run + 1) % max(1, runs // 5) == 0:
            progress(f"  {run + 1}/{runs} A/A runs")
    return AaResult(
        runs=runs,
        days=days,
        units_per_day=units_per_day,
        alpha=alpha,
        sequential_any_look=seq_hits / runs,
        fixed_any_look=fixed_hits / runs,
        fixed_final_look=final_hits / runs,
    )
