"""The closed-loop client: warm ``Rank(debug=True)`` calls one after another, per surface, collecting
the server's own stage timings and the client-observed latency."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtests.stats import summarize, zipf_probabilities

#: The stages of ``RankResponse.timings`` (debug), in pipeline order.
STAGES = ("user_features", "retrieval", "filters", "candidate_features", "scoring", "selection", "total")
SURFACES = ("home", "now_playing")


@dataclass
class Samples:
    """One closed-loop run on one surface: raw timings, in ms, of the measured (post-warm-up) calls."""

    stages: dict[str, list[float]] = field(default_factory=dict)  # the server's debug timings by stage
    client: list[float] = field(default_factory=list)
    degraded: Counter[str] = field(default_factory=Counter)


def closed_loop_samples(target: str, workload: Path, surface: str, requests: int, warmup: int, seed: int) -> Samples:
    """``warmup + requests`` sequential ``Rank(debug=True)`` calls on ``surface`` ("home" or
    "now_playing"); users Zipfian and Now Playing seeds uniform, both fixed by ``seed``."""
    import grpc
    import numpy as np

    from encore.v1 import ranking_pb2 as pb
    from encore.v1 import ranking_pb2_grpc as pb_grpc

    data = json.loads(workload.read_text(encoding="utf-8"))
    users, seeds = data["users"], data["seeds"]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(users))
    total = requests + warmup
    picks = order[rng.choice(len(users), size=total, p=np.asarray(zipf_probabilities(len(users), 1.0)))]
    seed_picks = rng.integers(0, len(seeds), size=total)
    home = surface == "home"
    out = Samples(stages={s: [] for s in STAGES})
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.RankingServiceStub(channel)
        for i in range(total):
            request = pb.RankRequest(
                user_id=users[int(picks[i])],
                surface=pb.SURFACE_HOME if home else pb.SURFACE_NOW_PLAYING,
                seed_item_id="" if home else seeds[int(seed_picks[i])],
                debug=True,
            )
            started = time.perf_counter()
            response = stub.Rank(request, timeout=2.0)
            elapsed = (time.perf_counter() - started) * 1000.0
            if i < warmup:
                continue
            out.client.append(elapsed)
            out.degraded.update(response.degraded)
            for t in response.timings:
                out.stages.setdefault(t.stage, []).append(t.milliseconds)
    return out


def closed_loop(target: str, workload: Path, requests: int, warmup: int, seed: int = 1) -> dict[str, Any]:
    """Warm closed-loop ``Rank(debug=True)`` per surface: server stage timings and client latency."""
    report: dict[str, Any] = {}
    for surface in SURFACES:
        samples = closed_loop_samples(target, workload, surface, requests, warmup, seed)
        report[surface] = {
            "requests": requests,
            "degraded": dict(samples.degraded),
            "stages_ms": {s: summarize(v) for s, v in samples.stages.items() if v},
            "client_ms": summarize(samples.client),
        }
    return report
