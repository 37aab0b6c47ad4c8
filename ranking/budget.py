"""The latency budget of one request, as an object handing each stage its slice."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from common.errors import EncoreError


class DeadlineExceeded(EncoreError):
    """Not even the fallback path fits in what is left of the budget."""


@dataclass(frozen=True)
class StageLimits:
    """Upper bounds per stage, in seconds; a stage also never gets more than the budget has left."""

    user_features: float = 0.015
    retrieval: float = 0.020
    scoring: float = 0.025
    #: Kept back for filtering, selection and the response after the timed stages.
    reserve: float = 0.002


class Budget:
    """Deadline = min(client deadline, surface budget), measured on a monotonic clock."""

    def __init__(
        self,
        *,
        surface_budget_s: float,
        client_timeout_s: float | None,
        limits: StageLimits,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._limits = limits
        total = surface_budget_s if client_timeout_s is None else min(surface_budget_s, client_timeout_s)
        self.total_s = total
        #: The client's deadline, not the surface budget, is the binding one.
        self.client_bound = client_timeout_s is not None and client_timeout_s <= surface_budget_s
        self.deadline = clock() + total

    def remaining(self) -> float:
        return self.deadline - self._clock()

    def for_stage(self, stage: str) -> float:
        """Seconds this stage may take: its limit, capped by what is left minus the reserve (>= 0)."""
        limit: float = getattr(self._limits, stage)
        return max(0.0, min(limit, self.remaining() - self._limits.reserve))

    def require(self, what: str) -> None:
        """Raise ``DeadlineExceeded`` when nothing is left for ``what``."""
        if self.remaining() <= 0:
            raise DeadlineExceeded(f"deadline passed before {what} ({self.total_s * 1000:.1f} ms budget)")
