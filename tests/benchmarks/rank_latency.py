"""Client-observed latency of `Rank` on both surfaces against a running server (closed loop).

    python -m tests.benchmarks.rank_latency --bundle bundles/<version> [--target HOST:PORT] [--requests 2000]

Users and seed items are drawn from the bundle (Zipfian over users, seeds by popularity) with a
fixed seed. Prints p50/p90/p99/max per surface and the server-side stage p50s, and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import grpc
import numpy as np

from encore.v1 import ranking_pb2 as pb
from encore.v1 import ranking_pb2_grpc as pb_grpc
from models.bundle import load_bundle


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def run(target: str, bundle_path: Path, n: int, warmup: int, seed: int) -> dict[str, dict[str, float]]:
    bundle = load_bundle(bundle_path, verify_checksums=False)
    users = bundle.load_users().user_ids
    rng = np.random.default_rng(seed)
    ranks = np.minimum(rng.zipf(1.3, size=n + warmup), len(users)) - 1
    popular = bundle.popularity[:2000]
    seeds = [bundle.catalog.item_ids[int(i)] for i in rng.choice(popular, size=n + warmup)]
    report: dict[str, dict[str, float]] = {}
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.RankingServiceStub(channel)
        for name, surface in (("home", pb.SURFACE_HOME), ("now_playing", pb.SURFACE_NOW_PLAYING)):
            latencies: list[float] = []
            stages: dict[str, list[float]] = {}
            degraded = 0
            for i in range(n + warmup):
                request = pb.RankRequest(
                    user_id=users[int(ranks[i])],
                    surface=surface,
                    debug=True,
                    seed_item_id=seeds[i] if surface == pb.SURFACE_NOW_PLAYING else "",
                )
                started = time.perf_counter()
                response = stub.Rank(request, timeout=2.0)
                elapsed = (time.perf_counter() - started) * 1000
                if i < warmup:
                    continue
                latencies.append(elapsed)
                degraded += bool(response.degraded)
                for t in response.timings:
                    stages.setdefault(t.stage, []).append(t.milliseconds)
            report[name] = {
                "requests": n,
                "p50_ms": percentile(latencies, 50),
                "p90_ms": percentile(latencies, 90),
                "p99_ms": percentile(latencies, 99),
                "max_ms": max(latencies),
                "mean_ms": statistics.fmean(latencies),
                "degraded": degraded,
                **{f"server_{stage}_p50_ms": percentile(v, 50) for stage, v in stages.items()},
            }
    return report


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--target", default="127.0.0.1:50051")
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=Path("bench-results/rank_latency.json"))
    args = p.parse_args()
    report = run(args.target, args.bundle, args.requests, args.warmup, args.seed)
    print(f"{'surface':<12} {'n':>6} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} {'degraded':>8}")
    for name, r in report.items():
        print(
            f"{name:<12} {r['requests']:>6} {r['p50_ms']:>8.2f} {r['p90_ms']:>8.2f} {r['p99_ms']:>8.2f} "
            f"{r['max_ms']:>8.2f} {r['degraded']:>8}"
        )
    for name, r in report.items():
        stages = {k[len("server_") : -len("_p50_ms")]: v for k, v in r.items() if k.startswith("server_")}
        print(f"{name} server-side p50 by stage: " + "  ".join(f"{k}={v:.2f}ms" for k, v in stages.items()))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
