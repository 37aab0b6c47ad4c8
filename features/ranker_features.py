"""Ranker feature construction, shared verbatim by training and serving (no train/serve skew).

``ranker_features`` is a pure function of arrays; it never mutates its inputs. Five columns rank a
score among the request's candidates (``rank_log``), so the features of a candidate depend on the
whole candidate set: training computes them over every served candidate before subsampling. It
reads only the rows of the candidates, the history and the seed (no dense per-catalog scratch arrays), so it
stays cheap at ~500 candidates on a 1,000,000-item catalog.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from features.item_neighbors import candidate_colisten, history_colisten, seed_colisten
from features.schema import N_RANKER_FEATURES, RANKER_FEATURES

F32 = npt.NDArray[np.float32]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
_EPS = np.float32(1e-6)
#: (rank column, the column it ranks) for the query-relative ``<name>_rank_log`` features.
_RANKED = tuple(
    (column, RANKER_FEATURES.index(name.removesuffix("_rank_log")))
    for column, name in enumerate(RANKER_FEATURES)
    if name.endswith("_rank_log")
)


def unit(vector: F32) -> F32:
    """Return ``vector`` scaled to unit L2 norm (the zero vector stays zero)."""
    norm = float(np.linalg.norm(vector))
    if norm < _EPS:
        return np.zeros_like(vector)
    return (vector / norm).astype(np.float32)


def rank_log(values: F32) -> F32:
    """``log1p`` of each value's rank among ``values`` (0 = the largest; ties by position).

    Query-relative: the same raw score means little across users, its place among the
    request's candidates does (the ranker sees both)."""
    order = np.argsort(-values, kind="stable")
    ranks = np.empty(values.size, dtype=np.float32)
    ranks[order] = np.arange(values.size, dtype=np.float32)
    return np.log1p(ranks)


def ranker_features(
    *,
    item_indices: I64,
    item_vectors: F32,
    item_stats: F32,
    item_norms: F32,
    query_vector: F32,
    user_vector: F32,
    user_stats: F32,
    recent_vector: F32,
    seed_vector: F32 | None,
    seed_index: int,
    history_items: I64,
    neighbors: I32,
    neighbor_weights: F32,
    negatives: I32,
    negative_weights: F32,
) -> F32:
    """Build the ranker input matrix in ``RANKER_FEATURES`` order.

    Args:
        item_indices: [n] catalog indices of the candidates.
        item_vectors: [n, d] embeddings of the candidates.
        item_stats: [n, len(ITEM_STATS)] per-item statistics.
        item_norms: [n] L2 norms of ``item_vectors`` (precomputed in the bundle).
        query_vector: [d] the request's retrieval query (``retrieval_score`` = item · query).
        user_vector: [d] long-term user vector (zeros for a cold-start user).
        user_stats: [len(USER_STATS)] user statistics.
        recent_vector: [d] mean vector of recently played items (zeros when none).
        seed_vector: [d] vector of the seed item on Now Playing, ``None`` on Home.
        seed_index: catalog index of the seed item, -1 on Home.
        history_items: item indices the user is known to have played (known items ∪ recent
            plays; any order, duplicates allowed, may be empty).
        neighbors: int32 [n_items, K] the bundle's item-neighbour table (-1 padded).
        neighbor_weights: float32 [n_items, K] its weights (0 where padded).
        negatives: int32 [n_items, K'] the bundle's negative EASE table (-1 padded; K' may be 0).
        negative_weights: float32 [n_items, K'] its weights (<= 0, 0 where padded).

    Returns:
        float32 [n, N_RANKER_FEATURES].
    """
    n = item_vectors.shape[0]
    out = np.empty((n, N_RANKER_FEATURES), dtype=np.float32)
    safe_norms = np.maximum(item_norms, _EPS)
    user_norm = np.float32(np.linalg.norm(user_vector))
    dots = item_vectors @ user_vector
    out[:, 0] = item_vectors @ query_vector
    out[:, 1] = dots
    out[:, 2] = dots / (safe_norms * max(user_norm, _EPS)) if user_norm > _EPS else 0.0
    out[:, 3] = (item_vectors @ unit(recent_vector)) / safe_norms
    out[:, 4] = 0.0 if seed_vector is None else (item_vectors @ unit(seed_vector)) / safe_norms
    out[:, 5:7] = item_stats[:, :2]
    out[:, 7] = item_norms
    out[:, 8:10] = user_stats[:2]
    out[:, 10] = user_norm
    out[:, 11] = 0.0 if seed_vector is None else 1.0
    history = np.unique(np.asarray(history_items, dtype=np.int64))
    n_history = max(int(history.size), 1)
    score, hits = history_colisten(item_indices, history, neighbors, neighbor_weights)
    out[:, 12] = score
    out[:, 13] = score / n_history
    out[:, 14] = hits / n_history
    out[:, 15] = candidate_colisten(item_indices, history, neighbors, neighbor_weights)
    weight, inverse_rank, reverse = seed_colisten(item_indices, seed_index, neighbors, neighbor_weights)
    out[:, 16] = weight
    out[:, 17] = inverse_rank
    out[:, 18] = reverse
    out[:, 19] = np.log1p(history.size)
    negative, _ = history_colisten(item_indices, history, negatives, negative_weights)
    out[:, 20] = score + negative
    for column, source in _RANKED:
        out[:, column] = rank_log(out[:, source])
    return out
