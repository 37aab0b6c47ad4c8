"""ALS on Spark MLlib (``pyspark.ml.recommendation.ALS``, ``implicitPrefs=True``, seeded).

The confidence is ``models.als``'s (binary or log1p plays; ``alpha`` applied by ALS as
``1 + alpha * r``). MLlib scales the L2 penalty by each row's number of ratings (ALS-WR), where
``implicit`` applies ``regularization`` as is; ``reg_param`` maps one to the other by the mean
ratings per user, so ``AlsConfig.regularization`` keeps its meaning on average. The factors differ
from ``implicit``'s (other initialisation and solver): compare rankings, not vectors.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.als import AlsConfig, Embeddings
from models.spark.interactions import columns


def reg_param(config: AlsConfig, ratings: int, users: int) -> float:
    """MLlib's ``regParam`` standing for ``config.regularization`` (module docstring)."""
    return float(config.regularization) / max(1.0, ratings / max(users, 1))


def _vectors(factors: Any, n: int, dim: int) -> np.ndarray[Any, np.dtype[np.float32]]:
    c = columns(factors, "id", "features")
    out = np.zeros((n, dim), dtype=np.float32)
    if c["id"].size:
        out[c["id"].astype(np.int64)] = c["features"].astype(np.float32)
    return out


def train_als_spark(frame: Any, shape: tuple[int, int], config: AlsConfig) -> Embeddings:
    """Fit ALS on a plays frame (``models.spark.interactions``) and collect float32 vectors;
    users and items without plays get zero vectors. Unknown ``config.confidence`` (MLlib has no
    BM25 here) raises ``ValueError`` naming the setting."""
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import functions as F

    if config.confidence == "binary":
        rated = frame.withColumn("rating", F.lit(1.0))
    elif config.confidence == "log1p":
        rated = frame.withColumn("rating", F.log1p("plays"))
    else:
        raise ValueError(f"AlsConfig.confidence {config.confidence!r} is not supported by --engine spark")
    rated = rated.select("user", "item", "rating").cache()
    ratings = rated.count()
    users = rated.select("user").distinct().count()
    als = ALS(
        rank=config.factors,
        maxIter=config.iterations,
        regParam=reg_param(config, ratings, users),
        alpha=config.alpha,
        implicitPrefs=True,
        seed=config.seed,
        userCol="user",
        itemCol="item",
        ratingCol="rating",
        coldStartStrategy="drop",
        nonnegative=False,
    )
    model = als.fit(rated)
    items = _vectors(model.itemFactors, shape[1], config.factors)
    user_vectors = _vectors(model.userFactors, shape[0], config.factors)
    rated.unpersist()
    return Embeddings(
        item_vectors=items,
        user_vectors=user_vectors,
        item_norms=np.linalg.norm(items, axis=1).astype(np.float32),
    )


__all__ = ["reg_param", "train_als_spark"]
