"""Offline training: the two-stage recipe that produces what the bundle serves.

``train_models`` runs, for a ``Split`` (train / label / test per user, ``models.splits``):

- **Stage A** (fit the ranker, cross-fitted): ``replicas`` times, a small share
  (``replica_label_share``, default 4 % of all interactions) of each user's known items
  (``train + label``) is held out as labels (``models.splits.resplit_known``) and the candidate
  models — ALS (``models.als``), the item-neighbour table (``models.item_neighbors``), statistics
  and popularity (``models.tables``) — are fit on the rest; ranker queries are simulated for
  sampled users exactly as the served pipeline builds them and labelled from the held-out items
  (``models.ranker_data``). ``label_part_replica`` adds the classic replica (fit on ``train``,
  labels from ``label``). Holding out little keeps the replicas' candidate models close to the
  stage-B ones, so the features the ranker learns from look like the ones it is served: on HetRec
  the EASE-table co-listen features only helped the ranker that way (see the build's manifest).
- **Stage B** (what is served): the candidate models are refit on ``train + label`` with the same
  settings; the stage-A rankers (LightGBM ``lambdarank``, deterministic, thresholds snapped to
  float32, exported to ONNX and checked — ``models.ranker``) are applied on top of them.

``test`` is never read here. Hyper-parameters of ALS are chosen by the ALS baseline's tuning on
the label part (``models.baselines``) and passed in ``TrainingConfig.als``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from models.als import DEFAULT_ALS, AlsConfig, Embeddings, confidence, train_als
from models.item_neighbors import NeighborConfig, NeighborTable, build_item_neighbors
from models.ranker import (
    DEFAULT_MODEL,
    LITE_MODEL,
    MODEL_TREES,
    RankerConfig,
    RankerDataset,
    TrainedRanker,
    TrainingError,
    export_onnx,
    train_ranker,
)
from models.ranker_data import CandidateSizes, LabelConfig, StageModels, build_ranker_dataset
from models.splits import Split, resplit_known, split_interactions, subsample_users, users_with
from models.tables import Tables, compute_tables, popularity_order

I64 = npt.NDArray[np.int64]

#: Popularity entries kept per stage (and in the bundle).
POPULARITY_LIMIT = 1000


@dataclass(frozen=True)
class TrainingConfig:
    """Everything ``train_models`` needs; ``sizes`` are the served ``RankingParams`` per surface
    (keys ``"home"`` and ``"now_playing"``)."""

    sizes: Mapping[str, CandidateSizes]
    als: AlsConfig = DEFAULT_ALS
    neighbors: NeighborConfig = field(default_factory=NeighborConfig)
    ranker: RankerConfig = field(default_factory=RankerConfig)
    labels: LabelConfig = field(default_factory=LabelConfig)
    models: tuple[tuple[str, int], ...] = tuple(MODEL_TREES.items())
    ranker_users: int | None = 3000
    replicas: int = 8
    #: Share of each user's known items held out as labels per replica (None: the label part's).
    replica_label_share: float | None = 0.04 / 0.85
    label_part_replica: bool = False
    negatives: int | None = 100
    recent_share: float = 0.5
    seed: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "als": self.als.summary(),
            "item_neighbors": self.neighbors.summary(),
            "ranker": {
                **self.ranker.summary(),
                "objective": "lambdarank",
                "models": dict(self.models),
                "users_per_replica": self.ranker_users,
                "replicas": self.replicas,
                "replica_label_share": self.replica_label_share,
                "label_part_replica": self.label_part_replica,
                "negatives_per_query": self.negatives,
                "recent_share": self.recent_share,
                "now_playing_labels": self.labels.summary(),
                "candidate_sizes": {s: vars(c) for s, c in self.sizes.items()},
            },
        }


@dataclass(frozen=True)
class TrainedModels:
    """Stage-B artifacts (what the bundle serves) and the stage-A rankers."""

    embeddings: Embeddings
    tables: Tables
    popularity: I64
    neighbors: NeighborTable
    rankers: dict[str, TrainedRanker]
    default_model: str
    info: dict[str, Any]


def fit_stage(
    plays: sp.csr_matrix, als: AlsConfig, neighbors: NeighborConfig, embeddings: Embeddings | None = None
) -> StageModels:
    """Candidate models of one stage, all fit on ``plays`` (``embeddings``: reuse an ALS fit)."""
    plays = sp.csr_matrix(plays)
    tables = compute_tables(plays)
    return StageModels(
        plays=plays,
        embeddings=embeddings if embeddings is not None else train_als(plays, als),
        tables=tables,
        neighbors=build_item_neighbors(plays, neighbors),
        popularity=popularity_order(tables.listeners, POPULARITY_LIMIT),
    )


#: Fits one stage's candidate models: (plays, ALS config, neighbour config, reused ALS fit or None).
StageFit = Callable[[sp.csr_matrix, AlsConfig, NeighborConfig, Embeddings | None], StageModels]


class ExampleSampler(Protocol):
    """Builds one stage's ranker rows for sampled users (``build_ranker_dataset``'s signature)."""

    def __call__(
        self,
        stage: StageModels,
        labels_part: sp.csr_matrix,
        users: npt.NDArray[np.int64],
        rng: np.random.Generator,
        *,
        sizes: dict[str, CandidateSizes],
        labels: LabelConfig,
        recent_share: float = 0.5,
        negatives: int | None = 150,
    ) -> RankerDataset: ...


def train_models(
    split: Split,
    config: TrainingConfig,
    *,
    stage_a_embeddings: Embeddings | None = None,
    stage_b_embeddings: Embeddings | None = None,
    log: Callable[[str], None] = lambda _message: None,
    fit: StageFit = fit_stage,
    examples: ExampleSampler = build_ranker_dataset,
) -> TrainedModels:
    """Stage A → rankers, stage B → served artifacts (module docstring). Deterministic for a
    given split and config. ``stage_*_embeddings`` reuse ALS fits of ``config.als`` on ``train``
    / ``train + label`` (the ALS baseline's tuning already made them). ``fit`` computes each
    stage's candidate models and ``examples`` samples its ranker rows (``fit_stage`` and
    ``build_ranker_dataset`` in process; ``--engine spark`` passes its own)."""
    if not config.models:
        raise ValueError("TrainingConfig.models must name at least one ranker version")
    rng = np.random.default_rng(config.seed + 1)
    parts: list[RankerDataset] = []
    replica_info: list[dict[str, int]] = []
    plan: list[tuple[str, int]] = [("label part", 0)] if config.label_part_replica else []
    plan += [("re-split", replica) for replica in range(1, max(1, config.replicas) + 1)]
    for kind, replica in plan:
        if kind == "label part":
            train, label = split.train, split.label
        else:
            train, label = resplit_known(
                split, seed=config.seed + 1000 + replica, label_share=config.replica_label_share
            )
        stage = fit(train, config.als, config.neighbors, stage_a_embeddings if kind == "label part" else None)
        users = subsample_users(users_with(label), config.ranker_users, rng)
        try:
            data = examples(
                stage,
                label,
                users,
                rng,
                sizes=dict(config.sizes),
                labels=config.labels,
                recent_share=config.recent_share,
                negatives=config.negatives,
            )
        except TrainingError:
            log(f"ranker replica {replica} ({kind}): no labelled query, skipped")
            continue
        parts.append(data)
        replica_info.append({"users": int(users.size), "queries": data.n_queries, "rows": int(data.labels.size)})
        log(
            f"ranker replica {replica} ({kind}): {users.size} users, {data.n_queries} queries, "
            f"{data.labels.size} rows, {int(np.sum(data.labels > 0))} positives"
        )
    dataset = RankerDataset.concat(parts)

    rankers: dict[str, TrainedRanker] = {}
    for version, trees in config.models:
        rankers[version] = train_ranker(dataset, version=version, n_trees=trees, config=config.ranker)
        log(f"ranker {version}: {trees} trees, ONNX export checked against LightGBM")

    served = fit(split.known, config.als, config.neighbors, stage_b_embeddings)
    if served.popularity.size == 0:
        raise TrainingError("the data has no interactions to train on")
    log(f"stage B: ALS, statistics and neighbour table (coverage {served.neighbors.coverage():.3f}) on train+label")
    info = config.summary()
    info["ranker"]["replica_data"] = replica_info
    info["ranker"]["queries"] = dataset.n_queries
    info["ranker"]["rows"] = int(dataset.labels.size)
    info["stages"] = {
        "A": "per replica: candidate models on train+label minus a held-out share, ranker labels = that share",
        "B": "candidate models refit on train+label (served), the stage-A rankers on top",
    }
    return TrainedModels(
        embeddings=served.embeddings,
        tables=served.tables,
        popularity=served.popularity,
        neighbors=served.neighbors,
        rankers=rankers,
        default_model=config.models[0][0],
        info=info,
    )


def train_embeddings(
    plays: sp.csr_matrix,
    *,
    factors: int = 64,
    iterations: int = 15,
    seed: int = 0,
    threads: int = 2,
) -> Embeddings:
    """ALS with the default settings (``models.als.DEFAULT_ALS``) and the given size and seed."""
    config = AlsConfig(factors=factors, iterations=iterations, seed=seed, threads=threads)
    return train_als(plays, config)


__all__ = [
    "DEFAULT_MODEL",
    "LITE_MODEL",
    "MODEL_TREES",
    "POPULARITY_LIMIT",
    "CandidateSizes",
    "Embeddings",
    "LabelConfig",
    "Split",
    "StageFit",
    "Tables",
    "TrainedModels",
    "TrainedRanker",
    "TrainingConfig",
    "TrainingError",
    "compute_tables",
    "confidence",
    "export_onnx",
    "fit_stage",
    "popularity_order",
    "split_interactions",
    "subsample_users",
    "train_embeddings",
    "train_models",
]
