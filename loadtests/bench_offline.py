"""``make bench-offline``: each offline build stage, in process vs Spark, at multiples of HetRec.

Stages: the per-user split, statistics + popularity, ALS, the co-listen neighbour table
(co-occurrence, k = 50), the ranker's training examples for 3,000 users (from the stages' own
results), on synthetic data at ``--scales`` × the HetRec size (1,892 users,
17,632 items, ~92,834 plays). Spark's times include turning the driver matrix into a DataFrame
and collecting the result (what the build pays); the session start-up is reported once. Prints
seconds and plays/s per stage and engine and which engine wins.

    python -m loadtests.bench_offline [--scales 1,10] [--stages split,statistics,als,neighbours,examples]
        [--spark-master local[2]] [--spark-conf spark.KEY=V] [--factors 32]

``--stages`` times a subset; the stages the examples start from still run (untimed, in process).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from common.spark import parse_spark_conf
from features.synthetic import generate_synthetic
from models.als import AlsConfig, train_als
from models.build import candidate_sizes
from models.item_neighbors import NeighborConfig, build_item_neighbors
from models.ranker_data import LabelConfig, StageModels, build_ranker_dataset
from models.splits import split_interactions
from models.tables import compute_tables, popularity_order
from ranking.assembly import DEFAULT_PARAMS

HETREC_USERS, HETREC_ITEMS, HETREC_PLAYS = 1892, 17_632, 92_834
#: Users whose ranker examples are built (the build's default ``ranker_users`` per replica).
EXAMPLE_USERS = 3000
STAGES = ("split", "statistics", "als", "neighbours", "examples")
SIZES = {surface.value: candidate_sizes(params) for surface, params in DEFAULT_PARAMS.items()}


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(
    scales: list[int],
    master: str,
    factors: int,
    iterations: int,
    conf: dict[str, str] | None = None,
    selected: set[str] | None = None,
) -> list[dict[str, Any]]:
    """One row per (scale, stage): seconds and plays/s for each engine."""
    from common.spark import spark_session

    started = time.perf_counter()
    spark = spark_session(master, app_name="encore-bench-offline", conf=conf)
    print(f"Spark session on {master}: {time.perf_counter() - started:.1f} s (once)", flush=True)
    als = AlsConfig(factors=factors, iterations=iterations)
    neighbors = NeighborConfig(k=50, method="cooccurrence")
    rows: list[dict[str, Any]] = []
    for scale in scales:
        rows += _bench_scale(spark, scale, als, neighbors, selected or set(STAGES))
    return rows


def _bench_scale(
    spark: Any, scale: int, als: AlsConfig, neighbors: NeighborConfig, selected: set[str]
) -> list[dict[str, Any]]:
    from models.spark.als import train_als_spark
    from models.spark.examples import ranker_dataset_spark
    from models.spark.interactions import columns, plays_frame, split_frame
    from models.spark.neighbors import build_neighbors_spark
    from models.spark.tables import compute_tables_spark, popularity_spark

    rows: list[dict[str, Any]] = []
    data = generate_synthetic(
        HETREC_ITEMS * scale,
        HETREC_USERS * scale,
        mean_items_per_user=round(HETREC_PLAYS / HETREC_USERS),
        seed=0,
    )
    plays, shape = data.plays, data.plays.shape

    def in_spark(body: Callable[[Any], Any]) -> Callable[[], Any]:
        def go() -> Any:
            frame = plays_frame(spark, plays).cache()
            try:
                return body(frame)
            finally:
                frame.unpersist()

        return go

    made: dict[str, Any] = {}

    def keep(name: str, value: Any) -> Any:
        made[name] = value
        return value

    def examples(spark_engine: bool) -> Callable[[], Any]:
        """The ranker's examples for EXAMPLE_USERS labelled users, from the stages made above."""

        def go() -> Any:
            split = made["split"]
            stage = StageModels(
                plays=split.train,
                embeddings=made["als"],
                tables=compute_tables(split.train),
                neighbors=made["neighbours"],
                popularity=made["popularity"],
            )
            users = np.flatnonzero(np.diff(split.label.indptr) > 0)[:EXAMPLE_USERS]
            kwargs: dict[str, Any] = {"sizes": SIZES, "labels": LabelConfig(), "recent_share": 0.5, "negatives": 100}
            if spark_engine:
                return ranker_dataset_spark(spark, stage, split.label, users, 0, **kwargs)
            return build_ranker_dataset(stage, split.label, users, np.random.default_rng(0), **kwargs)

        return go

    stages: list[tuple[str, str, Callable[[], Any], Callable[[], Any]]] = [
        (
            "split",
            "split",
            lambda: keep("split", split_interactions(plays, seed=0)),
            in_spark(lambda f: columns(split_frame(f, seed=0), "user", "item", "part")),
        ),
        (
            "statistics",
            "statistics+popularity",
            lambda: keep("popularity", popularity_order(compute_tables(plays).listeners, 1000)),
            in_spark(lambda f: (compute_tables_spark(f, shape), popularity_spark(f, 1000))),
        ),
        (
            "als",
            "als",
            lambda: keep("als", train_als(plays, als)),
            in_spark(lambda f: train_als_spark(f, shape, als)),
        ),
        (
            "neighbours",
            "neighbours",
            lambda: keep("neighbours", build_item_neighbors(plays, neighbors)),
            in_spark(lambda f: build_neighbors_spark(f, shape[1], neighbors)),
        ),
        ("examples", f"ranker examples ({EXAMPLE_USERS} u)", examples(False), examples(True)),
    ]
    for key, name, local, distributed in stages:
        if key not in selected:
            if "examples" in selected and key != "examples":
                local()  # untimed: the examples stage starts from its result
            continue
        t_local, t_spark = _timed(local), _timed(distributed)
        row = {
            "scale": scale,
            "plays": int(plays.nnz),
            "stage": name,
            "inprocess_s": t_local,
            "spark_s": t_spark,
            "winner": "inprocess" if t_local <= t_spark else "spark",
        }
        rows.append(row)
        print(_line(row), flush=True)
    return rows


def _line(row: dict[str, Any]) -> str:
    plays = row["plays"]
    return (
        f"{row['scale']:>4}x  {plays:>10,}  {row['stage']:<24} "
        f"{row['inprocess_s']:>8.2f}s {plays / row['inprocess_s']:>12,.0f}/s  "
        f"{row['spark_s']:>8.2f}s {plays / row['spark_s']:>12,.0f}/s  {row['winner']}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scales", default="1,10", help="comma-separated multiples of the HetRec size")
    parser.add_argument("--spark-master", default="local[2]")
    parser.add_argument("--spark-conf", action="append", help="spark.KEY=VALUE, repeatable: spark.driver.memory=8g")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    parser.add_argument("--factors", type=int, default=32)
    parser.add_argument("--iterations", type=int, default=10)
    args = parser.parse_args(argv)
    scales = [int(s) for s in args.scales.split(",") if s.strip()]
    if not scales or min(scales) < 1:
        parser.error("--scales must list positive integers, e.g. 1,10")
    selected = {s.strip() for s in args.stages.split(",") if s.strip()}
    if not selected or not selected <= set(STAGES):
        parser.error(f"--stages must name some of {','.join(STAGES)}, got {args.stages!r}")
    print(f"{'scale':>5}  {'plays':>10}  {'stage':<24} {'in-process':>24}  {'spark ' + args.spark_master:>24}  winner")
    run(scales, args.spark_master, args.factors, args.iterations, parse_spark_conf(args.spark_conf), selected)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
