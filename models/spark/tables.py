"""Item / user statistics and the popularity order on Spark (``models.tables``'s definitions)."""

from __future__ import annotations

from typing import Any

import numpy as np

from models.spark.interactions import columns
from models.tables import Tables


def compute_tables_spark(frame: Any, shape: tuple[int, int]) -> Tables:
    """``ITEM_STATS`` / ``USER_STATS`` and listener counts of a plays frame, aggregated in Spark
    (one row per item and per user reaches the driver)."""
    from pyspark.sql import functions as F

    def stats(key: str, n: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        agg = frame.groupBy(key).agg(F.count("*").alias("count"), F.sum("plays").alias("plays"))
        c = columns(agg, key, "count", "plays")
        count = np.zeros(n, dtype=np.int64)
        total = np.zeros(n, dtype=np.float64)
        idx = c[key].astype(np.int64)
        count[idx] = c["count"].astype(np.int64)
        total[idx] = c["plays"].astype(np.float64)
        return count, total

    listeners, item_plays = stats("item", shape[1])
    n_items_user, user_plays = stats("user", shape[0])
    item_stats = np.column_stack((np.log1p(listeners), np.log1p(item_plays / np.maximum(listeners, 1))))
    user_stats = np.column_stack((np.log1p(n_items_user), np.log1p(user_plays / np.maximum(n_items_user, 1))))
    return Tables(
        item_stats=item_stats.astype(np.float32), user_stats=user_stats.astype(np.float32), listeners=listeners
    )


def popularity_spark(frame: Any, limit: int) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Items by listener count, most popular first, ties by index; ``limit`` reach the driver."""
    from pyspark.sql import functions as F

    top = frame.groupBy("item").agg(F.count("*").alias("n")).orderBy(F.desc("n"), "item").limit(limit)
    return np.asarray([row["item"] for row in top.collect()], dtype=np.int64)


__all__ = ["compute_tables_spark", "popularity_spark"]
