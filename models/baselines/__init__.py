"""Strong simple baselines, evaluated beside the served pipeline (``models.evaluation``).

Each exposes ``rank(user, seed, exclude, n) -> item indices`` (``models.evaluation.Baseline``):

- ``popularity``: listener counts (the seed is ignored, only excluded);
- ``itemknn``: cosine item–item kNN on log1p plays with shrinkage (``itemknn.py``);
- ``ease``: EASE on binary plays (``ease.py``);
- ``als``: ALS vectors ranked by the served retrieval query, no ranker (``als.py``).

Now Playing (``base.py``): ``(1 - w) * unit(user scores) + w * unit(seed scores)`` with the
served seed weight ``w = 0.7`` (ALS: the served query blend itself); popularity has no seed term.

``fit_baselines`` tunes each on the label part (fit on ``train``, Home NDCG@10 against ``label``,
train items excluded, for a seeded sample of users) and refits the chosen configuration on
``train + label`` — the data the served model is fit on — so the evaluation compares equals.
The chosen ALS configuration and its two fits are returned for the served model to reuse.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from models.als import AlsConfig, Embeddings, train_als
from models.baselines.als import AlsBaseline, als_grid
from models.baselines.base import ScoringBaseline, TuningResult, label_metrics, top_n, tune
from models.baselines.ease import EASE_GRID, EaseBaseline, EaseConfig, fit_ease
from models.baselines.itemknn import ITEMKNN_GRID, ItemKnnBaseline, ItemKnnConfig, fit_itemknn
from models.baselines.popularity import PopularityBaseline, fit_popularity
from models.splits import Split, subsample_users, users_with


@dataclass(frozen=True)
class FittedBaselines:
    """Baselines refit on train+label, the tuning record, and the tuned ALS fits."""

    baselines: dict[str, ScoringBaseline]
    info: dict[str, Any]
    als_config: AlsConfig
    als_train: Embeddings  # the chosen configuration fit on train (stage A)
    als_known: Embeddings  # ... and on train+label (stage B, served)


def fit_baselines(
    split: Split,
    als_base: AlsConfig,
    *,
    tune_users: int | None = 1000,
    seed: int = 0,
    methods: tuple[str, ...] = ("popularity", "itemknn", "ease", "als"),
    tune_als: bool = True,
    itemknn_k: int = 200,
    ease_max_items: int = 8000,
    log: Callable[[str], None] = lambda _message: None,
) -> FittedBaselines:
    """Tune on the label part, refit on train+label (module docstring). ``als`` is always fit
    (the served model needs it); ``tune_als=False`` keeps ``als_base`` as is."""
    known = split.known
    users = subsample_users(users_with(split.label), tune_users, np.random.default_rng(seed + 17))
    baselines: dict[str, ScoringBaseline] = {}
    info: dict[str, Any] = {
        "tuned_on": "label part (fit on train, train items excluded)",
        "tune_users": int(users.size),
    }

    if "popularity" in methods:
        baselines["popularity"] = fit_popularity(known)
        label = label_metrics(fit_popularity(split.train), split.train, split.label, users)
        info["popularity"] = {"chosen": {}, "label": label}
    if "itemknn" in methods:
        grid = tuple(replace(c, k=itemknn_k) for c in ITEMKNN_GRID)
        knn = tune(fit_itemknn, grid, ItemKnnConfig.summary, split.train, split.label, users, log, "itemknn")
        baselines["itemknn"] = fit_itemknn(known, knn.best)
        info["itemknn"] = {"chosen": knn.best.summary(), "grid": knn.table}
        log(f"baseline itemknn: {knn.best.summary()}")
    if "ease" in methods:
        grid_e = tuple(replace(c, max_items=ease_max_items) for c in EASE_GRID)
        ease = tune(fit_ease, grid_e, EaseConfig.summary, split.train, split.label, users, log, "ease")
        baselines["ease"] = fit_ease(known, ease.best)
        info["ease"] = {"chosen": ease.best.summary(), "grid": ease.table}
        log(f"baseline ease: {ease.best.summary()}")

    # ALS: keep every stage-A fit so the chosen one is not fit twice.
    fits: dict[AlsConfig, Embeddings] = {}

    def fit_als_cached(history: Any, config: AlsConfig) -> ScoringBaseline:
        fits[config] = train_als(history, config)
        return AlsBaseline(history, fits[config], config)

    grid_a = als_grid(als_base) if tune_als else (als_base,)
    als_tuning: TuningResult[AlsConfig] = tune(
        fit_als_cached, grid_a, AlsConfig.summary, split.train, split.label, users, log, "als"
    )
    chosen = als_tuning.best
    als_known = train_als(known, chosen)
    if "als" in methods:
        baselines["als"] = AlsBaseline(known, als_known, chosen)
    info["als"] = {"chosen": chosen.summary(), "grid": als_tuning.table}
    log(f"baseline als: {chosen.summary()}")
    return FittedBaselines(
        baselines=baselines, info=info, als_config=chosen, als_train=fits[chosen], als_known=als_known
    )


__all__ = [
    "AlsBaseline",
    "EaseBaseline",
    "FittedBaselines",
    "ItemKnnBaseline",
    "PopularityBaseline",
    "ScoringBaseline",
    "fit_baselines",
    "top_n",
]
