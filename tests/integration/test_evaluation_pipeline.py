"""The offline evaluation runs the served pipeline on a real bundle (real FAISS, real ONNX)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from models.bundle import load_bundle
from models.evaluation import SERVED, ServedRanker, evaluate_bundle, format_metrics_table, known_matrix
from models.metrics import ndcg_at_k, recall_at_k
from ranking.assembly import DEFAULT_PARAMS
from ranking.types import Surface

I64 = np.ndarray


class PopularityBaseline:
    """Most popular items first, skipping the exclusions (what models.baselines provides)."""

    def __init__(self, order: np.ndarray) -> None:
        self._order = np.asarray(order, dtype=np.int64)

    def rank(self, user: int, seed: int, exclude: np.ndarray, n: int) -> np.ndarray:
        return self._order[~np.isin(self._order, exclude)][:n]


def _test_matrix(known: sp.csr_matrix, seed: int = 5, per_user: int = 4) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for u in range(known.shape[0]):
        seen = set(known.indices[known.indptr[u] : known.indptr[u + 1]].tolist())
        free = np.array([i for i in range(known.shape[1]) if i not in seen])
        rows += [u] * per_user
        cols += rng.choice(free, size=per_user, replace=False).tolist()
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=known.shape)


def test_evaluation_ranks_through_the_served_pipeline_for_every_method(tiny_bundle_path: Path) -> None:
    bundle = load_bundle(tiny_bundle_path)
    snapshot = bundle.load_users()
    known = known_matrix(snapshot, len(bundle.catalog))
    test = _test_matrix(known)
    users = np.arange(0, 50, 3, dtype=np.int64)
    progress: list[str] = []
    result = evaluate_bundle(
        bundle,
        test,
        users,
        seed=11,
        baselines={"popularity": PopularityBaseline(bundle.popularity)},
        progress=progress.append,
    )
    summary = result.summary
    assert set(summary["home"]) == {SERVED, "ranker:linear-v2", "popularity"}
    assert summary["degraded"][SERVED] == {"home": 0, "now_playing": 0}
    served = result.lists[SERVED]
    for row, u in enumerate(users.tolist()):
        own = set(snapshot.known(u).tolist())
        seeds = result.queries.seeds[row].tolist()
        assert len(set(seeds)) == 2 and set(seeds) <= own  # two distinct known items
        assert len(served["home"][row]) == 100
        assert not own & set(served["home"][row])  # known items are excluded on Home
        for j, seed in enumerate(seeds):
            listed = set(served["now_playing"][row][j])
            assert seed not in listed and not own & listed
            assert not own & set(result.lists["popularity"]["now_playing"][row][j])
    # metrics are the metric functions over the lists
    relevant = [set(test.indices[test.indptr[u] : test.indptr[u + 1]].tolist()) for u in users.tolist()]
    for method in (SERVED, "popularity"):
        home = result.lists[method]["home"]
        expected = np.mean([ndcg_at_k(r, rel, 10) for r, rel in zip(home, relevant, strict=True)])
        assert summary["home"][method]["ndcg@10"] == expected
        expected = np.mean([recall_at_k(r, rel, 100) for r, rel in zip(home, relevant, strict=True)])
        assert summary["home"][method]["recall@100"] == expected
    np_metrics = summary["now_playing"][SERVED]
    assert np_metrics["queries"] == 2 * len(users)
    assert np_metrics["seed_ndcg_queries"] + np_metrics["seed_ndcg_skipped"] == np_metrics["queries"]
    for key in ("seed_precision@10", "overlap@10_seeds", "overlap@10_home"):
        assert 0.0 <= np_metrics[key] <= 1.0
    ratio = summary["vs_best_baseline"]["home"]["ndcg@10"]
    assert ratio["best_baseline"] == "popularity"
    json.dumps(summary, allow_nan=False)  # strict JSON for the manifest
    table = format_metrics_table(summary)
    assert "served / best baseline, home: ndcg@10" in table
    assert any(line.split()[:2] == ["now_playing", "popularity"] for line in table.splitlines())
    assert any("served pipeline ranked" in line for line in progress)


async def test_the_served_ranker_returns_the_pipelines_lists(tiny_bundle_path: Path) -> None:
    bundle = load_bundle(tiny_bundle_path)
    ranker = await ServedRanker.open(bundle, bundle.load_users())
    try:
        first = await ranker.rank("u3", Surface.NOW_PLAYING, DEFAULT_PARAMS[Surface.NOW_PLAYING], 7, 20)
        again = await ranker.rank("u3", Surface.NOW_PLAYING, DEFAULT_PARAMS[Surface.NOW_PLAYING], 7, 20)
        other = await ranker.rank("u3", Surface.NOW_PLAYING, DEFAULT_PARAMS[Surface.NOW_PLAYING], 201, 20)
    finally:
        ranker.close()
    assert first == again and len(first) == 20 and first != other
