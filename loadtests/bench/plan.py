"""What one benchmark run measures (rates, durations, sizes); built from the command line by ``runner``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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


def geometric_rates(start: float, factor: float, count: int) -> tuple[float, ...]:
    """``count`` rates from ``start``, each ``factor`` times the one before, rounded to tens (at least 10)."""
    if start <= 0 or factor <= 1 or count < 1:
        raise ValueError("geometric_rates: start > 0, factor > 1 and count >= 1 are required")
    return tuple(float(max(10, round(start * factor**k, -1))) for k in range(count))


#: (versus c) the rate ladder of the sustained-rate search with --workers 2 (req/s).
VERSUS_RATES = geometric_rates(150, 1.2, 16)


@dataclass(frozen=True)
class VersusPlan:
    """What the versus run measures (``loadtests.bench.versus``): (a) closed-loop rounds, (b) CPU
    runs at a fixed rate, (c) the rate ladder, (d) overload multiples of Encore's sustained rate."""

    bundle: str
    rounds: int  # (a) interleaved rounds ...
    requests: int  # ... of this many Home requests per server
    warmup: int  # (a) unmeasured requests before each block
    cpu_rate: float  # (b) open-loop rate, req/s
    cpu_rounds: int  # (b) interleaved runs per server
    seconds: float  # measured seconds of every open-loop run
    warmup_s: float  # (c, d) warm-up seconds before each step
    rates: tuple[float, ...]  # (c)
    overload: tuple[float, ...]  # (d)
    deadline_ms: float
    channels: int  # open-loop channels per server process
    retrieval_size: int
    popularity_size: int
    encore_checkout: Path | None = None  # run Encore from this checkout (e.g. an older commit)
