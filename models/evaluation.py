"""Offline evaluation of exactly what is served: the serving pipeline, run in process on a bundle.

Protocol (``evaluate_bundle``):

1. The bundle is loaded as the server loads it (``models.bundle.load_bundle``, warmed ONNX
   sessions from ``models.runtime.load_sessions``) and its pipelines are built by the server's own
   assembly code (``ranking.assembly.assemble``) over an embedded ``MemoryFeatureStore`` seeded
   from the bundle's user snapshot. Each query goes through ``PipelineExecutor.execute`` — the
   same sources, filters (known items, seed, recent plays, skips, duplicates), features, scorer,
   selection and diversity cap — with ``limit`` (100) and a generous budget; answers with a
   degraded stage are counted (``degraded``). No recent plays exist offline, as for a user who
   opens the app: the history is the user's known items.
2. Users: the given evaluation users (users with test items). Home: one query per user. Now
   Playing: two seeds per user, distinct random known items drawn by ``models.metrics.pick_seeds``
   from one seeded generator.
3. Relevant items: the user's held-out test items. The known items (the snapshot:
   train + label parts, what the served model was fit on) are never relevant and, under the
   default ``known_items: exclude`` policy, never recommended.
4. Baselines (``Baseline.rank(user, seed, exclude, n)``) rank for the same users and seeds with
   the same exclusions as the served pipeline: the known items when the surface's policy is
   ``exclude``, plus the seed on Now Playing.
5. Metrics (definitions in ``models.metrics``): NDCG@10 and recall@100 on both surfaces; on Now
   Playing also seed-neighbour precision@10, seed-conditioned NDCG@10 (queries with no
   seed-conditioned relevant item skipped and counted), overlap@10 between the user's two seeds
   and overlap@10 with the user's Home list. Co-listening for the seed metrics is counted on the
   known items (train + label) over users other than the one asking.

Methods: ``ranker`` is the served pipeline with the bundle's default model (through the scoring
cascade when the bundle has a light model and ``params.cascade_size`` > 0); ``ranker:no-cascade``
the same with the default model scoring every candidate (evaluated when the cascade is on);
``ranker:<version>`` the same pipeline with another of the bundle's models
(``params.model_version``); every other method is a baseline. ``vs_best_baseline`` reports, per
surface and metric, the served ranker's value over the best baseline's.

Engines: ``evaluate_bundle`` runs every query here. ``models.spark.evaluation`` runs the same
queries in Spark executors, each on the bundle and its own users, and aggregates the per-user
metrics (``user_metrics``) in Spark; both end in ``surface_metrics`` and ``evaluation_summary``,
so the manifests differ only by ``protocol.engine`` and summation order (~1e-16).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import faiss
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from features.memory_store import MemoryFeatureStore
from features.snapshot import UserSnapshot
from models.bundle import Bundle
from models.metrics import (
    NDCG_K,
    OVERLAP_K,
    RECALL_K,
    SEED_K,
    SEED_NEIGHBOURS,
    CoListen,
    mean,
    ndcg_at_k,
    overlap_at_k,
    pick_seeds,
    precision_in_at_k,
    recall_at_k,
    seed_targets,
)
from models.runtime import load_sessions
from ranking.assembly import DEFAULT_PARAMS, assemble
from ranking.budget import Budget, StageLimits
from ranking.observer import NullObserver
from ranking.pipeline import PipelineExecutor
from ranking.types import Query, RankingParams, Surface

I64 = npt.NDArray[np.int64]

LIMIT = 100
SERVED = "ranker"
#: The served pipeline with the default model scoring every candidate (the cascade off).
NO_CASCADE = f"{SERVED}:no-cascade"
#: Metrics where higher is better, per surface (the served/best-baseline ratios are over these).
GAIN_METRICS: dict[str, tuple[str, ...]] = {
    "home": (f"ndcg@{NDCG_K}", f"recall@{RECALL_K}"),
    "now_playing": (f"ndcg@{NDCG_K}", f"recall@{RECALL_K}", f"seed_precision@{SEED_K}", f"seed_ndcg@{NDCG_K}"),
}
SURFACE_METRICS: dict[str, tuple[str, ...]] = {
    "home": GAIN_METRICS["home"],
    "now_playing": (*GAIN_METRICS["now_playing"], f"overlap@{OVERLAP_K}_seeds", f"overlap@{OVERLAP_K}_home"),
}
#: A budget no offline query hits: the evaluation measures quality, not latency.
GENEROUS_LIMITS = StageLimits(user_features=10.0, retrieval=10.0, scoring=10.0, reserve=0.0)
GENEROUS_BUDGET_S = 60.0


class Baseline(Protocol):
    """A simple recommender evaluated beside the served pipeline (``models.baselines``)."""

    def rank(self, user: int, seed: int, exclude: I64, n: int) -> I64:
        """Up to ``n`` item indices for user row ``user``, best first, none of them in ``exclude``
        (sorted ascending). ``seed`` is the Now Playing seed item, -1 on Home."""
        ...


@dataclass(frozen=True)
class EvalQueries:
    """The evaluated queries: user rows (into the snapshot) and two NP seeds per user (-1: none)."""

    users: I64
    user_ids: tuple[str, ...]
    seeds: I64  # [n_users, 2]


@dataclass
class EvaluationResult:
    """The manifest's ``evaluation`` dict and every ranked list, for inspection and tests.

    ``lists[method]["home"][row]`` is the Home list of ``queries.users[row]``;
    ``lists[method]["now_playing"][row][j]`` its list for ``queries.seeds[row, j]`` (empty when
    that seed is -1).
    """

    summary: dict[str, Any]
    queries: EvalQueries
    lists: dict[str, dict[str, Any]] = field(default_factory=dict)


def known_matrix(snapshot: UserSnapshot, n_items: int) -> sp.csr_matrix:
    """The snapshot's known items as a binary users × items CSR matrix."""
    indptr, items = snapshot.known_arrays()
    data = np.ones(items.size, dtype=np.float32)
    return sp.csr_matrix(
        (data, np.asarray(items, dtype=np.int32), np.asarray(indptr, dtype=np.int64)),
        shape=(len(snapshot.user_ids), n_items),
    )


class ServedRanker:
    """The served pipelines of one bundle, run in process (the server's assembly, an embedded store)."""

    def __init__(self, pipelines: Mapping[Surface, PipelineExecutor], executor: ThreadPoolExecutor) -> None:
        self._pipelines = pipelines
        self._executor = executor
        self.degraded: dict[str, int] = {s.value: 0 for s in Surface}

    @classmethod
    async def open(cls, bundle: Bundle, snapshot: UserSnapshot, threads: int = 1) -> ServedRanker:
        faiss.omp_set_num_threads(1)  # as the server does: one query at a time, no OpenMP spin
        store = MemoryFeatureStore()
        await store.load_snapshot(snapshot)
        sessions = await asyncio.to_thread(load_sessions, bundle, 1)
        executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="encore-eval")
        built = assemble(bundle, sessions, store, executor, NullObserver())
        return cls(built.pipelines, executor)

    async def rank(
        self, user_id: str, surface: Surface, params: RankingParams, seed: int | None, limit: int = LIMIT
    ) -> list[int]:
        query = Query(
            request_id=f"eval-{surface.value}-{user_id}-{seed}",
            user_id=user_id,
            surface=surface,
            limit=limit,
            params=params,
            seed_item=seed,
        )
        budget = Budget(surface_budget_s=GENEROUS_BUDGET_S, client_timeout_s=None, limits=GENEROUS_LIMITS)
        result = await self._pipelines[surface].execute(query, budget)
        if result.degraded:
            self.degraded[surface.value] += 1
        return [i.item for i in result.items]

    def close(self) -> None:
        self._executor.shutdown(wait=True)


def _exclusions(known: I64, seed: int, policy: str) -> I64:
    base = known if policy == "exclude" else np.empty(0, dtype=np.int64)
    if seed < 0:
        return base
    return np.union1d(base, np.array([seed], dtype=np.int64))


def baseline_lists(
    baseline: Baseline,
    known: Sequence[npt.ArrayLike],
    queries: EvalQueries,
    params: Mapping[Surface, RankingParams],
    limit: int,
) -> dict[str, Any]:
    """``baseline``'s lists for ``queries`` (shaped as ``EvaluationResult.lists``); ``known[row]``
    is the known items of ``queries.users[row]``."""
    home: list[list[int]] = []
    now_playing: list[list[list[int]]] = []
    for row, u in enumerate(queries.users.tolist()):
        known_items = np.asarray(known[row], dtype=np.int64)
        home_exclude = _exclusions(known_items, -1, params[Surface.HOME].known_items)
        home.append(np.asarray(baseline.rank(u, -1, home_exclude, limit), dtype=np.int64).tolist())
        lists: list[list[int]] = []
        for s in queries.seeds[row].tolist():
            if s < 0:
                lists.append([])
                continue
            exclude = _exclusions(known_items, s, params[Surface.NOW_PLAYING].known_items)
            lists.append(np.asarray(baseline.rank(u, s, exclude, limit), dtype=np.int64).tolist())
        now_playing.append(lists)
    return {"home": home, "now_playing": now_playing}


async def served_lists(
    ranker: ServedRanker,
    queries: EvalQueries,
    params: Mapping[Surface, RankingParams],
    limit: int,
    model_version: str | None,
    progress: Callable[[str], None] | None,
    cascade: bool = True,
) -> dict[str, Any]:
    """The served pipeline's lists for ``queries`` with bundle model ``model_version`` (``None``:
    the default), shaped as ``EvaluationResult.lists``; ``cascade=False`` turns the cascade off."""
    home_params = replace(params[Surface.HOME], model_version=model_version)
    np_params = replace(params[Surface.NOW_PLAYING], model_version=model_version)
    if not cascade:
        home_params, np_params = replace(home_params, cascade_size=0), replace(np_params, cascade_size=0)
    home: list[list[int]] = []
    now_playing: list[list[list[int]]] = []
    started = time.perf_counter()
    n = len(queries.user_ids)
    for row, user_id in enumerate(queries.user_ids):
        home.append(await ranker.rank(user_id, Surface.HOME, home_params, None, limit))
        now_playing.append(
            [
                [] if s < 0 else await ranker.rank(user_id, Surface.NOW_PLAYING, np_params, s, limit)
                for s in queries.seeds[row].tolist()
            ]
        )
        if progress is not None and (row + 1) % 500 == 0 and row + 1 < n:
            progress(
                f"  {model_version or 'default model'}: {row + 1}/{n} users ({time.perf_counter() - started:.1f} s)"
            )
    return {"home": home, "now_playing": now_playing}


def _rows(matrix: sp.csr_matrix, u: int) -> I64:
    return np.asarray(matrix.indices[matrix.indptr[u] : matrix.indptr[u + 1]], dtype=np.int64)


@dataclass(frozen=True)
class SeedTargets:
    """What a Now Playing answer for one (user, seed) is measured against."""

    neighbours: set[int]  # the seed's SEED_NEIGHBOURS most co-listened items (other users)
    conditioned: set[int]  # the user's test items co-listened with the seed by another user


@dataclass(frozen=True)
class QueryTargets:
    """The relevant items of every evaluated user and the seed targets of each of its seeds
    (``None`` where the seed is -1), rows aligned with ``EvalQueries``."""

    relevant: list[set[int]]
    seeds: list[list[SeedTargets | None]]


def plan_queries(snapshot: UserSnapshot, known: sp.csr_matrix, users: I64, seed: int) -> EvalQueries:
    """The evaluated queries: ``users`` (snapshot rows) and two Now Playing seeds each, drawn by
    ``pick_seeds`` from one generator seeded with ``seed``."""
    users = np.asarray(users, dtype=np.int64)
    return EvalQueries(
        users=users,
        user_ids=tuple(snapshot.user_ids[u] for u in users.tolist()),
        seeds=pick_seeds(known, users, seed=seed, per_user=2),
    )


def query_targets(known: sp.csr_matrix, test: sp.csr_matrix, queries: EvalQueries) -> QueryTargets:
    """Relevant items (the test rows) and seed targets (co-listening on ``known`` over other users)."""
    relevant = [set(_rows(test, u).tolist()) for u in queries.users.tolist()]
    colisten = CoListen(known)
    return QueryTargets(
        relevant=relevant,
        seeds=[
            [
                None if s < 0 else SeedTargets(*seed_targets(colisten, s, u, relevant[row], SEED_NEIGHBOURS))
                for s in queries.seeds[row].tolist()
            ]
            for row, u in enumerate(queries.users.tolist())
        ],
    )


def _finite(value: Any) -> Any:
    """NaN (a metric with no query) → None, recursively, so the manifest stays strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def user_metrics(
    home: Sequence[int],
    now_playing: Sequence[Sequence[int]],
    relevant: set[int],
    seeds: Sequence[int],
    targets: Sequence[SeedTargets | None],
) -> list[tuple[str, str, float]]:
    """``(surface, metric, value)`` of one evaluated user: its Home list and its Now Playing list
    per seed (empty where the seed is -1). A Now Playing seed without seed-conditioned relevant
    items yields no ``seed_ndcg``; a user with fewer than two seeds no ``overlap…_seeds``."""
    out = [
        ("home", f"ndcg@{NDCG_K}", ndcg_at_k(home, relevant, NDCG_K)),
        ("home", f"recall@{RECALL_K}", recall_at_k(home, relevant, RECALL_K)),
    ]
    valid = [j for j, s in enumerate(seeds) if s >= 0]
    for j in valid:
        ranked, target = now_playing[j], targets[j]
        assert target is not None
        out += [
            ("now_playing", f"ndcg@{NDCG_K}", ndcg_at_k(ranked, relevant, NDCG_K)),
            ("now_playing", f"recall@{RECALL_K}", recall_at_k(ranked, relevant, RECALL_K)),
            ("now_playing", f"seed_precision@{SEED_K}", precision_in_at_k(ranked, target.neighbours, SEED_K)),
        ]
        if target.conditioned:
            out.append(("now_playing", f"seed_ndcg@{NDCG_K}", ndcg_at_k(ranked, target.conditioned, NDCG_K)))
        out.append(("now_playing", f"overlap@{OVERLAP_K}_home", overlap_at_k(ranked, home, OVERLAP_K)))
    if len(valid) >= 2:
        out.append(
            (
                "now_playing",
                f"overlap@{OVERLAP_K}_seeds",
                overlap_at_k(now_playing[valid[0]], now_playing[valid[1]], OVERLAP_K),
            )
        )
    return out


def surface_metrics(moments: Mapping[tuple[str, str], tuple[float, int]]) -> dict[str, dict[str, float]]:
    """The per-surface metrics dict of one method from ``(surface, metric) → (mean, count)`` over
    its users' ``user_metrics`` (a metric with no value is NaN). Both engines end here: the
    in-process one with ``np.mean``, the Spark one with Spark's ``avg``."""

    def avg(surface: str, metric: str) -> float:
        return moments.get((surface, metric), (float("nan"), 0))[0]

    def count(surface: str, metric: str) -> float:
        return float(moments.get((surface, metric), (float("nan"), 0))[1])

    ndcg, seed_ndcg = f"ndcg@{NDCG_K}", f"seed_ndcg@{NDCG_K}"
    home = {metric: avg("home", metric) for metric in SURFACE_METRICS["home"]}
    home["queries"] = count("home", ndcg)
    now_playing = {metric: avg("now_playing", metric) for metric in SURFACE_METRICS["now_playing"]}
    now_playing["queries"] = count("now_playing", ndcg)
    now_playing["seed_ndcg_queries"] = count("now_playing", seed_ndcg)
    now_playing["seed_ndcg_skipped"] = count("now_playing", ndcg) - count("now_playing", seed_ndcg)
    return {"home": home, "now_playing": now_playing}


def _metrics(lists: Mapping[str, Any], queries: EvalQueries, targets: QueryTargets) -> dict[str, dict[str, float]]:
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    for row, home in enumerate(lists["home"]):
        seeds = queries.seeds[row].tolist()
        for surface, metric, value in user_metrics(
            home, lists["now_playing"][row], targets.relevant[row], seeds, targets.seeds[row]
        ):
            values[(surface, metric)].append(value)
    return surface_metrics({key: (mean(v), len(v)) for key, v in values.items()})


def _ratios(summary: Mapping[str, Any], baselines: Sequence[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for surface, metrics in GAIN_METRICS.items():
        methods = summary[surface]
        out[surface] = {}
        for metric in metrics:
            scored = [(methods[b][metric], b) for b in baselines if not math.isnan(methods[b][metric])]
            if SERVED in methods and math.isnan(methods[SERVED][metric]):
                continue
            if not scored or SERVED not in methods:
                continue
            best_value, best = max(scored)
            served = methods[SERVED][metric]
            out[surface][metric] = {
                "best_baseline": best,
                "best_baseline_value": best_value,
                "served": served,
                "ratio": served / best_value if best_value > 0 else float("nan"),
            }
    return out


async def evaluate_bundle_async(
    bundle: Bundle,
    test: sp.csr_matrix,
    users: I64,
    *,
    seed: int,
    baselines: Mapping[str, Baseline] | None = None,
    params: Mapping[Surface, RankingParams] | None = None,
    limit: int = LIMIT,
    models: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> EvaluationResult:
    """Evaluate the served pipeline of ``bundle`` (and ``baselines``) on ``test``; see the module docstring.

    ``test`` is the held-out users × items matrix, rows aligned with the bundle's user snapshot;
    ``users`` the evaluated rows. ``params``: per-surface ranking params (the serving defaults when
    None). ``models``: bundle models to evaluate (default: all; the default model is ``ranker``).
    """
    params = dict(params or DEFAULT_PARAMS)
    baselines = dict(baselines or {})
    check_baseline_names(baselines)
    snapshot = bundle.load_users()
    known = known_matrix(snapshot, len(bundle.catalog))
    queries = plan_queries(snapshot, known, users, seed)
    targets = query_targets(known, test, queries)
    result = EvaluationResult(summary={}, queries=queries)
    served, degraded = await rank_served_runs(
        bundle, snapshot, queries, served_runs(bundle, params, models), params, limit, progress
    )
    result.lists.update(served)
    known_rows = [snapshot.known(u) for u in queries.users.tolist()]
    for name, baseline in baselines.items():
        began = time.perf_counter()
        result.lists[name] = baseline_lists(baseline, known_rows, queries, params, limit)
        if progress is not None:
            progress(f"  {name}: baseline ranked {queries.users.size} users in {time.perf_counter() - began:.1f} s")
    metrics = {name: _metrics(lists, queries, targets) for name, lists in result.lists.items()}
    result.summary = evaluation_summary(
        metrics, bundle.default_model, degraded, list(baselines), params, limit, int(queries.users.size), seed
    )
    return result


async def rank_served_runs(
    bundle: Bundle,
    snapshot: UserSnapshot,
    queries: EvalQueries,
    runs: Sequence[tuple[str, str, bool]],
    params: Mapping[Surface, RankingParams],
    limit: int,
    progress: Callable[[str], None] | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, int]]]:
    """Every served run's lists for ``queries`` over an embedded store of ``snapshot`` (which holds
    the queried users), and each run's degraded answers per surface."""
    ranker = await ServedRanker.open(bundle, snapshot)
    lists: dict[str, dict[str, Any]] = {}
    degraded: dict[str, dict[str, int]] = {}
    try:
        for name, version, cascade in runs:
            before = dict(ranker.degraded)
            started = time.perf_counter()
            lists[name] = await served_lists(ranker, queries, params, limit, version, progress, cascade)
            degraded[name] = {s: ranker.degraded[s] - before[s] for s in before}
            if progress is not None:
                progress(
                    f"  {name}: served pipeline ranked {queries.users.size} users "
                    f"in {time.perf_counter() - started:.1f} s"
                )
    finally:
        ranker.close()
    return lists, degraded


def check_baseline_names(baselines: Mapping[str, Baseline]) -> None:
    """Raise ``ValueError`` when a baseline name would collide with a served method's."""
    if SERVED in baselines or any(name.startswith(f"{SERVED}:") for name in baselines):
        raise ValueError(f"baseline names must not start with {SERVED!r}")


def served_runs(
    bundle: Bundle, params: Mapping[Surface, RankingParams], models: Sequence[str] | None
) -> list[tuple[str, str, bool]]:
    """``(method name, model version, cascade on)`` of every served method evaluated: ``ranker``,
    ``ranker:no-cascade`` when the cascade is on, ``ranker:<version>`` for each other model in
    ``models`` (default: all of the bundle's)."""
    versions = list(models) if models is not None else sorted(bundle.models)
    runs = [(SERVED, bundle.default_model, True)]
    if bundle.light_model is not None and any(p.cascade_size > 0 for p in params.values()):
        runs.append((NO_CASCADE, bundle.default_model, False))
    runs += [(f"{SERVED}:{v}", v, True) for v in versions if v != bundle.default_model]
    return runs


def evaluation_summary(
    metrics: Mapping[str, Mapping[str, Mapping[str, float]]],
    default_model: str,
    degraded: Mapping[str, Mapping[str, int]],
    baselines: Sequence[str],
    params: Mapping[Surface, RankingParams],
    limit: int,
    n_users: int,
    seed: int,
    engine: str = "in process",
) -> dict[str, Any]:
    """The manifest's ``evaluation`` dict from each method's ``surface_metrics`` (module docstring)."""
    summary: dict[str, Any] = {
        "protocol": {
            "pipeline": "the served pipeline (ranking.assembly) run in process on the bundle, embedded store",
            "relevant": "held-out test items (15% of each user's items, users with >= 5 items)",
            "known_items": "the bundle snapshot's known items (train + label parts); "
            + ", ".join(f"{s.value}: {params[s].known_items}" for s in Surface),
            "now_playing_seeds": "2 distinct random known items per user (models.metrics.pick_seeds)",
            "limit": limit,
            "n_users": n_users,
            "seed": seed,
            "engine": engine,
            "metrics": {s: list(m) for s, m in SURFACE_METRICS.items()},
            "seed_metrics": f"co-listening on train + label over other users; top {SEED_NEIGHBOURS} neighbours",
            "recent_plays": "none (the embedded store holds only the snapshot)",
        },
        "default_model": default_model,
        "degraded": {name: dict(counts) for name, counts in degraded.items()},
        "home": {name: dict(per_surface["home"]) for name, per_surface in metrics.items()},
        "now_playing": {name: dict(per_surface["now_playing"]) for name, per_surface in metrics.items()},
    }
    summary["vs_best_baseline"] = _ratios(summary, list(baselines))
    finite: dict[str, Any] = _finite(summary)
    return finite


def evaluate_bundle(
    bundle: Bundle,
    test: sp.csr_matrix,
    users: I64,
    *,
    seed: int,
    baselines: Mapping[str, Baseline] | None = None,
    params: Mapping[Surface, RankingParams] | None = None,
    limit: int = LIMIT,
    models: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> EvaluationResult:
    """``evaluate_bundle_async`` on a fresh event loop (offline callers have none running)."""
    return asyncio.run(
        evaluate_bundle_async(
            bundle,
            test,
            users,
            seed=seed,
            baselines=baselines,
            params=params,
            limit=limit,
            models=models,
            progress=progress,
        )
    )


def _fmt(value: Any) -> str:
    if value is None or not isinstance(value, int | float) or math.isnan(float(value)):
        return "-"
    return f"{float(value):.4f}"


def format_metrics_table(evaluation: Mapping[str, Any]) -> str:
    """Render the evaluation dict as fixed-width text: one row per surface × method, one column per
    metric, then the served ranker against the best baseline."""
    lines: list[str] = []
    for surface, metrics in SURFACE_METRICS.items():
        methods = evaluation.get(surface)
        if not isinstance(methods, Mapping) or not methods:
            continue
        served = [m for m in methods if m == SERVED or m.startswith(f"{SERVED}:")]
        order = sorted(served, key=lambda m: (m != SERVED, m)) + sorted(m for m in methods if m not in served)
        rows = [("surface", "method", *metrics)]
        rows += [(surface, m, *(_fmt(methods[m].get(k)) for k in metrics)) for m in order]
        widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
        table = [
            "  ".join(
                cell.ljust(w) if c < 2 else cell.rjust(w) for c, (cell, w) in enumerate(zip(r, widths, strict=True))
            )
            for r in rows
        ]
        table.insert(1, "  ".join("-" * w for w in widths))
        if lines:
            lines.append("")
        lines += table
    ratios = evaluation.get("vs_best_baseline")
    if isinstance(ratios, Mapping):
        for surface, per_metric in ratios.items():
            if per_metric:
                parts = [f"{metric} {_ratio(r['ratio'])} {r['best_baseline']}" for metric, r in per_metric.items()]
                lines.append(f"served / best baseline, {surface}: " + "; ".join(parts))
    protocol = evaluation.get("protocol")
    if isinstance(protocol, Mapping):
        skipped = evaluation.get("now_playing", {}).get(SERVED, {}).get("seed_ndcg_skipped")
        degraded = evaluation.get("degraded", {}).get(SERVED, {})
        lines.append(
            f"(users: {protocol.get('n_users')}, limit {protocol.get('limit')}; seed_ndcg skipped "
            f"{_count(skipped)} NP queries without seed-conditioned relevant items; "
            f"degraded served answers: {dict(degraded) or 0})"
        )
    return "\n".join(lines)


def _ratio(value: Any) -> str:
    return "-" if value is None or math.isnan(float(value)) else f"{float(value):.3f}x"


def _count(value: Any) -> str:
    return str(int(value)) if isinstance(value, int | float) and not math.isnan(float(value)) else "-"


__all__ = [
    "LIMIT",
    "NO_CASCADE",
    "SERVED",
    "Baseline",
    "EvalQueries",
    "EvaluationResult",
    "QueryTargets",
    "SeedTargets",
    "ServedRanker",
    "baseline_lists",
    "check_baseline_names",
    "evaluate_bundle",
    "evaluate_bundle_async",
    "evaluation_summary",
    "format_metrics_table",
    "known_matrix",
    "ndcg_at_k",
    "plan_queries",
    "query_targets",
    "rank_served_runs",
    "recall_at_k",
    "served_lists",
    "served_runs",
    "surface_metrics",
    "user_metrics",
]
