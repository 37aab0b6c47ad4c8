"""Build an artifact bundle end to end: data → split → baselines → training → staged bundle →
evaluation → bundle.

The evaluation runs on the staged bundle, loaded as the server loads it, through the served
pipeline (``models.evaluation``); the bundle is published (one rename) with that evaluation in
its manifest, so the manifest's numbers describe exactly what a client calling Rank receives.

Run by ``encore build`` (see ``cli/build.py``). Training (``models.training``) is two-staged:
the rankers learn on candidate models fit on the train part with labels from the label part; the
bundle serves candidate models refit on train + label (ALS vectors, statistics, popularity, the
item-neighbour table) with those rankers on top, and the user snapshot's known items are the
train + label items. The baselines (``models.baselines``) are tuned on the label part and refit on
train + label too; the tuned ALS configuration is the one the served embeddings use.

Scale: on catalogues above ``LARGE_CATALOG`` items the build skips what does not scale or would
take long on two cores (EASE and ItemKNN baselines, ALS tuning, extra ranker replicas) and keeps
a shorter neighbour table; the neighbour table is EASE-based while at most ``ease_max_items``
items have two listeners and co-occurrence-based beyond. ``BuildConfig`` fields override each
choice, and the manifest records what was done (``dataset.build_plan``).

Engines (``BuildConfig.engine``, ``encore build --engine``): ``inprocess`` (the default, all of
the above in this process) or ``spark``: reading ``--input``, the split, statistics, popularity,
ALS and the co-occurrence neighbour table of every training stage run on Spark MLlib
(``models.spark``, imported only then); so do the ranker's example sampling (per partition of
users, ``models.spark.examples``) and the evaluation (the served pipeline ranks in the executors,
Spark averages the per-user metrics: ``models.spark.evaluation``). ALS is not tuned, the
baselines are popularity and ALS, and the ranker has 2 replicas by default, not 8
(``_plan``). LightGBM and FAISS run here on both engines.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np

from features.datasets import Interactions
from features.hetrec import load_hetrec
from features.snapshot import UserSnapshot
from features.synthetic import generate_synthetic
from models.als import AlsConfig
from models.baselines import AlsBaseline, FittedBaselines, fit_baselines
from models.baselines.popularity import fit_popularity
from models.bundle import (
    INDEX_TYPES,
    BundleContents,
    discard_bundle,
    finalize_bundle,
    known_from_csr,
    load_bundle,
    stage_bundle,
)
from models.evaluation import LIMIT, Baseline, evaluate_bundle, format_metrics_table
from models.item_neighbors import NeighborConfig, effective_method
from models.ranker import MODEL_TREES, RankerConfig
from models.ranker_data import CandidateSizes, LabelConfig, build_ranker_dataset
from models.splits import split_interactions, subsample_users
from models.training import (
    POPULARITY_LIMIT,
    ExampleSampler,
    StageFit,
    TrainingConfig,
    fit_stage,
    train_models,
)
from ranking.assembly import DEFAULT_PARAMS
from ranking.types import RankingParams, Surface

T = TypeVar("T")

#: Above this many items the build uses its large-catalogue defaults (module docstring).
LARGE_CATALOG = 200_000

__all__ = ["LARGE_CATALOG", "POPULARITY_LIMIT", "BuildConfig", "build_bundle", "format_metrics_table"]


@dataclass(frozen=True)
class BuildConfig:
    """What to build. ``out_dir`` is the parent directory; the bundle goes to ``out_dir/version``.

    ``ranker_users`` / ``eval_users`` cap the users sampled for ranker training (per replica) and
    evaluation (``None`` = all). ``models`` maps each ranker version to its number of trees; the
    first is the default model. ``None`` in ``ranker_replicas``, ``neighbors_k``, ``tune_als`` and
    ``baselines`` means "by catalogue size" (see the module docstring). ``engine``, ``spark_master``,
    ``spark_conf`` (``--spark-conf``) and ``input_path`` (``--input``, Spark only) choose where the
    heavy stages run; ``index_type`` the FAISS index (``models.bundle.INDEX_TYPES``).
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
    ranker_users: int | None = 3000
    eval_users: int | None = 2000
    threads: int = 2
    models: tuple[tuple[str, int], ...] = field(default_factory=lambda: tuple(MODEL_TREES.items()))
    ranker_replicas: int | None = None
    neighbors_k: int | None = None
    tune_als: bool | None = None
    baselines: tuple[str, ...] | None = None
    engine: Literal["inprocess", "spark"] = "inprocess"
    spark_master: str = "local[2]"
    spark_conf: Mapping[str, str] = field(default_factory=dict)
    input_path: str | None = None
    index_type: str = "auto"


def _check(config: BuildConfig) -> None:
    if not config.models:
        raise ValueError("BuildConfig.models must name at least one ranker version")
    if config.engine not in ("inprocess", "spark"):
        raise ValueError(f"--engine {config.engine!r}: use 'inprocess' or 'spark'")
    if config.input_path is not None and config.engine != "spark":
        raise ValueError("--input needs --engine spark (the in-process engine reads --dataset)")
    if config.engine == "spark" and (config.tune_als or config.baselines not in (None, SPARK_BASELINES)):
        raise ValueError(
            f"BuildConfig.tune_als / baselines: --engine spark runs untuned ALS and {', '.join(SPARK_BASELINES)}"
        )
    if config.index_type not in INDEX_TYPES:
        raise ValueError(f"--index-type {config.index_type!r}: use one of {', '.join(INDEX_TYPES)}")


def _load(config: BuildConfig) -> Interactions:
    if config.dataset == "hetrec":
        if config.data_path is None:
            raise ValueError("BuildConfig.data_path is required for dataset 'hetrec'")
        return load_hetrec(config.data_path)
    if config.dataset == "synthetic":
        return generate_synthetic(config.n_items, config.n_users, seed=config.seed)
    raise ValueError(f"BuildConfig.dataset must be 'synthetic' or 'hetrec', not {config.dataset!r}")


def light_model(models: tuple[tuple[str, int], ...]) -> str | None:
    """The cascade's light model: the one with the fewest trees when it has fewer than the default
    (the first); ``None`` otherwise."""
    version, trees = min(models, key=lambda m: m[1])
    return version if trees < models[0][1] else None


def candidate_sizes(params: RankingParams) -> CandidateSizes:
    """The served source sizes and query weights of one surface, for training's simulated queries."""
    return CandidateSizes(
        retrieval=params.retrieval_size,
        co_listen=params.co_listen_size,
        seed_neighbors=params.seed_neighbors_size,
        popularity=params.popularity_size,
        seed_weight=params.seed_weight,
        recent_weight=params.recent_weight,
    )


@dataclass(frozen=True)
class _Plan:
    replicas: int
    neighbors_k: int
    tune_als: bool
    baselines: tuple[str, ...]


#: What ``--engine spark`` runs on Spark (the manifest's ``dataset.build_plan.on_spark``).
SPARK_STAGES = ("split", "statistics", "popularity", "als", "neighbours", "ranker examples", "evaluation")

#: The Spark engine's baselines (ALS untuned). It runs 2 stage-A ranker replicas by default, not 8:
#: each refits ALS and the neighbour table, a Spark job of its own (tens of seconds on ``local[2]``
#: even for HetRec).
SPARK_BASELINES = ("popularity", "als")


def _chosen(value: T | None, default: T) -> T:
    return default if value is None else value


def _plan(config: BuildConfig, n_items: int) -> _Plan:
    large = n_items > LARGE_CATALOG
    spark = config.engine == "spark"  # untuned MLlib ALS and popularity, whatever the size (``_check``)

    return _Plan(
        replicas=_chosen(config.ranker_replicas, 1 if large else 2 if spark else 8),
        neighbors_k=_chosen(config.neighbors_k, 32 if large else 100),
        tune_als=_chosen(config.tune_als, not (large or spark)),
        baselines=_chosen(
            config.baselines, SPARK_BASELINES if large or spark else ("popularity", "itemknn", "ease", "als")
        ),
    )


def build_bundle(config: BuildConfig, log: Callable[[str], None] = print) -> Path:
    """Load or generate the data, train, evaluate, log the metrics table and write the bundle.

    Returns the bundle directory ``config.out_dir / version``. Progress lines go to ``log``
    with the elapsed seconds since the start.
    """
    _check(config)
    start = time.perf_counter()

    def step(message: str) -> None:
        log(f"[{time.perf_counter() - start:7.1f}s] {message}")

    spark: Any = None
    if config.engine == "spark":
        from models.spark.stages import SparkStages

        step(f"starting Spark ({config.spark_master})")
        spark = SparkStages(master=config.spark_master, popularity_limit=POPULARITY_LIMIT, conf=config.spark_conf)
    if config.input_path is not None:
        step(f"reading interactions from {config.input_path} on Spark")
        data = spark.read(config.input_path)
    else:
        step(f"loading dataset {config.dataset!r}")
        data = _load(config)
    step(f"dataset {data.name}: {data.n_users} users, {data.n_items} items, {data.n_interactions} interactions")
    version = config.version or f"{data.name}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    out = config.out_dir / version
    plan = _plan(config, data.n_items)

    split = (
        split_interactions(data.plays, seed=config.seed) if spark is None else spark.split(data.plays, seed=config.seed)
    )
    step(f"split ({config.engine}): " + ", ".join(f"{k}={v}" for k, v in split.summary().items()))

    als_base = AlsConfig(
        factors=config.factors, iterations=config.als_iterations, seed=config.seed, threads=config.threads
    )
    fit: StageFit = fit_stage
    examples: ExampleSampler = build_ranker_dataset
    if spark is None:
        fitted = fit_baselines(
            split,
            als_base,
            seed=config.seed,
            methods=plan.baselines,
            tune_als=plan.tune_als,
            log=lambda message: step(message),
        )
    else:
        fit, examples = spark.fit_stage, spark.examples
        fitted = _spark_baselines(split, als_base, spark)
    step(f"baselines tuned on the label part and refit on train+label: {', '.join(fitted.baselines)}")

    training = TrainingConfig(
        sizes={
            "home": candidate_sizes(DEFAULT_PARAMS[Surface.HOME]),
            "now_playing": candidate_sizes(DEFAULT_PARAMS[Surface.NOW_PLAYING]),
        },
        als=fitted.als_config,
        neighbors=NeighborConfig(k=plan.neighbors_k, method="ease" if spark is None else "cooccurrence"),
        ranker=RankerConfig(seed=config.seed, threads=config.threads),
        labels=LabelConfig(),
        models=config.models,
        ranker_users=config.ranker_users,
        replicas=plan.replicas,
        seed=config.seed,
    )
    trained = train_models(
        split,
        training,
        stage_a_embeddings=fitted.als_train,
        stage_b_embeddings=fitted.als_known,
        log=lambda message: step(message),
        fit=fit,
        examples=examples,
    )

    eval_users = subsample_users(
        split.users_with(split.test), config.eval_users, np.random.default_rng(config.seed + 2)
    )
    dataset_info: dict[str, Any] = {
        **data.summary(),
        "source": config.input_path or (str(config.data_path) if config.dataset == "hetrec" else "generated"),
        "split": split.summary(),
        "training": trained.info,
        "baselines": fitted.info,
        "build_plan": {
            "engine": config.engine,
            **({"spark_master": config.spark_master, "on_spark": list(SPARK_STAGES)} if spark is not None else {}),
            "index_type": config.index_type,
            "large_catalog": data.n_items > LARGE_CATALOG,
            "neighbor_method": effective_method(split.known, training.neighbors),
            "ranker_replicas": plan.replicas,
            "neighbors_k": plan.neighbors_k,
            "tune_als": plan.tune_als,
            "baselines": list(plan.baselines),
        },
    }
    # What the served model knows (and the server filters): each user's train + label items.
    known_indptr, known_items = known_from_csr(split.known)
    baselines: dict[str, Baseline] = dict(fitted.baselines)
    emb, tables = trained.embeddings, trained.tables

    contents = BundleContents(
        version=version,
        item_ids=data.item_ids,
        artist_ids=data.artist_ids,
        item_names=data.item_names,
        item_vectors=emb.item_vectors,
        item_stats=tables.item_stats,
        popularity=trained.popularity[:POPULARITY_LIMIT],
        models={v: r.onnx for v, r in trained.rankers.items()},
        default_model=trained.default_model,
        light_model=light_model(config.models),
        users=UserSnapshot(
            user_ids=data.user_ids,
            vectors=emb.user_vectors,
            stats=tables.user_stats,
            known_indptr=known_indptr,
            known_items=known_items,
        ),
        item_neighbors=trained.neighbors.neighbors,
        item_neighbor_weights=trained.neighbors.weights,
        item_negative_neighbors=trained.neighbors.negatives,
        item_negative_weights=trained.neighbors.negative_weights,
        dataset=dataset_info,
        index_type=config.index_type,
    )
    _stage_evaluate_publish(contents, out, split.test, eval_users, baselines, config.seed + 3, step, log, spark)
    step(f"bundle written to {out}")
    return out


def _spark_baselines(split: Any, als: AlsConfig, spark: Any) -> FittedBaselines:
    """The Spark engine's baselines: popularity and untuned ALS (fit on train for stage A and on
    train + label, served), the ALS fits on MLlib."""
    als_train = spark.als(split.train, als)
    als_known = spark.als(split.known, als)
    known = split.known
    return FittedBaselines(
        baselines={"popularity": fit_popularity(known), "als": AlsBaseline(known, als_known, als)},
        info={"tuned_on": "not tuned (--engine spark)", "als": {"chosen": als.summary(), "grid": []}},
        als_config=als,
        als_train=als_train,
        als_known=als_known,
    )


def _stage_evaluate_publish(
    contents: BundleContents,
    out: Path,
    test: Any,
    eval_users: Any,
    baselines: dict[str, Baseline],
    seed: int,
    step: Callable[[str], None],
    log: Callable[[str], None],
    spark: Any = None,
) -> dict[str, Any]:
    """Stage the bundle, load it as the server does, evaluate its served pipeline (here, or in
    Spark's executors when ``spark`` is given), then publish it with the evaluation in its manifest
    (one rename); a failure leaves nothing at ``out``."""
    staged = stage_bundle(contents, out)
    try:
        step(f"bundle staged in {staged.path.name}; loading it as the server does")
        step(f"evaluating the served pipeline on {len(eval_users)} users (limit {LIMIT}, two seeds each)")
        if spark is None:
            bundle = load_bundle(staged.path)
            summary = evaluate_bundle(bundle, test, eval_users, seed=seed, baselines=baselines, progress=log).summary
            del bundle
        else:
            summary = spark.evaluate(staged.path, test, eval_users, seed=seed, baselines=baselines, progress=log)
        for line in format_metrics_table(summary).splitlines():
            log("    " + line)
        finalize_bundle(staged, summary)
    except BaseException:
        discard_bundle(staged)
        raise
    return summary
