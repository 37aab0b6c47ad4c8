"""Co-listen lookups (features/item_neighbors) and the v2 ranker features: values, shapes, purity."""

from __future__ import annotations

import numpy as np
import pytest

from features.item_neighbors import (
    candidate_colisten,
    history_colisten,
    seed_colisten,
    seed_neighbors,
    top_colisten,
)
from features.ranker_features import rank_log, ranker_features
from features.schema import N_RANKER_FEATURES, RANKER_FEATURES

# item -> neighbours (best first, -1 padded) and their weights.
NB = np.array([[1, 2, -1], [0, 2, -1], [0, 1, 3], [2, -1, -1], [-1, -1, -1]], dtype=np.int32)
W = np.array([[0.5, 0.2, 0], [0.5, 0.3, 0], [0.2, 0.3, 0.1], [0.1, 0, 0], [0, 0, 0]], dtype=np.float32)
# item -> its most negative EASE weights (most negative first, -1 padded).
NEG = np.array([[3, 4], [4, -1], [-1, -1], [-1, -1], [-1, -1]], dtype=np.int32)
NEG_W = np.array([[-0.4, -0.1], [-0.2, 0], [0, 0], [0, 0], [0, 0]], dtype=np.float32)


def test_history_colisten_sums_history_rows_and_counts_hits() -> None:
    score, hits = history_colisten(np.array([2, 3, 4]), np.array([0, 1]), NB, W)
    np.testing.assert_allclose(score, [0.5, 0.0, 0.0])
    assert hits.tolist() == [2.0, 0.0, 0.0]


def test_history_colisten_counts_duplicate_history_once_and_fills_duplicate_candidates() -> None:
    score, hits = history_colisten(np.array([2, 2, 1]), np.array([0, 0, 1, -5, 99]), NB, W)
    np.testing.assert_allclose(score, [0.5, 0.5, 0.5])
    assert hits.tolist() == [2.0, 2.0, 1.0]


def test_candidate_colisten_is_the_reverse_direction() -> None:
    np.testing.assert_allclose(candidate_colisten(np.array([2, 3, 4, 0]), np.array([0, 1]), NB, W), [0.5, 0, 0, 0.5])


def test_seed_colisten_weight_rank_and_reverse_weight() -> None:
    weight, inverse_rank, reverse = seed_colisten(np.array([2, 1, 3, 0]), 0, NB, W)
    np.testing.assert_allclose(weight, [0.2, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(inverse_rank, [0.5, 1.0, 0.0, 0.0])
    np.testing.assert_allclose(reverse, [0.2, 0.5, 0.0, 0.0])


@pytest.mark.parametrize("seed", [-1, 4, 99])
def test_seed_colisten_is_zero_without_a_seed_row(seed: int) -> None:
    weight, inverse_rank, _ = seed_colisten(np.array([0, 1, 2]), seed, NB, W)
    assert not weight.any() and not inverse_rank.any()


def test_top_colisten_ranks_by_summed_weight_and_skips_history_and_exclusions() -> None:
    items, scores = top_colisten(np.array([0, 1]), NB, W, 5)
    assert items.tolist() == [2] and scores.tolist() == pytest.approx([0.5])
    items, _ = top_colisten(np.array([3]), NB, W, 5, exclude=np.array([2]))
    assert items.size == 0
    items, scores = top_colisten(np.array([2]), NB, W, 2)
    assert items.tolist() == [1, 0]  # 0.3 then 0.2 (item 3 cut by n)


def test_seed_neighbors_reads_the_row_without_padding() -> None:
    items, weights = seed_neighbors(0, NB, W, 10)
    assert items.tolist() == [1, 2] and weights.tolist() == pytest.approx([0.5, 0.2])
    assert seed_neighbors(-1, NB, W, 10)[0].size == 0
    assert seed_neighbors(2, NB, W, 1)[0].tolist() == [0]


def _inputs(seed: int) -> dict[str, object]:
    rng = np.random.default_rng(1)
    items = np.array([2, 3, 4], dtype=np.int64)
    vectors = rng.normal(size=(3, 4)).astype(np.float32)
    return {
        "item_indices": items,
        "item_vectors": vectors,
        "item_stats": rng.random((3, 2)).astype(np.float32),
        "item_norms": np.linalg.norm(vectors, axis=1).astype(np.float32),
        "query_vector": rng.normal(size=4).astype(np.float32),
        "user_vector": rng.normal(size=4).astype(np.float32),
        "user_stats": rng.random(2).astype(np.float32),
        "recent_vector": np.zeros(4, dtype=np.float32),
        "seed_vector": None if seed < 0 else rng.normal(size=4).astype(np.float32),
        "seed_index": seed,
        "history_items": np.array([1, 0, 0], dtype=np.int64),
        "neighbors": NB,
        "neighbor_weights": W,
        "negatives": NEG,
        "negative_weights": NEG_W,
    }


@pytest.mark.parametrize("seed", [-1, 0])
def test_ranker_features_shape_and_it_never_mutates_its_inputs(seed: int) -> None:
    inputs = _inputs(seed)
    copies = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in inputs.items()}
    out = ranker_features(**inputs)  # type: ignore[arg-type]
    assert out.shape == (3, N_RANKER_FEATURES) and out.dtype == np.float32
    assert np.isfinite(out).all()
    for key, value in inputs.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(value, copies[key])


def test_ranker_features_co_listen_and_seed_columns() -> None:
    col = {name: i for i, name in enumerate(RANKER_FEATURES)}
    home = ranker_features(**_inputs(-1))  # type: ignore[arg-type]
    playing = ranker_features(**_inputs(0))  # type: ignore[arg-type]
    np.testing.assert_allclose(home[:, col["history_colisten_sum"]], [0.5, 0.0, 0.0])
    np.testing.assert_allclose(home[:, col["history_colisten_mean"]], [0.25, 0.0, 0.0])  # 2 distinct items
    np.testing.assert_allclose(home[:, col["history_colisten_hits"]], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(home[:, col["history_size_log"]], np.log1p(2))
    for name in ("seed_colisten_weight", "seed_neighbor_inverse_rank", "seed_reverse_weight", "is_now_playing"):
        assert not home[:, col[name]].any()
    np.testing.assert_allclose(playing[:, col["seed_colisten_weight"]], [0.2, 0.0, 0.0])
    np.testing.assert_allclose(playing[:, col["seed_neighbor_inverse_rank"]], [0.5, 0.0, 0.0])
    assert playing[:, col["is_now_playing"]].tolist() == [1.0, 1.0, 1.0]
    inputs = _inputs(-1)
    vectors, query = np.asarray(inputs["item_vectors"]), np.asarray(inputs["query_vector"])
    np.testing.assert_allclose(home[:, col["retrieval_score"]], vectors @ query, rtol=1e-6)


def test_ranker_features_for_no_candidates_and_no_history() -> None:
    inputs = _inputs(-1)
    inputs.update(
        item_indices=np.empty(0, np.int64),
        item_vectors=np.empty((0, 4), np.float32),
        item_stats=np.empty((0, 2), np.float32),
        item_norms=np.empty(0, np.float32),
    )
    assert ranker_features(**inputs).shape == (0, N_RANKER_FEATURES)  # type: ignore[arg-type]
    inputs = _inputs(0)
    inputs["history_items"] = np.empty(0, np.int64)
    out = ranker_features(**inputs)  # type: ignore[arg-type]
    col = {name: i for i, name in enumerate(RANKER_FEATURES)}
    assert not out[:, col["history_colisten_sum"]].any() and not out[:, col["history_size_log"]].any()


def test_rank_log_ranks_the_largest_first_and_breaks_ties_by_position() -> None:
    ranks = rank_log(np.array([0.1, 0.9, 0.5, 0.9], dtype=np.float32))
    np.testing.assert_allclose(ranks, np.log1p([3, 0, 2, 1]))


def test_ranker_features_rank_columns_rank_their_score_among_the_candidates() -> None:
    col = {name: i for i, name in enumerate(RANKER_FEATURES)}
    out = ranker_features(**_inputs(0))  # type: ignore[arg-type]
    ranked = [name.removesuffix("_rank_log") for name in RANKER_FEATURES if name.endswith("_rank_log")]
    assert len(ranked) == 5
    for name in ranked:
        np.testing.assert_array_equal(out[:, col[f"{name}_rank_log"]], rank_log(out[:, col[name]]))
    np.testing.assert_allclose(np.sort(out[:, col["retrieval_score_rank_log"]]), np.log1p([0, 1, 2]))


def test_history_ease_score_adds_the_negative_table_to_the_positive_sum() -> None:
    col = {name: i for i, name in enumerate(RANKER_FEATURES)}
    out = ranker_features(**_inputs(-1))  # type: ignore[arg-type]  # candidates 2, 3, 4; history {0, 1}
    # item 2: +0.2 (row 0) +0.3 (row 1); item 3: -0.4 (row 0); item 4: -0.1 (row 0) -0.2 (row 1)
    np.testing.assert_allclose(out[:, col["history_ease_score"]], [0.5, -0.4, -0.3], rtol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_history_colisten_matches_a_brute_force_sum_over_random_tables(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_items, k = 60, 7
    neighbors = rng.integers(-1, n_items, size=(n_items, k)).astype(np.int32)
    weights = np.where(neighbors >= 0, rng.random((n_items, k)), 0).astype(np.float32)
    candidates = rng.integers(0, n_items, size=25)  # duplicates allowed
    history = rng.integers(-3, n_items + 3, size=12)  # out-of-range and duplicate entries too
    score, hits = history_colisten(candidates, history, neighbors, weights)
    rows = [h for h in set(history.tolist()) if 0 <= h < n_items]
    for j, c in enumerate(candidates.tolist()):
        pairs = [(h, col) for h in rows for col in range(k) if neighbors[h, col] == c]
        assert hits[j] == len(pairs)
        assert score[j] == pytest.approx(sum(float(weights[h, col]) for h, col in pairs), rel=1e-5)
    empty = np.zeros((n_items, 0), dtype=np.int32), np.zeros((n_items, 0), dtype=np.float32)
    assert not history_colisten(candidates, history, *empty)[0].any()
