"""The co-listen neighbour table on Spark: ``models.item_neighbors``'s co-occurrence method.

Self-join of the plays frame on ``user`` → (i, j) sums of ``x_ui * x_uj`` and common-listener
counts → the similarity ``co / (n_i^(1-beta) * n_j^beta + shrink)`` → a window per item keeps the
``k`` best (ties by the smaller j). Only the top-k rows reach the driver; the item × item matrix
is never collected. The self-join costs sum over users of (items per user)²: cap heavy histories
upstream (``max_user_items``) on real-world data.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.item_neighbors import NeighborConfig, NeighborTable
from models.spark.interactions import columns


def build_neighbors_spark(
    frame: Any, n_items: int, config: NeighborConfig, *, max_user_items: int | None = None
) -> NeighborTable:
    """The co-occurrence table of a plays frame (``config.method`` is ignored: EASE's dense inverse
    does not distribute). ``max_user_items`` keeps each user's most played items only (``None``:
    all, as in-process). Raises ``ValueError`` on ``config.k < 1``."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if config.k < 1:
        raise ValueError("NeighborConfig.k must be >= 1")
    if config.weighting == "binary":
        x = frame.select("user", "item", F.lit(1.0).alias("w"))
    elif config.weighting == "log1p":
        x = frame.select("user", "item", F.log1p("plays").alias("w"))
    else:
        raise ValueError(f"NeighborConfig.weighting {config.weighting!r}: use 'binary' or 'log1p'")
    if max_user_items is not None:
        top = Window.partitionBy("user").orderBy(F.desc("w"), "item")
        x = x.withColumn("r", F.row_number().over(top)).where(F.col("r") <= max_user_items).drop("r")
    mass = x.groupBy("item").agg(F.count("*").alias("listeners"), F.sum(F.col("w") * F.col("w")).alias("mass"))
    eligible = mass.where(F.col("listeners") >= config.min_listeners)
    x = x.join(eligible.select("item"), "item").cache()
    a = x.select("user", F.col("item").alias("i"), F.col("w").alias("wi"))
    b = x.select("user", F.col("item").alias("j"), F.col("w").alias("wj"))
    pairs = (
        a.join(b, "user")
        .where(F.col("i") != F.col("j"))
        .groupBy("i", "j")
        .agg(F.sum(F.col("wi") * F.col("wj")).alias("co"), F.count("*").alias("common"))
        .where(F.col("common") >= config.min_common)
    )
    m_i = eligible.select(F.col("item").alias("i"), F.col("mass").alias("mi"))
    m_j = eligible.select(F.col("item").alias("j"), F.col("mass").alias("mj"))
    sim = (
        pairs.join(m_i, "i")
        .join(m_j, "j")
        .withColumn(
            "sim",
            (
                F.col("co").cast("float").cast("double")
                / (F.pow("mi", 1.0 - config.beta) * F.pow("mj", config.beta) + config.shrink)
            ).cast("float"),
        )
    )
    ranked = sim.withColumn("rank", F.row_number().over(Window.partitionBy("i").orderBy(F.desc("sim"), "j")) - 1)
    c = columns(ranked.where(F.col("rank") < config.k), "i", "rank", "j", "sim")
    x.unpersist()
    neighbors = np.full((n_items, config.k), -1, dtype=np.int32)
    weights = np.zeros((n_items, config.k), dtype=np.float32)
    rows, rank = c["i"].astype(np.int64), c["rank"].astype(np.int64)
    neighbors[rows, rank] = c["j"].astype(np.int32)
    weights[rows, rank] = c["sim"].astype(np.float32)
    return NeighborTable(neighbors, weights, np.full((n_items, 0), -1, np.int32), np.zeros((n_items, 0), np.float32))


__all__ = ["build_neighbors_spark"]
