"""Two-stage training on a small synthetic catalogue: reproducible, and stage B is what is served."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from features.schema import N_RANKER_FEATURES, RANKER_INPUT_NAME
from features.synthetic import generate_synthetic
from models.als import AlsConfig
from models.item_neighbors import NeighborConfig, build_item_neighbors
from models.ranker_data import CandidateSizes
from models.splits import split_interactions
from models.tables import compute_tables
from models.training import TrainingConfig, train_models

pytestmark = pytest.mark.integration

SIZES = {
    "home": CandidateSizes(retrieval=60, co_listen=30, seed_neighbors=30, popularity=20),
    "now_playing": CandidateSizes(retrieval=40, co_listen=30, seed_neighbors=30, popularity=20),
}


def _config() -> TrainingConfig:
    return TrainingConfig(
        sizes=SIZES,
        als=AlsConfig(factors=8, iterations=5),
        neighbors=NeighborConfig(k=30),
        models=(("m", 25), ("m-lite", 5)),
        ranker_users=80,
        replicas=2,
        seed=4,
    )


def test_two_trainings_of_the_same_split_are_identical_and_stage_b_is_fit_on_train_plus_label() -> None:
    data = generate_synthetic(1500, 150, seed=3)
    split = split_interactions(data.plays, seed=3)
    first = train_models(split, _config())
    second = train_models(split, _config())
    assert first.default_model == "m" and set(first.rankers) == {"m", "m-lite"}
    for version in first.rankers:
        assert first.rankers[version].onnx == second.rankers[version].onnx
    np.testing.assert_array_equal(first.embeddings.item_vectors, second.embeddings.item_vectors)
    np.testing.assert_array_equal(first.neighbors.neighbors, second.neighbors.neighbors)
    assert first.info == second.info
    assert len(first.info["ranker"]["replica_data"]) == 2

    # Stage B: statistics and the neighbour table come from train + label.
    known = split.known
    np.testing.assert_array_equal(first.tables.user_stats, compute_tables(known).user_stats)
    np.testing.assert_array_equal(
        first.neighbors.neighbors, build_item_neighbors(known, NeighborConfig(k=30)).neighbors
    )
    assert first.embeddings.user_vectors.shape == (data.n_users, 8)

    session = ort.InferenceSession(first.rankers["m"].onnx, providers=["CPUExecutionProvider"])
    scores = session.run(None, {RANKER_INPUT_NAME: np.zeros((4, N_RANKER_FEATURES), np.float32)})[0]
    assert np.asarray(scores).reshape(-1).shape == (4,)
