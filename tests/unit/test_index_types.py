"""``--index-type``: every FAISS index the bundle can build searches by inner product."""

from __future__ import annotations

import numpy as np
import pytest

from models.bundle import _build_index, index_bytes_per_item


@pytest.mark.parametrize("index_type", ["auto", "flat", "ivf", "hnsw", "ivfpq"])
def test_each_index_type_finds_the_best_inner_product(index_type: str) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((12_000, 16)).astype(np.float32)
    index = _build_index(vectors, index_type)
    assert index.ntotal == vectors.shape[0]
    query = vectors[:20] * 4.0  # each row's own vector is its best inner product (with high odds)
    _, found = index.search(query, 10)
    exact = np.argsort(-(query @ vectors.T), axis=1)[:, :10]
    recall = np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found.tolist(), exact.tolist(), strict=True)])
    assert recall >= (0.99 if index_type in ("auto", "flat") else 0.3)


def test_memory_per_item_and_a_bad_type_names_the_flag() -> None:
    assert index_bytes_per_item("flat", 64) == 256
    assert index_bytes_per_item("hnsw", 64) == 256 + 8 * 32
    assert index_bytes_per_item("ivfpq", 64) == 24
    with pytest.raises(ValueError, match="--index-type"):
        _build_index(np.zeros((10, 4), np.float32), "lsh")
