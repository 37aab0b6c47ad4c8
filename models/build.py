"""Build an artifact bundle end to end: data → split → ALS → ranker → staged bundle → evaluation → bundle.

The evaluation runs on the staged bundle, loaded as the server loads it, through the served
pipeline (``models.evaluation``); the bundle is published (one rename) with that evaluation in
its manifest, so the manifest's numbers describe exactly what a client calling Rank receives.

Run by ``encore build`` (see ``serving/cli.py``). The bundle's embeddings, statistics and rankers are the
ones evaluated: item/user vectors come from ALS on the embedding-train part of each user's
items, and ``USER_STATS``/``ITEM_STATS``/popularity are computed from that same train part, so
the metrics in the manifest describe exactly the artifacts being served and the ranker sees
feature distributions identical to the ones it was trained on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from features.datasets import Interactions
from features.hetrec import load_hetrec
from features.synthetic import generate_synthetic
from models.bundle import (
    BundleContents,
    UserSnapshot,
    discard_bundle,
    finalize_bundle,
    known_from_csr,
    load_bundle,
    stage_bundle,
)
from models.evaluation import LIMIT, Baseline, evaluate_bundle, format_metrics_table
from models.item_neighbors import build_item_neighbors
from models.training import (
    MODEL_TREES,
    TrainingError,
    build_ranker_dataset,
    compute_tables,
    popularity_order,
    split_interactions,
    subsample_users,
    train_embeddings,
    train_ranker,
)

POPULARITY_LIMIT = 1000

__all__ = ["POPULARITY_LIMIT", "BuildConfig", "build_bundle", "format_metrics_table"]


@dataclass(frozen=True)
class BuildConfig:
    """What to build. ``out_dir`` is the parent directory; the bundle goes to ``out_dir/version``.

    ``ranker_users`` / ``eval_users`` cap the users sampled for ranker training and evaluation
    (``None`` = all), which keeps a 1,000,000-item build within minutes on two cores.
    ``models`` maps each ranker version to its number of trees; the first is the default model.
    """

    dataset: Literal["synthetic", "hetrec"] = "synthetic"
    data_path: Path | None = None
    n_items: int = 20_000
    n_users: int = 5_000
    out_dir: Path = Path("bundles")
    version: str | None = None
    seed: int = 0
    factors: int = 64
    als_iterations: int = 15
    n_candidates: int = 200
    ranker_users: int | None = 3000
    eval_users: int | None = 2000
    threads: int = 2
    models: tuple[tuple[str, int], ...] = field(default_factory=lambda: tuple(MODEL_TREES.items()))


def _load(config: BuildConfig) -> Interactions:
    if config.dataset == "hetrec":
        if config.data_path is None:
            raise ValueError("BuildConfig.data_path is required for dataset 'hetrec'")
        return load_hetrec(config.data_path)
    if config.dataset == "synthetic":
        return generate_synthetic(config.n_items, config.n_users, seed=config.seed)
    raise ValueError(f"BuildConfig.dataset must be 'synthetic' or 'hetrec', not {config.dataset!r}")


def build_bundle(config: BuildConfig, log: Callable[[str], None] = print) -> Path:
    """Load or generate the data, train, evaluate, log the metrics table and write the bundle.

    Returns the bundle directory ``config.out_dir / version``. Progress lines go to ``log``
    with the elapsed seconds since the start.
    """
    if not config.models:
        raise ValueError("BuildConfig.models must name at least one ranker version")
    start = time.perf_counter()

    def step(message: str) -> None:
        log(f"[{time.perf_counter() - start:7.1f}s] {message}")

    step(f"loading dataset {config.dataset!r}")
    data = _load(config)
    step(f"dataset {data.name}: {data.n_users} users, {data.n_items} items, {data.n_interactions} interactions")
    version = config.version or f"{data.name}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    out = config.out_dir / version

    split = split_interactions(data.plays, seed=config.seed)
    step("split: " + ", ".join(f"{k}={v}" for k, v in split.summary().items()))

    emb = train_embeddings(
        split.train, factors=config.factors, iterations=config.als_iterations, seed=config.seed, threads=config.threads
    )
    step(f"ALS: {config.factors} factors, {config.als_iterations} iterations")

    tables = compute_tables(split.train)
    popularity = popularity_order(tables.listeners)
    if popularity.size == 0:
        raise TrainingError(f"dataset {data.name} has no train interactions")

    rng = np.random.default_rng(config.seed + 1)
    ranker_users = subsample_users(split.users_with(split.label), config.ranker_users, rng)
    dataset = build_ranker_dataset(split, emb, tables, ranker_users, rng, n_candidates=config.n_candidates)
    step(
        f"ranker data: {ranker_users.size} users, {dataset.n_queries} queries with positives, "
        f"{dataset.features.shape[0]} rows, {int(dataset.labels.sum())} positives"
    )

    rankers = {}
    for model_version, trees in config.models:
        rankers[model_version] = train_ranker(
            dataset, version=model_version, n_estimators=trees, seed=config.seed, threads=config.threads
        )
        step(f"ranker {model_version}: {trees} trees, ONNX export checked against LightGBM")
    default_model = config.models[0][0]

    eval_users = subsample_users(
        split.users_with(split.test), config.eval_users, np.random.default_rng(config.seed + 2)
    )
    dataset_info: dict[str, Any] = {
        **data.summary(),
        "source": str(config.data_path) if config.dataset == "hetrec" else "generated",
        "split": split.summary(),
        "training": {
            "seed": config.seed,
            "als": {
                "factors": config.factors,
                "iterations": config.als_iterations,
                "weighting": "log1p",
                "regularization": 1.0,
            },
            "ranker": {
                "users": int(ranker_users.size),
                "queries": dataset.n_queries,
                "rows": int(dataset.features.shape[0]),
                "candidates": config.n_candidates,
                "models": {v: r.n_trees for v, r in rankers.items()},
            },
        },
    }
    # What the served model knows (and the server filters): each user's train + label items.
    known = (split.train + split.label).tocsr()
    known_indptr, known_items = known_from_csr(known)
    neighbours = build_item_neighbors(known)
    step(f"item neighbours: k={neighbours.k}, coverage {neighbours.coverage():.3f}")
    baselines: dict[str, Baseline] = {}  # MODELS: popularity, ItemKNN, EASE, ALS (models.baselines)

    contents = BundleContents(
        version=version,
        item_ids=data.item_ids,
        artist_ids=data.artist_ids,
        item_names=data.item_names,
        item_vectors=emb.item_vectors,
        item_stats=tables.item_stats,
        popularity=popularity[:POPULARITY_LIMIT],
        models={v: r.onnx for v, r in rankers.items()},
        default_model=default_model,
        users=UserSnapshot(
            user_ids=data.user_ids,
            vectors=emb.user_vectors,
            stats=tables.user_stats,
            known_indptr=known_indptr,
            known_items=known_items,
        ),
        item_neighbors=neighbours.neighbors,
        item_neighbor_weights=neighbours.weights,
        dataset=dataset_info,
    )
    _stage_evaluate_publish(contents, out, split.test, eval_users, baselines, config.seed + 3, step, log)
    step(f"bundle written to {out}")
    return out


def _stage_evaluate_publish(
    contents: BundleContents,
    out: Path,
    test: Any,
    eval_users: Any,
    baselines: dict[str, Baseline],
    seed: int,
    step: Callable[[str], None],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Stage the bundle, load it as the server does, evaluate its served pipeline, then publish it
    with the evaluation in its manifest (one rename); a failure leaves nothing at ``out``."""
    staged = stage_bundle(contents, out)
    try:
        step(f"bundle staged in {staged.path.name}; loading it as the server does")
        bundle = load_bundle(staged.path)
        step(f"evaluating the served pipeline on {len(eval_users)} users (limit {LIMIT}, two seeds each)")
        result = evaluate_bundle(bundle, test, eval_users, seed=seed, baselines=baselines, progress=log)
        del bundle
        for line in format_metrics_table(result.summary).splitlines():
            log("    " + line)
        finalize_bundle(staged, result.summary)
    except BaseException:
        discard_bundle(staged)
        raise
    return result.summary
