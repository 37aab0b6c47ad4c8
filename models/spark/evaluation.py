"""The offline evaluation on Spark: the served pipeline runs in the executors, Spark aggregates the
per-user metrics (``encore build --engine spark``).

The driver plans the queries exactly as ``models.evaluation`` does (users, two seeds each from one
seeded generator, relevant items, seed targets) and ships one record per user: its snapshot row
(id, vector, statistics, known items), seeds and targets. Each partition loads the bundle
(distributed with ``SparkContext.addFile``, so executors need no shared filesystem), opens the
served pipelines over an embedded store holding only its own users, ranks every method (the served
runs and the broadcast baselines), and emits ``(method, surface, metric, value)`` per user and
metric (``models.evaluation.user_metrics``). Spark groups and averages them; only one row per
(method, surface, metric) reaches the driver, where ``surface_metrics`` and
``evaluation_summary`` build the same manifest dict as the in-process engine. Summation order is
the only difference (measured ≤ 1e-15).

Executors need Encore installed (the same wheel and the ``spark`` extra) and memory for the
bundle's item side plus their users; the baselines are broadcast whole, which suits the Spark
engine's popularity and ALS baselines.
"""

from __future__ import annotations

import asyncio
import pickle
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from features.snapshot import UserSnapshot
from models.bundle import load_bundle
from models.evaluation import (
    LIMIT,
    Baseline,
    EvalQueries,
    SeedTargets,
    baseline_lists,
    check_baseline_names,
    evaluation_summary,
    known_matrix,
    plan_queries,
    query_targets,
    rank_served_runs,
    served_runs,
    surface_metrics,
    user_metrics,
)
from ranking.assembly import DEFAULT_PARAMS
from ranking.types import RankingParams, Surface

I64 = npt.NDArray[np.int64]

#: The schema of the per-user metric rows the executors emit. ``degraded`` rows count served
#: answers with a degraded stage (value 1.0 each).
METRIC_ROWS = "method string, surface string, metric string, value double"
DEGRADED = "degraded"

__all__ = ["UserQuery", "evaluate_bundle_spark"]


@dataclass(frozen=True)
class UserQuery:
    """One evaluated user as shipped to an executor: its snapshot row and what it is measured on."""

    row: int  # the user's row in the full snapshot (what the baselines index)
    user_id: str
    vector: npt.NDArray[np.float32]
    stats: npt.NDArray[np.float32]
    known: npt.NDArray[np.int32]
    seeds: tuple[int, ...]
    relevant: set[int]
    targets: tuple[SeedTargets | None, ...]


def evaluate_bundle_spark(
    spark: Any,
    bundle_path: Path,
    test: sp.csr_matrix,
    users: I64,
    *,
    seed: int,
    baselines: Mapping[str, Baseline] | None = None,
    params: Mapping[Surface, RankingParams] | None = None,
    limit: int = LIMIT,
    models: Sequence[str] | None = None,
    partitions: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """``models.evaluation.evaluate_bundle(...).summary`` of the bundle at ``bundle_path``, its
    queries run in Spark executors (``partitions``, default the session's parallelism) and the
    per-user metrics averaged by Spark. The ranked lists stay in the executors."""
    from pyspark.sql import functions as F

    params = dict(params or DEFAULT_PARAMS)
    baselines = dict(baselines or {})
    check_baseline_names(baselines)
    bundle = load_bundle(bundle_path)
    snapshot = bundle.load_users()
    known = known_matrix(snapshot, len(bundle.catalog))
    queries = plan_queries(snapshot, known, users, seed)
    targets = query_targets(known, test, queries)
    records = [
        pickle.dumps(_user_query(snapshot, queries, targets, row), protocol=pickle.HIGHEST_PROTOCOL)
        for row in range(queries.users.size)
    ]
    runs = served_runs(bundle, params, models)
    context = spark.sparkContext
    context.addFile(str(bundle_path), recursive=True)
    shared = context.broadcast(baselines)
    n_parts = max(1, min(partitions or context.defaultParallelism, len(records)))
    if progress is not None:
        progress(
            f"  Spark: {len(records)} users in {n_parts} partitions; "
            f"{len(runs)} served runs + {len(baselines)} baselines"
        )
    started = time.perf_counter()
    task = partial(_evaluate_partition, bundle_path.name, runs, params, limit, shared)
    try:
        frame = spark.createDataFrame(context.parallelize(records, n_parts).mapPartitions(task), METRIC_ROWS)
        rows = (
            frame.groupBy("method", "surface", "metric")
            .agg(F.avg("value").alias("mean"), F.count(F.lit(1)).alias("n"), F.sum("value").alias("total"))
            .collect()
        )
    finally:
        shared.destroy()
    moments: dict[str, dict[tuple[str, str], tuple[float, int]]] = {name: {} for name, _, _ in runs}
    moments.update({name: {} for name in baselines})
    degraded: dict[str, dict[str, int]] = {name: {s.value: 0 for s in Surface} for name, _, _ in runs}
    for r in rows:
        if r["metric"] == DEGRADED:
            degraded[r["method"]][r["surface"]] = int(r["total"])
        else:
            moments[r["method"]][(r["surface"], r["metric"])] = (float(r["mean"]), int(r["n"]))
    if progress is not None:
        progress(f"  Spark: ranked and measured {len(records)} users in {time.perf_counter() - started:.1f} s")
    metrics = {name: surface_metrics(m) for name, m in moments.items()}
    return evaluation_summary(
        metrics,
        bundle.default_model,
        degraded,
        list(baselines),
        params,
        limit,
        len(records),
        seed,
        engine=f"spark ({n_parts} partitions; per-user metrics averaged by Spark)",
    )


def _user_query(snapshot: UserSnapshot, queries: EvalQueries, targets: Any, row: int) -> UserQuery:
    u = int(queries.users[row])
    return UserQuery(
        row=u,
        user_id=queries.user_ids[row],
        vector=np.asarray(snapshot.vectors[u], dtype=np.float32),
        stats=np.asarray(snapshot.stats[u], dtype=np.float32),
        known=np.asarray(snapshot.known(u), dtype=np.int32),
        seeds=tuple(int(s) for s in queries.seeds[row].tolist()),
        relevant=targets.relevant[row],
        targets=tuple(targets.seeds[row]),
    )


def _evaluate_partition(
    bundle_name: str,
    runs: Sequence[tuple[str, str, bool]],
    params: Mapping[Surface, RankingParams],
    limit: int,
    baselines: Any,
    records: Iterator[bytes],
) -> Iterator[tuple[str, str, str, float]]:
    """Executor side: rank one partition's users with every method and yield their metric rows."""
    from pyspark import SparkFiles

    users: list[UserQuery] = [pickle.loads(r) for r in records]
    if not users:
        return iter(())
    bundle = load_bundle(Path(SparkFiles.get(bundle_name)))
    lists, degraded = asyncio.run(_served(bundle, users, runs, params, limit))
    queries = _queries(users, np.array([q.row for q in users], dtype=np.int64))
    for name, baseline in baselines.value.items():
        lists[name] = baseline_lists(baseline, [q.known for q in users], queries, params, limit)
    out: list[tuple[str, str, str, float]] = []
    for name, per_method in lists.items():
        for i, q in enumerate(users):
            home, now_playing = per_method["home"][i], per_method["now_playing"][i]
            out += [
                (name, surface, metric, float(value))
                for surface, metric, value in user_metrics(home, now_playing, q.relevant, q.seeds, q.targets)
            ]
    for name, counts in degraded.items():
        out += [(name, surface, DEGRADED, 1.0) for surface, n in counts.items() for _ in range(n)]
    return iter(out)


def _queries(users: Sequence[UserQuery], rows: I64) -> EvalQueries:
    return EvalQueries(
        users=rows,
        user_ids=tuple(q.user_id for q in users),
        seeds=np.array([q.seeds for q in users], dtype=np.int64).reshape(len(users), -1),
    )


async def _served(
    bundle: Any,
    users: Sequence[UserQuery],
    runs: Sequence[tuple[str, str, bool]],
    params: Mapping[Surface, RankingParams],
    limit: int,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, int]]]:
    """Every served run's lists for these users over an embedded store of just them."""
    indptr = np.zeros(len(users) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([q.known.size for q in users])
    snapshot = UserSnapshot(
        user_ids=[q.user_id for q in users],
        vectors=np.stack([q.vector for q in users]).astype(np.float32),
        stats=np.stack([q.stats for q in users]).astype(np.float32),
        known_indptr=indptr,
        known_items=np.concatenate([q.known for q in users]).astype(np.int32),
    )
    queries = _queries(users, np.arange(len(users), dtype=np.int64))
    return await rank_served_runs(bundle, snapshot, queries, runs, params, limit)
