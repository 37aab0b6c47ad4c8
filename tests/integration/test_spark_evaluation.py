"""The evaluation on Spark (executors rank, Spark averages) gives the in-process evaluation's numbers."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from models.baselines.popularity import fit_popularity
from models.bundle import load_bundle
from models.evaluation import SERVED, evaluate_bundle, known_matrix
from models.spark.evaluation import evaluate_bundle_spark

pytestmark = pytest.mark.integration

#: Both engines average the same per-user values; only the summation order differs.
REL_TOL = 1e-12


def _test_matrix(known: sp.csr_matrix, seed: int = 5, per_user: int = 4) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for u in range(known.shape[0]):
        free = np.setdiff1d(np.arange(known.shape[1]), known.indices[known.indptr[u] : known.indptr[u + 1]])
        rows += [u] * per_user
        cols += rng.choice(free, size=per_user, replace=False).tolist()
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=known.shape)


def _assert_same(local: Any, spark: Any, where: str) -> None:
    if isinstance(local, dict):
        assert set(local) == set(spark), where
        for key in local:
            _assert_same(local[key], spark[key], f"{where}.{key}")
    elif isinstance(local, float) and not math.isnan(local):
        assert spark == pytest.approx(local, rel=REL_TOL, abs=1e-15), where
    else:
        assert local == spark, where


def test_spark_evaluation_matches_the_in_process_one(tiny_bundle_path: Path, spark: Any) -> None:
    bundle = load_bundle(tiny_bundle_path)
    known = known_matrix(bundle.load_users(), len(bundle.catalog))
    test = _test_matrix(known)
    users = np.arange(0, known.shape[0], 2, dtype=np.int64)
    baselines = {"popularity": fit_popularity(known)}
    local = evaluate_bundle(bundle, test, users, seed=11, baselines=baselines).summary
    progress: list[str] = []
    distributed = evaluate_bundle_spark(
        spark, tiny_bundle_path, test, users, seed=11, baselines=baselines, partitions=3, progress=progress.append
    )

    assert distributed["protocol"].pop("engine").startswith("spark (3 partitions")
    assert local["protocol"].pop("engine") == "in process"
    _assert_same(local, distributed, "evaluation")
    # Not vacuous: every method was measured on every user, and the served ranker finds test items.
    assert set(distributed["home"]) == {SERVED, "ranker:linear-v2", "popularity"}
    for method in distributed["home"]:
        assert distributed["home"][method]["queries"] == users.size
    assert distributed["now_playing"][SERVED]["queries"] > users.size
    assert distributed["home"][SERVED]["recall@100"] > 0.0
    assert any("3 partitions" in line for line in progress)


def test_spark_evaluation_rejects_a_baseline_named_like_the_served_ranker(tiny_bundle_path: Path, spark: Any) -> None:
    bundle = load_bundle(tiny_bundle_path)
    known = known_matrix(bundle.load_users(), len(bundle.catalog))
    with pytest.raises(ValueError, match="must not start with 'ranker'"):
        evaluate_bundle_spark(
            spark, tiny_bundle_path, known, np.arange(3), seed=1, baselines={"ranker:x": fit_popularity(known)}
        )
