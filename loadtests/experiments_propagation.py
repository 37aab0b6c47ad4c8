"""Propagation delay of the experiments store: commit → served by every worker.

    python -m loadtests.experiments_propagation [--bundle bundles/hetrec-bench] [--revisions 100] [--workers 2]

Starts a throwaway Redis and ``encore serve --workers N`` following the store on it, then commits
``--revisions`` revisions one after another (each flips an experiment's coverage) and, for each,
times from the commit until the parent's aggregated ``encore_experiments_revision`` (the oldest
revision over the live workers) reaches it, polling the metrics endpoint every 10 ms. A random
pause of 0–200 ms between commits keeps them out of step with the workers' 0.5 s polls. Prints
p50/p90/p99/max; the SLO is p99 ≤ 2 s. Timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from loadtests.harness import RedisProcess, ServerProcess, scrape_metric, start_server, stop_server
from loadtests.stats import summarize
from serving.experiments.store import open_store


def _document(i: int) -> dict[str, object]:
    return {
        "experiments": [
            {
                "key": "propagation",
                "surface": "home",
                "coverage": 0.5 + 0.5 * (i % 2),
                "status": "running",
                "variants": [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}],
            }
        ]
    }


def _served(server: ServerProcess) -> int:
    return int(scrape_metric(server, "encore_experiments_revision"))


async def _measure(server: ServerProcess, url: str, revisions: int, timeout_s: float) -> list[float]:
    store = open_store(url)
    delays: list[float] = []
    try:
        for i in range(revisions):
            head = await store.head()
            committed = await store.commit(head, _document(i), "propagation-bench", f"revision {i + 1}")
            started = time.monotonic()
            while _served(server) < committed.number:
                if time.monotonic() - started > timeout_s:
                    raise SystemExit(f"revision {committed.number} not served by every worker within {timeout_s:g} s")
                await asyncio.sleep(0.01)
            delays.append(time.monotonic() - started)
            if (i + 1) % 20 == 0:
                print(f"  {i + 1}/{revisions} revisions", flush=True)
            await asyncio.sleep(random.uniform(0.0, 0.2))
    finally:
        await store.close()
    return delays


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="loadtests.experiments_propagation", description=__doc__)
    p.add_argument("--bundle", type=Path, default=Path("bundles/hetrec-bench"))
    p.add_argument("--revisions", type=int, default=100)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timeout", type=float, default=30.0, help="give up on a revision after this many seconds")
    args = p.parse_args(argv)
    if not (args.bundle / "manifest.json").is_file():
        raise SystemExit(f"--bundle: no bundle at {args.bundle} (encore build, or make bench, makes one)")
    redis = RedisProcess()
    redis.start()
    try:
        with tempfile.TemporaryDirectory(prefix="encore-propagation-") as tmp:
            extra = ["--redis-url", redis.url, "--load-features", "--experiments-store", redis.url]
            if args.workers > 1:
                extra += ["--workers", str(args.workers)]
            server = start_server(args.bundle, Path(tmp), *extra, cwd=None, new_session=True)
            try:
                print(
                    f"encore serve --workers {args.workers} on {server.target}; {args.revisions} revisions", flush=True
                )
                delays = asyncio.run(_measure(server, redis.url, args.revisions, args.timeout))
            finally:
                stop_server(server)
    finally:
        redis.stop()
    s = summarize([d * 1000.0 for d in delays])
    print(
        f"commit → served by every worker over {len(delays)} revisions: p50 {s['p50']:.0f} ms, "
        f"p90 {s['p90']:.0f} ms, p99 {s['p99']:.0f} ms, max {s['max']:.0f} ms (SLO p99 <= 2000 ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
