"""Interactions as Spark DataFrames: reading, converting, the per-user split, collecting back.

A plays frame has columns ``user`` (int, row index), ``item`` (int, column index) and ``plays``
(float, > 0), one row per (user, item). ``split_frame`` gives each row a ``part`` (0 train,
1 label, 2 test) with ``models.splits.split_interactions``'s semantics: a user with at least
``min_items`` items gets ``max(1, round(share * n))`` test and label items (round half to even,
as ``np.rint``), drawn at random per user (seeded); the random draws differ from numpy's, so the
parts are the same size per user but not the same items.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from features.datasets import DatasetError, Interactions, interactions_from_triples
from models.splits import Split

TRAIN, LABEL, TEST = 0, 1, 2
#: Columns an ``--input`` file must have (``artist_id`` and ``name`` are optional).
INPUT_COLUMNS = ("user_id", "item_id", "plays")


def plays_frame(spark: Any, plays: sp.csr_matrix) -> Any:
    """A plays frame from a CSR users × items matrix (zeros dropped), via Arrow."""
    coo = sp.coo_matrix(plays)
    keep = coo.data > 0
    table = pa.table(
        {
            "user": coo.row[keep].astype(np.int32),
            "item": coo.col[keep].astype(np.int32),
            "plays": coo.data[keep].astype(np.float64),
        }
    )
    return spark.createDataFrame(table)


def columns(frame: Any, *names: str) -> dict[str, np.ndarray[Any, Any]]:
    """Collect ``names`` of ``frame`` to the driver as numpy arrays (Arrow, no pandas); list
    columns (ALS factors) come back as 2-d arrays."""
    table = frame.select(*names).toArrow()
    out: dict[str, np.ndarray[Any, Any]] = {}
    for name in names:
        column = table.column(name).combine_chunks()
        if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
            flat = column.flatten().to_numpy(zero_copy_only=False)
            out[name] = flat.reshape(len(column), -1) if len(column) else flat.reshape(0, 0)
        else:
            out[name] = column.to_numpy(zero_copy_only=False)
    return out


def collect_csr(frame: Any, shape: tuple[int, int]) -> sp.csr_matrix:
    """The float32 CSR of a plays frame (duplicates summed, indices sorted), collected via Arrow."""
    c = columns(frame, "user", "item", "plays")
    return interactions_from_triples(c["user"], c["item"], c["plays"], shape[0], shape[1])


def read_interactions(spark: Any, path: str) -> Interactions:
    """Read ``--input PATH`` (Parquet, or CSV with a header; any path Spark reads) with columns
    ``user_id``, ``item_id``, ``plays`` (optional ``artist_id``, ``name``). Ids are indexed in
    sorted order; duplicate (user, item) rows sum. Raises ``DatasetError`` naming ``--input``."""
    from pyspark.sql import functions as F

    is_csv = path.rstrip("/").endswith((".csv", ".csv.gz", ".tsv"))
    reader = spark.read.option("header", "true").option("inferSchema", "true")
    try:
        raw = reader.csv(path, sep="\t" if path.endswith(".tsv") else ",") if is_csv else spark.read.parquet(path)
    except Exception as exc:
        raise DatasetError(Path(path), f"--input: Spark cannot read it ({type(exc).__name__})") from exc
    missing = [c for c in INPUT_COLUMNS if c not in raw.columns]
    if missing:
        raise DatasetError(Path(path), f"--input: missing columns {missing} (has {raw.columns})")
    raw = raw.withColumn("user_id", F.col("user_id").cast("string")).withColumn(
        "item_id", F.col("item_id").cast("string")
    )
    users = _index(raw, "user_id")
    items = _index(raw, "item_id")
    meta = [c for c in ("artist_id", "name") if c in raw.columns]
    if meta:
        items = items.join(raw.groupBy("item_id").agg(*(F.first(c).cast("string").alias(c) for c in meta)), "item_id")
    triples = (
        raw.groupBy("user_id", "item_id")
        .agg(F.sum(F.col("plays").cast("double")).alias("plays"))
        .where(F.col("plays") > 0)
        .join(users, "user_id")
        .join(items.select("item_id", "idx").withColumnRenamed("idx", "item"), "item_id")
        .withColumnRenamed("idx", "user")
    )
    user_ids = [str(v) for v in users.orderBy("idx").toArrow().column("user_id").to_pylist()]
    item_table = items.orderBy("idx").toArrow()
    item_ids = [str(v) for v in item_table.column("item_id").to_pylist()]

    def meta_column(name: str) -> list[str]:
        if name not in item_table.column_names:
            return item_ids
        return ["" if v is None else str(v) for v in item_table.column(name).to_pylist()]

    shape = (len(user_ids), len(item_ids))
    return Interactions(
        user_ids=user_ids,
        item_ids=item_ids,
        artist_ids=meta_column("artist_id"),
        item_names=meta_column("name"),
        plays=collect_csr(triples, shape),
        name=f"input-{Path(path.rstrip('/')).stem}",
    )


def _index(frame: Any, column: str) -> Any:
    """Distinct values of ``column`` with a dense 0-based ``idx`` in sorted order (zipWithIndex:
    no single-partition window)."""
    distinct = frame.select(column).distinct().orderBy(column)
    return distinct.rdd.zipWithIndex().map(lambda pair: (pair[0][0], int(pair[1]))).toDF([column, "idx"])


def split_frame(
    frame: Any,
    *,
    seed: int,
    label_share: float = 0.15,
    test_share: float = 0.15,
    min_items: int = 5,
) -> Any:
    """``frame`` with a ``part`` column (module docstring); one window per user, no collect."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    by_user = Window.partitionBy("user")
    ordered = by_user.orderBy(F.rand(seed), "item")
    counted = frame.withColumn("n", F.count("*").over(by_user)).withColumn("position", F.row_number().over(ordered) - 1)

    def share(fraction: float) -> Any:
        if fraction <= 0:
            return F.lit(0)
        return F.when(F.col("n") >= min_items, F.greatest(F.lit(1.0), F.bround(F.col("n") * fraction, 0))).otherwise(0)

    n_test, n_label = share(test_share), share(label_share)
    part = F.when(F.col("position") < n_test, TEST).when(F.col("position") < n_test + n_label, LABEL).otherwise(TRAIN)
    return counted.withColumn("part", part).drop("n", "position")


def collect_split(parts: Any, shape: tuple[int, int]) -> Split:
    """The ``Split`` (driver CSR matrices) of a frame with a ``part`` column."""
    c = columns(parts, "user", "item", "plays", "part")

    def matrix(part: int) -> sp.csr_matrix:
        rows = c["part"] == part
        return interactions_from_triples(c["user"][rows], c["item"][rows], c["plays"][rows], shape[0], shape[1])

    return Split(train=matrix(TRAIN), label=matrix(LABEL), test=matrix(TEST))


__all__ = [
    "INPUT_COLUMNS",
    "collect_csr",
    "collect_split",
    "columns",
    "plays_frame",
    "read_interactions",
    "split_frame",
]
