"""Candidate features: item arrays from the bundle joined with user × item cross features."""

from __future__ import annotations

import numpy as np

from features.item_neighbors import I32
from features.ranker_features import ranker_features
from ranking.types import F32, Candidates, Query, UserFeatures


class RankerFeatureHydrator:
    """Builds the ranker input matrix with the same function training used (no skew).

    ``retrieval_score`` is dot(retrieval query, item) for every candidate, so candidates of every
    source get the same feature as ANN ones. The co-listen features use the bundle's neighbour
    tables (positive and negative) with the user's history = known items ∪ recent plays.
    """

    name = "ranker_features"

    def __init__(
        self,
        item_vectors: F32,
        item_norms: F32,
        item_stats: F32,
        neighbors: I32,
        neighbor_weights: F32,
        negatives: I32,
        negative_weights: F32,
    ) -> None:
        self._item_vectors = item_vectors
        self._item_norms = item_norms
        self._item_stats = item_stats
        self._neighbors = neighbors
        self._neighbor_weights = neighbor_weights
        self._negatives = negatives
        self._negative_weights = negative_weights

    def enabled(self, query: Query) -> bool:
        return True

    def hydrate(self, query: Query, user: UserFeatures, candidates: Candidates) -> F32:
        items = candidates.items
        seed = None if query.seed_item is None else np.asarray(self._item_vectors[query.seed_item], np.float32)
        return ranker_features(
            item_indices=items,
            item_vectors=np.asarray(self._item_vectors[items], dtype=np.float32),
            item_stats=np.asarray(self._item_stats[items], dtype=np.float32),
            item_norms=self._item_norms[items],
            query_vector=user.query_vector,
            user_vector=user.vector,
            user_stats=user.stats,
            recent_vector=user.recent_vector,
            seed_vector=seed,
            seed_index=-1 if query.seed_item is None else query.seed_item,
            history_items=user.history_items,
            neighbors=self._neighbors,
            neighbor_weights=self._neighbor_weights,
            negatives=self._negatives,
            negative_weights=self._negative_weights,
        )
