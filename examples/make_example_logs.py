"""Write the example exposure and outcome logs (examples/exposures/, examples/outcomes/).

    .venv/bin/python examples/make_example_logs.py

Deterministic (seeded). 3,000 simulated Home users are assigned by the server's own ``Assigner``
on ``examples/experiments.yaml``; each exposure is logged as the server logs it, and each user's
plays, skips and likes — a week before exposure (CUPED's covariate) and a week after, with the
``lite`` arm streaming 8 % more — as the server's outcome log writes them. The files are gzipped
JSON Lines in the servers' formats, small enough to keep in the repository.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path

import numpy as np

from ranking.types import Surface
from serving.experiments.assignment import Assigner
from serving.experiments.config import load_experiments

HERE = Path(__file__).resolve().parent
START = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
DAY_MS = 86_400_000


def main() -> None:
    config = load_experiments(HERE / "experiments.yaml")
    assigner = Assigner(config, clock=lambda: START)
    rng = np.random.default_rng(7)
    start_ms = int(START.timestamp() * 1000)
    exposures: list[dict[str, object]] = []
    outcomes: list[dict[str, object]] = []
    for i in range(3_000):
        user = f"u{i:07d}"
        first = start_ms + int(rng.integers(0, 7 * DAY_MS))
        assigned = assigner.assign(user, Surface.HOME).assignments
        for a in assigned:
            exposures.append({"ts_ms": first, "unit_id": user, "experiment": a.experiment, "variant": a.variant,
                              "surface": "home"})  # fmt: skip
        lift = 1.08 if any(a.variant == "lite" for a in assigned) else 1.0
        activity = rng.gamma(2.0, 1.5)
        for offset, factor in ((-7 * DAY_MS, 1.0), (0, lift)):
            for metric, rate in (("stream", 3.0 * factor), ("skip", 1.2), ("like", 0.2)):
                for _ in range(rng.poisson(activity * rate)):
                    ts = first + offset + int(rng.integers(0 if offset == 0 else 1, 7 * DAY_MS))
                    outcomes.append({"ts_ms": ts, "unit_id": user, "metric": metric, "value": 1.0})
    exposures.sort(key=lambda r: int(str(r["ts_ms"])))
    outcomes.sort(key=lambda r: int(str(r["ts_ms"])))
    for name, rows in (("exposures", exposures), ("outcomes", outcomes)):
        folder = HERE / name
        folder.mkdir(exist_ok=True)
        path = folder / f"{name}-20261102T000000Z-1-00001.jsonl.gz"
        data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows).encode()
        path.write_bytes(gzip.compress(data, mtime=0))
        print(f"{path.relative_to(HERE.parent)}: {len(rows):,} lines")


if __name__ == "__main__":
    main()
