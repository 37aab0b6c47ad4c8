"""Build an artifact bundle end to end: data → split → ALS → ranker → evaluation → bundle.

Run by ``encore build`` (see ``cli/build.py``). The bundle's embeddings, statistics and rankers are the
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
import onnxruntime as ort

from features.datasets import Interactions
from features.hetrec import load_hetrec
from features.ranker_features import F32
from features.schema import RANKER_INPUT_NAME
from features.snapshot import UserSnapshot
from features.synthetic import generate_synthetic
from models.bundle import BundleContents, write_bundle
from models.evaluation import RERANK_DEPTH, Scorer, evaluate, format_metrics_table
from models.runtime import session_options
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


def _onnx_scorer(onnx_bytes: bytes) -> Scorer:
    """Score with the exported model itself, threaded as the server runs it."""
    session = ort.InferenceSession(onnx_bytes, sess_options=session_options(1), providers=["CPUExecutionProvider"])

    def score(features: F32) -> Any:
        return np.asarray(session.run(None, {RANKER_INPUT_NAME: features})[0]).reshape(-1)

    return score


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
    scorers = {("ranker" if v == default_model else f"ranker:{v}"): _onnx_scorer(r.onnx) for v, r in rankers.items()}
    evaluation = evaluate(
        split,
        emb,
        tables,
        popularity,
        scorers,
        users=eval_users,
        seed=config.seed + 3,
        rerank_depth=max(RERANK_DEPTH, config.n_candidates),
    )
    evaluation["default_model"] = default_model
    step(f"evaluation on {eval_users.size} users:")
    for line in format_metrics_table(evaluation).splitlines():
        log("    " + line)

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
        users=UserSnapshot(user_ids=data.user_ids, vectors=emb.user_vectors, stats=tables.user_stats),
        dataset=dataset_info,
        evaluation=evaluation,
    )
    path = write_bundle(contents, out)
    step(f"bundle written to {path}")
    return path
