"""``encore build --engine spark`` (local[2]) against the in-process build on the same small data.

One SparkSession per module (the build's ``getOrCreate`` reuses it). Tolerances, stated:

- the split: per-user part sizes identical to ``split_interactions`` (the items differ: other
  random draws);
- the co-listen table: Spark's and the in-process co-occurrence tables on the same matrix share
  ≥ 95 % of their top-10 neighbours (only float rounding at ties may reorder);
- the bundles: same catalogue and users; the served neighbour lists (EASE in process,
  co-occurrence on Spark) overlap ≥ 30 % at 10; served Home / Now Playing NDCG@10 within 25 %
  relative and recall@100 within 15 % relative (ALS implementations differ: MLlib's ALS-WR
  regularisation and initialisation vs ``implicit``, and the Spark build does not tune ALS).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cli.main import main
from features.datasets import DatasetError
from features.synthetic import generate_synthetic
from models.bundle import Bundle, load_bundle
from models.item_neighbors import NeighborConfig, build_item_neighbors
from models.spark.interactions import plays_frame, read_interactions, split_frame
from models.spark.neighbors import build_neighbors_spark
from models.splits import split_interactions

pytestmark = pytest.mark.integration

N_ITEMS, N_USERS = 1500, 600
COMMON = ["--n-items", str(N_ITEMS), "--n-users", str(N_USERS), "--factors", "16", "--seed", "3"]
COMMON += ["--ranker-users", "200", "--eval-users", "250", "--ranker-replicas", "1"]
NEIGHBOR_OVERLAP_SAME_METHOD = 0.95
NEIGHBOR_OVERLAP_BUNDLES = 0.30
NDCG_REL_TOL = 0.25
RECALL_REL_TOL = 0.15


@pytest.fixture(scope="module")
def bundles(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Bundle]:
    out = tmp_path_factory.mktemp("bundles")
    assert main(["build", *COMMON, "--out", str(out), "--version", "inprocess"]) == 0
    spark_args = ["--engine", "spark", "--spark-master", "local[2]", "--version", "spark"]
    assert main(["build", *COMMON, "--out", str(out), *spark_args]) == 0
    return {name: load_bundle(Path(out) / name) for name in ("inprocess", "spark")}


def overlap_at(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any], k: int) -> float:
    """Mean share of row ``i``'s top-``k`` of ``a`` found in row ``i``'s top-``k`` of ``b``, over
    rows where ``a`` has neighbours."""
    shares = []
    for row_a, row_b in zip(a[:, :k], b[:, :k], strict=True):
        left = set(row_a[row_a >= 0].tolist())
        if left:
            shares.append(len(left & set(row_b[row_b >= 0].tolist())) / len(left))
    return float(np.mean(shares)) if shares else 1.0


def test_spark_split_has_the_in_process_part_sizes(spark: Any) -> None:
    plays = generate_synthetic(N_ITEMS, N_USERS, seed=3).plays
    parts = split_frame(plays_frame(spark, plays), seed=3).groupBy("user", "part").count().collect()
    sizes = np.zeros((N_USERS, 3), dtype=np.int64)
    for row in parts:
        sizes[row["user"], row["part"]] = row["count"]
    expected = split_interactions(plays, seed=3)
    for column, part in enumerate((expected.train, expected.label, expected.test)):
        assert np.array_equal(sizes[:, column], np.diff(part.indptr))


def test_spark_neighbours_match_the_in_process_cooccurrence_table(spark: Any) -> None:
    plays = generate_synthetic(N_ITEMS, N_USERS, seed=3).plays
    config = NeighborConfig(k=10, method="cooccurrence")
    local = build_item_neighbors(plays, config)
    distributed = build_neighbors_spark(plays_frame(spark, plays), N_ITEMS, config)
    assert np.array_equal(local.neighbors[:, 0] >= 0, distributed.neighbors[:, 0] >= 0)
    assert overlap_at(local.neighbors, distributed.neighbors, 10) >= NEIGHBOR_OVERLAP_SAME_METHOD
    np.testing.assert_allclose(np.sort(local.weights, axis=1), np.sort(distributed.weights, axis=1), rtol=1e-4)


def test_spark_bundle_validates_and_agrees_with_the_in_process_one(bundles: dict[str, Bundle]) -> None:
    local, distributed = bundles["inprocess"], bundles["spark"]
    plan = distributed.manifest["dataset"]["build_plan"]
    assert plan["engine"] == "spark" and plan["baselines"] == ["popularity", "als"] and plan["tune_als"] is False
    assert "ranker examples" in plan["on_spark"] and "evaluation" in plan["on_spark"]
    assert distributed.manifest["evaluation"]["protocol"]["engine"].startswith("spark (")
    assert local.manifest["evaluation"]["protocol"]["engine"] == "in process"
    assert list(distributed.catalog.item_ids) == list(local.catalog.item_ids)
    assert distributed.load_users().user_ids == local.load_users().user_ids
    assert distributed.index.ntotal == len(distributed.catalog)
    overlap = overlap_at(np.asarray(local.item_neighbors), np.asarray(distributed.item_neighbors), 10)
    assert overlap >= NEIGHBOR_OVERLAP_BUNDLES, overlap
    for surface in ("home", "now_playing"):
        ours = distributed.manifest["evaluation"][surface]["ranker"]
        theirs = local.manifest["evaluation"][surface]["ranker"]
        assert abs(ours["ndcg@10"] - theirs["ndcg@10"]) <= NDCG_REL_TOL * theirs["ndcg@10"], (surface, ours, theirs)
        assert abs(ours["recall@100"] - theirs["recall@100"]) <= RECALL_REL_TOL * theirs["recall@100"], (
            surface,
            ours,
            theirs,
        )


def test_input_csv_and_parquet_read_to_the_same_interactions(spark: Any, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [("u2", "t9", 3, "a1", "Song 9"), ("u1", "t9", 1, "a1", "Song 9"), ("u1", "t3", 2, "a2", "Song 3"),
            ("u1", "t3", 4, "a2", "Song 3"), ("u3", "t5", 0, "a3", "Song 5")]  # fmt: skip
    csv = tmp_path / "plays.csv"
    csv.write_text("user_id,item_id,plays,artist_id,name\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    table = pa.table(
        {name: [r[i] for r in rows] for i, name in enumerate(["user_id", "item_id", "plays", "artist_id", "name"])}
    )
    pq.write_table(table, tmp_path / "plays.parquet")

    from_csv = read_interactions(spark, str(csv))
    from_parquet = read_interactions(spark, str(tmp_path / "plays.parquet"))
    for got in (from_csv, from_parquet):
        assert got.user_ids == ["u1", "u2", "u3"] and got.item_ids == ["t3", "t5", "t9"]
        assert got.artist_ids == ["a2", "a3", "a1"] and got.item_names == ["Song 3", "Song 5", "Song 9"]
        dense = got.plays.toarray()
        assert dense[0, 0] == 6.0 and dense[0, 2] == 1.0 and dense[1, 2] == 3.0  # duplicate rows sum
        assert dense[2].sum() == 0.0  # zero plays are not interactions
    missing = tmp_path / "bad.csv"
    missing.write_text("user,item_id,plays\nu1,t1,1\n")
    with pytest.raises(DatasetError, match="--input: missing columns"):
        read_interactions(spark, str(missing))


def test_a_whole_build_reads_its_interactions_from_input(spark: Any, tmp_path: Path) -> None:
    """``--input`` end to end: Parquet in, a served-and-evaluated bundle out, ids from the file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = generate_synthetic(400, 150, seed=5)
    coo = data.plays.tocoo()
    pq.write_table(
        pa.table(
            {
                "user_id": [data.user_ids[u] for u in coo.row.tolist()],
                "item_id": [data.item_ids[i] for i in coo.col.tolist()],
                "plays": coo.data.astype(np.float64),
            }
        ),
        tmp_path / "plays.parquet",
    )
    args = ["build", "--engine", "spark", "--input", str(tmp_path / "plays.parquet"), "--out", str(tmp_path)]
    args += ["--version", "from-input", "--factors", "8", "--ranker-users", "100", "--eval-users", "60"]
    assert main([*args, "--ranker-replicas", "1", "--spark-conf", "spark.sql.shuffle.partitions=3"]) == 0

    bundle = load_bundle(tmp_path / "from-input")
    played = sorted({data.item_ids[i] for i in coo.col.tolist()})
    assert list(bundle.catalog.item_ids) == played
    assert bundle.load_users().user_ids == sorted({data.user_ids[u] for u in coo.row.tolist()})
    assert bundle.manifest["dataset"]["source"] == str(tmp_path / "plays.parquet")
    assert bundle.manifest["evaluation"]["home"]["ranker"]["queries"] == 60
    assert spark.conf.get("spark.sql.shuffle.partitions") == "3"


def test_ranker_examples_sampled_in_spark_are_the_in_process_sample(spark: Any) -> None:
    """One partition draws exactly the in-process sample; more partitions are deterministic and
    keep every query the in-process sampler would (the same users, one generator per partition)."""
    from models.als import AlsConfig
    from models.build import candidate_sizes
    from models.ranker_data import LabelConfig, build_ranker_dataset
    from models.spark.examples import ranker_dataset_spark
    from models.training import fit_stage
    from ranking.assembly import DEFAULT_PARAMS

    plays = generate_synthetic(N_ITEMS, N_USERS, seed=3).plays
    split = split_interactions(plays, seed=3)
    stage = fit_stage(split.train, AlsConfig(factors=16, iterations=5), NeighborConfig(k=20, method="cooccurrence"))
    users = np.flatnonzero(np.diff(split.label.indptr) > 0)[:240]
    sizes = {surface.value: candidate_sizes(params) for surface, params in DEFAULT_PARAMS.items()}
    kwargs: dict[str, Any] = {"sizes": sizes, "labels": LabelConfig(), "recent_share": 0.5}

    local = build_ranker_dataset(stage, split.label, users, np.random.default_rng([7, 0]), negatives=40, **kwargs)
    one = ranker_dataset_spark(spark, stage, split.label, users, 7, partitions=1, negatives=40, **kwargs)
    np.testing.assert_array_equal(one.groups, local.groups)
    np.testing.assert_array_equal(one.labels, local.labels)
    np.testing.assert_array_equal(one.features, local.features)

    three = [
        ranker_dataset_spark(spark, stage, split.label, users, 7, partitions=3, negatives=None, **kwargs)
        for _ in range(2)
    ]
    np.testing.assert_array_equal(three[0].features, three[1].features)
    everything = build_ranker_dataset(stage, split.label, users, np.random.default_rng(1), negatives=None, **kwargs)
    # Home queries do not depend on the draws when no query has recent plays; here about half do,
    # so the counts agree only roughly.
    assert abs(three[0].n_queries - everything.n_queries) <= 0.1 * everything.n_queries
    assert int(np.sum(three[0].labels > 0)) > 0
