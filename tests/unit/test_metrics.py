"""Seed metrics, overlap and seed picking on hand-made interaction matrices."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from models.metrics import (
    CoListen,
    overlap_at_k,
    pick_seeds,
    precision_in_at_k,
    seed_conditioned_relevant,
    seed_neighbour_precision,
)


def _matrix(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    indptr = np.cumsum([0] + [len(r) for r in rows])
    indices = np.array([i for r in rows for i in r], dtype=np.int32)
    return sp.csr_matrix((np.ones(indices.size, dtype=np.float32), indices, indptr), shape=(len(rows), n_items))


# users: 0 asks; 1 and 2 listen to seed 0 with items 1, 2 (and 3 only by user 0 itself).
PLAYS = _matrix([[0, 3, 4], [0, 1, 2], [0, 1], [5, 6]], n_items=8)


def test_co_listen_counts_exclude_the_asking_user() -> None:
    counts = CoListen(PLAYS).counts(0, exclude_user=0)
    assert counts.tolist() == [2, 2, 1, 0, 0, 0, 0, 0]


def test_top_neighbours_are_by_count_then_index_and_skip_the_seed() -> None:
    assert CoListen(PLAYS).top_neighbours(0, exclude_user=0, n=50).tolist() == [1, 2]
    assert CoListen(PLAYS).top_neighbours(0, exclude_user=0, n=1).tolist() == [1]
    # Counting the asking user too adds items 3 and 4 (count 1, after item 2 by index order).
    assert CoListen(PLAYS).top_neighbours(0, n=50).tolist() == [1, 2, 3, 4]


def test_seed_neighbour_precision_divides_by_k() -> None:
    colisten = CoListen(PLAYS)
    assert seed_neighbour_precision([1, 7, 2, 6], colisten, 0, 0, k=4) == pytest.approx(0.5)
    assert seed_neighbour_precision([1], colisten, 0, 0, k=10) == pytest.approx(0.1)


def test_seed_conditioned_relevant_keeps_only_items_others_co_listened() -> None:
    # Test items 2 (co-listened by users 1), 3 (only by the asking user) and 6 (never with seed 0).
    assert seed_conditioned_relevant([2, 3, 6], CoListen(PLAYS), 0, 0) == {2}


def test_overlap_counts_shared_top_k_items() -> None:
    assert overlap_at_k([1, 2, 3, 4], [4, 3, 9, 8], k=2) == 0.0
    assert overlap_at_k([1, 2, 3, 4], [4, 3, 9, 8], k=4) == pytest.approx(0.5)
    assert overlap_at_k([], [], k=10) == 0.0
    assert precision_in_at_k([1, 2], {2}, k=0) == 0.0


def test_pick_seeds_is_deterministic_distinct_and_known() -> None:
    users = np.array([0, 1, 3], dtype=np.int64)
    first = pick_seeds(PLAYS, users, seed=7)
    assert np.array_equal(first, pick_seeds(PLAYS, users, seed=7))
    for row, u in enumerate(users.tolist()):
        known = set(PLAYS.indices[PLAYS.indptr[u] : PLAYS.indptr[u + 1]].tolist())
        assert first[row, 0] != first[row, 1]
        assert set(first[row].tolist()) <= known


def test_pick_seeds_pads_users_with_too_few_items() -> None:
    plays = _matrix([[3], []], n_items=4)
    assert pick_seeds(plays, [0, 1], seed=1).tolist() == [[3, -1], [-1, -1]]
