"""The component floor: each dependency of a ``Rank`` call timed alone, in this process.

    python -m loadtests.bench.floor --bundle bundles/synthetic-1m --redis-url redis://127.0.0.1:6379/0

- FAISS: ``index.search(q, retrieval_size)`` on the bundle's index with one OpenMP thread (as the
  server runs it), ``q`` built as the server builds it (``features.query_vector.query_for``) from
  snapshot users — Home (user vector) and Now Playing (a popular seed blended with the user).
- Redis: ``RedisFeatureStore.get_user`` (one pipelined round trip) after ``load_snapshot``, against
  the Redis given (the benchmark's own; nothing is started here).
- ONNX: one ``InferenceSession.run`` of the default model on a ``[rows, N_RANKER_FEATURES]`` batch
  of real ranker features (sessions from ``models.runtime.load_sessions``, one intra-op thread).

floor(surface) = p50(FAISS search for that surface) + p50(get_user) + p50(ONNX batch): the time a
request could take if the server added nothing. Also computes offline how many candidates reach
the scorer with the given ``retrieval_size``/``popularity_size`` (ANN ∪ popularity, de-duplicated,
minus the seed on Now Playing; snapshot users have no recent plays or skips), since the server
does not report it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from loadtests.stats import summarize, zipf_probabilities

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def _time_calls(fn: Callable[[int], object], iterations: int, warmup: int) -> list[float]:
    for i in range(warmup):
        fn(i)
    out: list[float] = []
    for i in range(iterations):
        started = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - started) * 1000.0)
    return out


async def _redis_floor(
    redis_url: str, snapshot: Any, dim: int, user_ids: list[str], iterations: int, warmup: int, progress: Progress
) -> tuple[list[float], float]:
    from features.redis_store import RedisFeatureStore

    store = RedisFeatureStore.from_url(redis_url, dim)
    try:
        started = time.perf_counter()
        written = await store.load_snapshot(snapshot)
        load_s = time.perf_counter() - started
        progress(f"floor: wrote {written} users to redis in {load_s:.1f} s")
        for i in range(warmup):
            await store.get_user(user_ids[i % len(user_ids)], 1.0)
        out: list[float] = []
        for i in range(iterations):
            user_id = user_ids[i % len(user_ids)]
            t0 = time.perf_counter()
            record = await store.get_user(user_id, 1.0)
            out.append((time.perf_counter() - t0) * 1000.0)
            if record.vector is None:
                raise RuntimeError(f"floor: redis has no features for {user_id}; snapshot not loaded?")
        return out, load_s
    finally:
        await store.close()


def measure_floor(
    bundle_path: Path,
    redis_url: str,
    *,
    retrieval_size: int = 500,
    popularity_size: int = 20,
    seed_weight: float = 0.7,
    batch_rows: int = 500,
    iterations: int = 1000,
    warmup: int = 50,
    seed: int = 0,
    progress: Progress = _quiet,
) -> dict[str, Any]:
    """Time FAISS search, Redis ``get_user`` and one ONNX batch, each alone; see the module docstring."""
    import faiss

    from features.query_vector import query_for
    from features.ranker_features import ranker_features
    from models.bundle import load_bundle
    from models.runtime import load_sessions

    faiss.omp_set_num_threads(1)
    started = time.perf_counter()
    bundle = load_bundle(bundle_path, verify_checksums=False)
    sessions = load_sessions(bundle, intra_op_threads=1)
    snapshot = bundle.load_users()
    progress(f"floor: loaded {bundle.version} ({len(bundle.catalog)} items) in {time.perf_counter() - started:.1f} s")
    rng = np.random.default_rng(seed)
    n_users = len(snapshot.user_ids)
    sample = rng.choice(n_users, size=min(iterations, 2000), p=np.asarray(zipf_probabilities(n_users, 1.0)))
    sample = rng.permutation(n_users)[sample]
    zeros = np.zeros(bundle.dim, dtype=np.float32)
    popular = bundle.popularity[: min(2000, len(bundle.popularity))]
    seeds = rng.choice(popular, size=len(sample))
    home_q = [query_for(None, snapshot.vectors[u], zeros) for u in sample]
    np_q = [
        query_for(
            np.asarray(bundle.item_vectors[s], dtype=np.float32), snapshot.vectors[u], zeros, seed_weight=seed_weight
        )
        for u, s in zip(sample, seeds, strict=True)
    ]
    index = bundle.index
    k = retrieval_size

    def search(queries: list[Any]) -> Callable[[int], object]:
        return lambda i: index.search(queries[i % len(queries)][None, :], k)

    faiss_home = _time_calls(search(home_q), iterations, warmup)
    faiss_np = _time_calls(search(np_q), iterations, warmup)
    progress(f"floor: FAISS search k={k}: home p50 {summarize(faiss_home)['p50']:.2f} ms")

    # Offline candidate counts: what reaches the scorer (filters that need history are no-ops here).
    pop_set = bundle.popularity[:popularity_size]
    counts: dict[str, list[float]] = {"home": [], "now_playing": []}
    batches: list[Any] = []
    for j in range(min(200, len(sample))):
        for surface, q, seed_item in (("home", home_q[j], None), ("now_playing", np_q[j], int(seeds[j]))):
            _, ids = index.search(q[None, :], k)
            items = np.unique(np.concatenate([ids[0][ids[0] >= 0], pop_set]))
            if seed_item is not None:
                items = items[items != seed_item]
            counts[surface].append(float(len(items)))
            if surface == "home" and len(batches) < 20:
                features = ranker_features(
                    item_indices=items,
                    item_vectors=np.asarray(bundle.item_vectors[items], dtype=np.float32),
                    item_stats=np.asarray(bundle.item_stats[items], dtype=np.float32),
                    item_norms=bundle.item_norms[items],
                    query_vector=q,
                    user_vector=snapshot.vectors[sample[j]],
                    user_stats=snapshot.stats[sample[j]],
                    recent_vector=zeros,
                    seed_vector=None,
                    seed_index=-1,
                    history_items=np.asarray(snapshot.known(int(sample[j])), dtype=np.int64),
                    neighbors=bundle.item_neighbors,
                    neighbor_weights=bundle.item_neighbor_weights,
                    negatives=bundle.item_negative_neighbors,
                    negative_weights=bundle.item_negative_weights,
                )
                batches.append(np.ascontiguousarray(np.resize(features, (batch_rows, features.shape[1]))))

    session = sessions[bundle.default_model]
    input_name = bundle.models[bundle.default_model].input_name
    onnx_ms = _time_calls(lambda i: session.run(None, {input_name: batches[i % len(batches)]}), iterations, warmup)
    shape = f"[{batch_rows}, {batches[0].shape[1]}]"
    progress(f"floor: ONNX {bundle.default_model} {shape}: p50 {summarize(onnx_ms)['p50']:.2f} ms")

    user_ids = [snapshot.user_ids[u] for u in sample]
    redis_ms, load_s = asyncio.run(
        _redis_floor(redis_url, snapshot, bundle.dim, user_ids, iterations, warmup, progress)
    )
    progress(f"floor: redis get_user p50 {summarize(redis_ms)['p50']:.3f} ms")

    components = {
        "faiss_search_home": summarize(faiss_home),
        "faiss_search_now_playing": summarize(faiss_np),
        "redis_get_user": summarize(redis_ms),
        "onnx_batch": summarize(onnx_ms),
    }
    base = components["redis_get_user"]["p50"] + components["onnx_batch"]["p50"]
    result = {
        "bundle": bundle.version,
        "n_items": len(bundle.catalog),
        "n_users": n_users,
        "index": type(index).__name__,
        "nprobe": int(getattr(index, "nprobe", 0)),
        "retrieval_size": retrieval_size,
        "popularity_size": popularity_size,
        "onnx_model": bundle.default_model,
        "onnx_rows": batch_rows,
        "iterations": iterations,
        "components_ms": components,
        "floor_p50_ms": {
            "home": components["faiss_search_home"]["p50"] + base,
            "now_playing": components["faiss_search_now_playing"]["p50"] + base,
        },
        "candidates_to_scorer": {s: summarize(v) for s, v in counts.items()},
        "redis_snapshot_load_s": load_s,
    }
    return result


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="loadtests.bench.floor", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--redis-url", required=True)
    p.add_argument("--retrieval-size", type=int, default=500)
    p.add_argument("--popularity-size", type=int, default=20)
    p.add_argument("--rows", type=int, default=500, help="ONNX batch rows")
    p.add_argument("--iterations", type=int, default=1000)
    args = p.parse_args(argv)
    result = measure_floor(
        args.bundle,
        args.redis_url,
        retrieval_size=args.retrieval_size,
        popularity_size=args.popularity_size,
        batch_rows=args.rows,
        iterations=args.iterations,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
