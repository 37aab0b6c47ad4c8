"""The build's heavy stages on Spark, handing driver arrays to the in-process training and bundle
code (``models.build``, ``--engine spark``).

``SparkStages`` runs: reading ``--input`` (``read_interactions``), the per-user split
(``split``), and each training stage's candidate models (``fit_stage``: statistics, popularity,
ALS, the co-occurrence neighbour table), every one from a plays frame in Spark, a sample of ranker
examples per stage (``examples``: ``build_ranker_dataset`` per partition of users) and the evaluation
(``evaluate``: the served pipeline in the executors, per-user metrics averaged by Spark).
LightGBM, the ONNX export and FAISS stay on the driver.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from common.spark import spark_session
from features.datasets import Interactions
from models.als import AlsConfig, Embeddings
from models.evaluation import Baseline
from models.item_neighbors import NeighborConfig
from models.ranker import RankerDataset
from models.ranker_data import CandidateSizes, LabelConfig, StageModels
from models.spark.als import train_als_spark
from models.spark.evaluation import evaluate_bundle_spark
from models.spark.examples import ranker_dataset_spark
from models.spark.interactions import collect_split, plays_frame, read_interactions, split_frame
from models.spark.neighbors import build_neighbors_spark
from models.spark.tables import compute_tables_spark, popularity_spark
from models.splits import Split


@dataclass
class SparkStages:
    """Spark stages on one session (``common.spark.spark_session(master, conf=conf)`` unless
    ``spark`` is given)."""

    master: str = "local[2]"
    popularity_limit: int = 1000
    spark: Any = None
    conf: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.spark is None:
            self.spark = spark_session(self.master, app_name="encore-build", conf=self.conf)

    def read(self, path: str) -> Interactions:
        """``--input``: Parquet or CSV interactions (``models.spark.interactions``)."""
        return read_interactions(self.spark, path)

    def split(self, plays: sp.csr_matrix, *, seed: int) -> Split:
        """The per-user train / label / test split computed in Spark, collected as CSR."""
        frame = plays_frame(self.spark, plays)
        return collect_split(split_frame(frame, seed=seed), plays.shape)

    def als(self, plays: sp.csr_matrix, config: AlsConfig) -> Embeddings:
        """ALS of ``plays`` on MLlib."""
        frame = plays_frame(self.spark, plays).cache()
        try:
            return train_als_spark(frame, plays.shape, config)
        finally:
            frame.unpersist()

    def evaluate(
        self,
        bundle_path: Path,
        test: sp.csr_matrix,
        users: npt.NDArray[np.int64],
        *,
        seed: int,
        baselines: Mapping[str, Baseline],
        progress: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """The staged bundle's evaluation, ranked in the executors and averaged by Spark."""
        return evaluate_bundle_spark(
            self.spark, bundle_path, test, users, seed=seed, baselines=baselines, progress=progress
        )

    def examples(
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
    ) -> RankerDataset:
        """``models.training.ExampleSampler`` in Spark: one draw of ``rng`` seeds the partitions."""
        return ranker_dataset_spark(
            self.spark,
            stage,
            labels_part,
            users,
            int(rng.integers(2**62)),
            sizes=sizes,
            labels=labels,
            recent_share=recent_share,
            negatives=negatives,
        )

    def fit_stage(
        self, plays: sp.csr_matrix, als: AlsConfig, neighbors: NeighborConfig, embeddings: Embeddings | None = None
    ) -> StageModels:
        """``models.training.fit_stage`` with every candidate model computed in Spark."""
        plays = sp.csr_matrix(plays)
        frame = plays_frame(self.spark, plays).cache()
        try:
            tables = compute_tables_spark(frame, plays.shape)
            return StageModels(
                plays=plays,
                embeddings=embeddings if embeddings is not None else train_als_spark(frame, plays.shape, als),
                tables=tables,
                neighbors=build_neighbors_spark(frame, plays.shape[1], neighbors),
                popularity=popularity_spark(frame, self.popularity_limit),
            )
        finally:
            frame.unpersist()


__all__ = ["SparkStages"]
