"""Ranker training examples sampled in Spark: ``models.ranker_data.build_ranker_dataset`` run per
partition of the sampled users in the executors (``encore build --engine spark``).

The stage's candidate models and the label part are broadcast; each partition draws from its own
generator, seeded by (the build's draw, the partition index), so the sample is deterministic for
a given seed and partition count, and with one partition it is exactly the in-process sample.
Only the sampled rows (features, graded labels, query sizes) come back to the driver, where
LightGBM trains on them.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from models.ranker import RankerDataset, TrainingError
from models.ranker_data import CandidateSizes, LabelConfig, StageModels, build_ranker_dataset

I64 = npt.NDArray[np.int64]

__all__ = ["ranker_dataset_spark"]


def ranker_dataset_spark(
    spark: Any,
    stage: StageModels,
    labels_part: sp.csr_matrix,
    users: I64,
    seed: int,
    *,
    sizes: dict[str, CandidateSizes],
    labels: LabelConfig,
    recent_share: float,
    negatives: int | None,
    partitions: int | None = None,
) -> RankerDataset:
    """The ranker rows of ``users`` (module docstring), built in ``partitions`` Spark tasks
    (default: the session's parallelism). Raises ``TrainingError`` when no query has a positive."""
    context = spark.sparkContext
    users = np.asarray(users, dtype=np.int64)
    n_parts = max(1, min(partitions or context.defaultParallelism, max(1, users.size)))
    shared = context.broadcast((stage, labels_part))
    task = partial(_partition_rows, shared, seed, sizes, labels, recent_share, negatives)
    try:
        blobs = context.parallelize(users.tolist(), n_parts).mapPartitionsWithIndex(task).collect()
    finally:
        shared.destroy()
    return RankerDataset.concat([pickle.loads(blob) for blob in blobs])


def _partition_rows(
    shared: Any,
    seed: int,
    sizes: dict[str, CandidateSizes],
    labels: LabelConfig,
    recent_share: float,
    negatives: int | None,
    index: int,
    users: Iterator[int],
) -> Iterator[bytes]:
    """Executor side: one partition's rows, pickled (nothing when none of its queries has a positive)."""
    stage, labels_part = shared.value
    mine = np.fromiter(users, dtype=np.int64)
    if mine.size == 0:
        return iter(())
    try:
        data = build_ranker_dataset(
            stage,
            labels_part,
            mine,
            np.random.default_rng([seed, index]),
            sizes=sizes,
            labels=labels,
            recent_share=recent_share,
            negatives=negatives,
        )
    except TrainingError:
        return iter(())
    return iter([pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)])
