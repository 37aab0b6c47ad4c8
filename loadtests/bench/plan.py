"""What one benchmark run measures (rates, durations, sizes); built from the command line by ``runner``."""

from __future__ import annotations

from dataclasses import dataclass

#: Open-loop rates stepped through (req/s) unless ``--rates`` says otherwise.
DEFAULT_RATES = (50, 100, 150, 200, 300, 400, 500, 600, 800, 1000)


@dataclass(frozen=True)
class Plan:
    """Rates and durations of the open loop, sizes of the closed loop, the floor and the candidate set."""

    rates: tuple[float, ...]
    step_seconds: float
    step_warmup: float
    steady_seconds: float
    steady_rate: float | None
    closed_requests: int
    closed_warmup: int
    floor_iterations: int
    deadline_ms: float
    channels: int
    workers: int
    retrieval_size: int
    popularity_size: int
    onnx_rows: int
    profile: bool
    profile_seconds: float
    shadow_model: str | None = None
    cascade_size: int | None = None  # None: the server's default
