"""Candidate features: item arrays from the bundle joined with user × item cross features."""

from __future__ import annotations

import numpy as np

from features.ranker_features import ranker_features
from ranking.types import F32, Candidates, Query, UserFeatures


class RankerFeatureHydrator:
    """Builds the ranker input matrix with the same function training used (no skew).

    ``retrieval_score`` is recomputed as dot(retrieval query, item) for every candidate, so
    popularity-source candidates get the same feature as ANN ones.
    """

    name = "ranker_features"

    def __init__(self, item_vectors: F32, item_norms: F32, item_stats: F32) -> None:
        self._item_vectors = item_vectors
        self._item_norms = item_norms
        self._item_stats = item_stats

    def enabled(self, query: Query) -> bool:
        return True

    def hydrate(self, query: Query, user: UserFeatures, candidates: Candidates) -> F32:
        items = candidates.items
        seed = None if query.seed_item is None else np.asarray(self._item_vectors[query.seed_item], np.float32)
        vectors = np.asarray(self._item_vectors[items], dtype=np.float32)
        return ranker_features(
            item_vectors=vectors,
            item_stats=np.asarray(self._item_stats[items], dtype=np.float32),
            item_norms=self._item_norms[items],
            retrieval_scores=vectors @ user.query_vector,
            user_vector=user.vector,
            user_stats=user.stats,
            recent_vector=user.recent_vector,
            seed_vector=seed,
        )
