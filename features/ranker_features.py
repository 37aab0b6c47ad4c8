"""Ranker feature construction, shared verbatim by training and serving (no train/serve skew).

``ranker_features`` is a pure function of arrays; it never mutates its inputs.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from features.schema import N_RANKER_FEATURES

F32 = npt.NDArray[np.float32]
_EPS = np.float32(1e-6)


def unit(vector: F32) -> F32:
    """Return ``vector`` scaled to unit L2 norm (the zero vector stays zero)."""
    norm = float(np.linalg.norm(vector))
    if norm < _EPS:
        return np.zeros_like(vector)
    return (vector / norm).astype(np.float32)


def ranker_features(
    *,
    item_vectors: F32,
    item_stats: F32,
    item_norms: F32,
    retrieval_scores: F32,
    user_vector: F32,
    user_stats: F32,
    recent_vector: F32,
    seed_vector: F32 | None,
) -> F32:
    """Build the ranker input matrix in ``RANKER_FEATURES`` order.

    Args:
        item_vectors: [n, d] embeddings of the candidates.
        item_stats: [n, len(ITEM_STATS)] per-item statistics.
        item_norms: [n] L2 norms of ``item_vectors`` (precomputed in the bundle).
        retrieval_scores: [n] scores the candidates were retrieved with.
        user_vector: [d] long-term user vector (zeros for a cold-start user).
        user_stats: [len(USER_STATS)] user statistics.
        recent_vector: [d] mean vector of recently played items (zeros when none).
        seed_vector: [d] vector of the seed item on Now Playing, ``None`` on Home.

    Returns:
        float32 [n, N_RANKER_FEATURES].
    """
    n = item_vectors.shape[0]
    out = np.empty((n, N_RANKER_FEATURES), dtype=np.float32)
    safe_norms = np.maximum(item_norms, _EPS)
    user_norm = np.float32(np.linalg.norm(user_vector))
    dots = item_vectors @ user_vector
    out[:, 0] = retrieval_scores
    out[:, 1] = dots
    out[:, 2] = dots / (safe_norms * max(user_norm, _EPS)) if user_norm > _EPS else 0.0
    out[:, 3] = (item_vectors @ unit(recent_vector)) / safe_norms
    out[:, 4] = 0.0 if seed_vector is None else (item_vectors @ unit(seed_vector)) / safe_norms
    out[:, 5:7] = item_stats[:, :2]
    out[:, 7] = item_norms
    out[:, 8:10] = user_stats[:2]
    out[:, 10] = user_norm
    out[:, 11] = 0.0 if seed_vector is None else 1.0
    return out
