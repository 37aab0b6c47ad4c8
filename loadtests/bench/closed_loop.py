"""The closed-loop client: warm ``Rank(debug=True)`` calls one after another, per surface, collecting
the server's own stage timings and the client-observed latency."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from loadtests.stats import summarize, zipf_probabilities

#: The stages of ``RankResponse.timings`` (debug), in pipeline order.
STAGES = ("user_features", "retrieval", "filters", "candidate_features", "scoring", "selection", "total")


def closed_loop(target: str, workload: Path, requests: int, warmup: int, seed: int = 1) -> dict[str, Any]:
    """Warm closed-loop ``Rank(debug=True)`` per surface: server stage timings and client latency."""
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
    report: dict[str, Any] = {}
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.RankingServiceStub(channel)
        for name, surface in (("home", pb.SURFACE_HOME), ("now_playing", pb.SURFACE_NOW_PLAYING)):
            stages: dict[str, list[float]] = {s: [] for s in STAGES}
            client: list[float] = []
            degraded: Counter[str] = Counter()
            for i in range(total):
                request = pb.RankRequest(
                    user_id=users[int(picks[i])],
                    surface=surface,
                    seed_item_id=seeds[int(seed_picks[i])] if surface == pb.SURFACE_NOW_PLAYING else "",
                    debug=True,
                )
                started = time.perf_counter()
                response = stub.Rank(request, timeout=2.0)
                elapsed = (time.perf_counter() - started) * 1000.0
                if i < warmup:
                    continue
                client.append(elapsed)
                degraded.update(response.degraded)
                for t in response.timings:
                    stages.setdefault(t.stage, []).append(t.milliseconds)
            report[name] = {
                "requests": requests,
                "degraded": dict(degraded),
                "stages_ms": {s: summarize(v) for s, v in stages.items() if v},
                "client_ms": summarize(client),
            }
    return report
