"""Building a bundle end to end and loading it back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from features.query_vector import user_query
from features.ranker_features import ranker_features
from features.schema import RANKER_INPUT_NAME, USER_STATS
from models.bundle import load_bundle
from tests.support import REAL_DATA as HETREC_PATH

pytestmark = pytest.mark.integration


def test_built_bundle_loads_and_validates(small_bundle_path: Path) -> None:
    bundle = load_bundle(small_bundle_path)
    n = len(bundle.catalog)
    base = 64 if HETREC_PATH.is_dir() else 32
    chosen = bundle.manifest["dataset"]["baselines"]["als"]["chosen"]["factors"]
    assert chosen in {base, 2 * base}  # the ALS tuning tries the given factors and twice as many
    assert bundle.item_vectors.shape == (n, chosen)
    assert bundle.index.ntotal == n
    assert set(bundle.models) == {"lgbm-v1", "lgbm-v1-lite"}
    assert bundle.default_model == "lgbm-v1"
    assert 0 < bundle.popularity.size <= 1000
    users = bundle.load_users()
    assert users.stats.shape == (len(users.user_ids), len(USER_STATS))
    assert np.isfinite(users.vectors).all()


def test_onnx_rankers_score_ranker_features_one_score_per_candidate(small_bundle_path: Path) -> None:
    bundle = load_bundle(small_bundle_path)
    users = bundle.load_users()
    query = user_query(users.vectors[0], np.zeros(bundle.dim, dtype=np.float32))
    _, found = bundle.index.search(query[None, :].astype(np.float32), 50)
    cand = found[0][found[0] >= 0]
    features = ranker_features(
        item_indices=cand.astype(np.int64),
        item_vectors=np.asarray(bundle.item_vectors[cand]),
        item_stats=np.asarray(bundle.item_stats[cand]),
        item_norms=bundle.item_norms[cand],
        query_vector=query.astype(np.float32),
        user_vector=users.vectors[0],
        user_stats=users.stats[0],
        recent_vector=np.zeros(bundle.dim, dtype=np.float32),
        seed_vector=None,
        seed_index=-1,
        history_items=np.asarray(users.known(0), dtype=np.int64),
        neighbors=bundle.item_neighbors,
        neighbor_weights=bundle.item_neighbor_weights,
        negatives=bundle.item_negative_neighbors,
        negative_weights=bundle.item_negative_weights,
    )
    for version in bundle.models:
        session = ort.InferenceSession(str(bundle.model_path(version)), providers=["CPUExecutionProvider"])
        assert session.get_inputs()[0].name == RANKER_INPUT_NAME
        scores = np.asarray(session.run(None, {RANKER_INPUT_NAME: features})[0])
        assert scores.shape in {(cand.size,), (cand.size, 1)}
        assert np.isfinite(scores).all()
        assert np.unique(scores).size > 1  # the model discriminates between candidates


def test_manifest_records_evaluation_for_all_methods_and_dataset(small_bundle_path: Path) -> None:
    manifest = load_bundle(small_bundle_path).manifest
    evaluation = manifest["evaluation"]
    for surface in ("home", "now_playing"):
        methods = evaluation[surface]
        assert {"ranker", "ranker:lgbm-v1-lite"} <= set(methods)
        assert set(methods) == set(evaluation["home"])  # every method on both surfaces
        for metrics in methods.values():
            assert 0.0 <= metrics["ndcg@10"] <= 1.0
            assert 0.0 <= metrics["recall@100"] <= 1.0
    for metrics in evaluation["now_playing"].values():
        for key in ("seed_precision@10", "seed_ndcg@10", "overlap@10_seeds", "overlap@10_home"):
            assert metrics[key] is None or 0.0 <= metrics[key] <= 1.0
    assert evaluation["protocol"]["limit"] == 100
    assert evaluation["degraded"]["ranker"] == {"home": 0, "now_playing": 0}
    assert manifest["dataset"]["n_items"] == manifest["n_items"]
    assert manifest["dataset"]["n_interactions"] > 0


def test_served_ranker_beats_popularity_offline(small_bundle_path: Path) -> None:
    """On held-out interactions (real HetRec data here; the synthetic catalog where it is absent)."""
    evaluation = load_bundle(small_bundle_path).manifest["evaluation"]
    for surface in ("home", "now_playing"):
        metrics = evaluation[surface]
        if "popularity" in metrics:
            assert metrics["ranker"]["ndcg@10"] > metrics["popularity"]["ndcg@10"], surface
