"""The offline item-neighbour table against a dense brute force, chunking and determinism."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from models.item_neighbors import NeighborConfig, build_item_neighbors


def _plays(seed: int = 0, n_users: int = 60, n_items: int = 40, density: float = 0.15) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_users, n_items)) < density) * rng.integers(1, 20, (n_users, n_items))
    dense[:, -1] = 0  # an item nobody played
    dense[0, -2], dense[1:, -2] = 3, 0  # an item with a single listener
    return sp.csr_matrix(dense.astype(np.float32))


def _brute_force(plays: sp.csr_matrix, config: NeighborConfig) -> tuple[np.ndarray, np.ndarray]:
    x = plays.toarray().astype(np.float64)
    x = (x > 0).astype(np.float64) if config.weighting == "binary" else np.log1p(x)
    listeners = (x > 0).sum(axis=0)
    x[:, listeners < config.min_listeners] = 0.0
    co = x.T @ x
    mass = np.diag(co).copy()
    np.fill_diagonal(co, 0.0)
    sim = co / (
        np.maximum(mass, 1e-12)[:, None] ** (1 - config.beta) * np.maximum(mass, 1e-12)[None, :] ** config.beta
        + config.shrink
    )
    n = x.shape[1]
    neighbors = np.full((n, config.k), -1)
    weights = np.zeros((n, config.k))
    for i in range(n):
        order = np.lexsort((np.arange(n), -sim[i]))
        order = order[sim[i][order] > 0][: config.k]
        neighbors[i, : order.size] = order
        weights[i, : order.size] = sim[i][order]
    return neighbors, weights


@pytest.mark.parametrize(
    "config",
    [
        NeighborConfig(k=5, beta=0.5, shrink=10.0),
        NeighborConfig(k=8, beta=0.0, shrink=0.0),
        NeighborConfig(k=3, beta=0.35, shrink=2.0, weighting="log1p"),
    ],
)
def test_table_matches_a_dense_brute_force(config: NeighborConfig) -> None:
    plays = _plays()
    table = build_item_neighbors(plays, config)
    neighbors, weights = _brute_force(plays, config)
    assert table.neighbors.dtype == np.int32 and table.weights.dtype == np.float32
    assert table.neighbors.shape == (plays.shape[1], config.k)
    np.testing.assert_array_equal(table.neighbors, neighbors)
    np.testing.assert_allclose(table.weights, weights, rtol=1e-5, atol=1e-7)


def test_rows_are_best_first_padded_and_never_hold_the_item_itself() -> None:
    table = build_item_neighbors(_plays(), NeighborConfig(k=10))
    n = table.neighbors.shape[0]
    assert np.all(np.diff(table.weights, axis=1) <= 0)
    assert np.all((table.neighbors >= 0) == (table.weights > 0))
    assert not np.any(table.neighbors == np.arange(n)[:, None])
    # Items with fewer than min_listeners listeners have no row and appear in no row.
    assert np.all(table.neighbors[-2:] == -1)
    assert not np.isin([n - 1, n - 2], table.neighbors).any()


def test_chunked_products_give_the_same_table_as_one_product() -> None:
    plays = _plays(seed=3, n_users=200, n_items=120)
    whole = build_item_neighbors(plays, NeighborConfig(k=7, chunk_pairs=10**9))
    chunked = build_item_neighbors(plays, NeighborConfig(k=7, chunk_pairs=50))
    np.testing.assert_array_equal(whole.neighbors, chunked.neighbors)
    np.testing.assert_array_equal(whole.weights, chunked.weights)


def test_min_common_drops_pairs_with_too_few_common_listeners() -> None:
    plays = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 1], [1, 0, 1], [0, 0, 1]], dtype=np.float32))
    table = build_item_neighbors(plays, NeighborConfig(k=2, min_common=2, shrink=0.0))
    assert table.neighbors[0].tolist() == [1, 2]  # items 0-1 and 0-2 share two listeners each
    assert table.neighbors[1].tolist() == [0, -1]  # items 1-2 share one


def test_ties_break_by_item_index_and_the_input_is_not_mutated() -> None:
    plays = sp.csr_matrix(np.array([[1, 1, 1, 1], [1, 1, 1, 1]], dtype=np.float32))
    before = plays.copy()
    table = build_item_neighbors(plays, NeighborConfig(k=3, shrink=0.0))
    assert table.neighbors[2].tolist() == [0, 1, 3]
    assert (plays != before).nnz == 0


def test_an_empty_matrix_gives_an_all_padding_table() -> None:
    table = build_item_neighbors(sp.csr_matrix((3, 4), dtype=np.float32), NeighborConfig(k=2))
    assert table.neighbors.tolist() == [[-1, -1]] * 4
    assert table.coverage() == 0.0


def test_ease_table_holds_each_rows_largest_positive_ease_weights() -> None:
    plays = _plays(seed=5)
    config = NeighborConfig(k=6, method="ease", ease_regularization=5.0)
    table = build_item_neighbors(plays, config)
    x = (plays.toarray() > 0).astype(np.float64)
    items = np.flatnonzero(x.sum(axis=0) >= 2)
    p = np.linalg.inv(x[:, items].T @ x[:, items] + 5.0 * np.eye(items.size))
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    for row, item in enumerate(items.tolist()):
        order = np.lexsort((items, -b[row]))
        order = order[b[row][order] > 0][:6]
        np.testing.assert_array_equal(table.neighbors[item][: order.size], items[order])
        np.testing.assert_allclose(table.weights[item][: order.size], b[row][order], rtol=1e-4, atol=1e-6)
    assert np.all(table.neighbors[np.setdiff1d(np.arange(plays.shape[1]), items)] == -1)


def test_ease_negative_table_holds_each_rows_most_negative_weights_so_both_sum_to_the_ease_score() -> None:
    plays = _plays(seed=5)
    n_items = plays.shape[1]
    table = build_item_neighbors(plays, NeighborConfig(k=n_items, method="ease", ease_regularization=5.0, negative_k=3))
    full = build_item_neighbors(
        plays, NeighborConfig(k=n_items, method="ease", ease_regularization=5.0, negative_k=n_items)
    )
    x = (plays.toarray() > 0).astype(np.float64)
    items = np.flatnonzero(x.sum(axis=0) >= 2)
    p = np.linalg.inv(x[:, items].T @ x[:, items] + 5.0 * np.eye(items.size))
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    assert table.negatives.shape == (n_items, 3) and np.all(table.negative_weights <= 0)
    for row, item in enumerate(items.tolist()):
        order = np.lexsort((items, b[row]))
        order = order[b[row][order] < 0][:3]
        np.testing.assert_array_equal(table.negatives[item][: order.size], items[order])
        np.testing.assert_allclose(table.negative_weights[item][: order.size], b[row][order], rtol=1e-4, atol=1e-6)
    # untruncated, positive + negative rows are B itself: x_u B over a history
    dense = np.zeros((n_items, n_items))
    for nb, w in ((full.neighbors, full.weights), (full.negatives, full.negative_weights)):
        rows, cols = np.nonzero(nb >= 0)
        dense[rows, nb[rows, cols]] = w[rows, cols]
    np.testing.assert_allclose(dense[np.ix_(items, items)], b, rtol=1e-3, atol=1e-5)


def test_cooccurrence_table_has_no_negative_weights() -> None:
    table = build_item_neighbors(_plays(), NeighborConfig(k=4))
    assert table.negatives.shape == (_plays().shape[1], 0) and table.negative_weights.shape == table.negatives.shape


def test_ease_falls_back_to_cooccurrence_when_too_many_items_qualify() -> None:
    plays = _plays()
    fallback = build_item_neighbors(plays, NeighborConfig(k=4, method="ease", ease_max_items=3))
    cooccurrence = build_item_neighbors(plays, NeighborConfig(k=4))
    np.testing.assert_array_equal(fallback.neighbors, cooccurrence.neighbors)
