"""Query-time user features from the feature store (one round trip)."""

from __future__ import annotations

import numpy as np

from features.schema import USER_STATS_DEFAULTS
from features.store import FeatureStore
from models.id_index import IdIndex
from ranking.query import retrieval_query
from ranking.types import F32, I64, Query, UserFeatures

#: Recent plays averaged into the recent-plays vector.
RECENT_VECTOR_ITEMS = 10


class UserFeatureHydrator:
    """Reads the user's long-term vector, stats, known items and recent plays/skips; maps item ids
    to indices.

    Unknown users get cold-start defaults (not a degradation); store failures raise and the
    executor substitutes ``fallback``. Known items outside the catalog (a snapshot of another
    bundle) are dropped.
    """

    name = "user_features"

    def __init__(self, store: FeatureStore, index_of: IdIndex, item_vectors: F32) -> None:
        self._store = store
        self._index_of = index_of
        self._item_vectors = item_vectors
        self._dim = int(item_vectors.shape[1])
        self._n_items = int(item_vectors.shape[0])
        self._default_stats = np.asarray(USER_STATS_DEFAULTS, dtype=np.float32)
        self._zeros = np.zeros(self._dim, dtype=np.float32)
        self._no_items = np.empty(0, dtype=np.int64)

    def enabled(self, query: Query) -> bool:
        return True

    async def hydrate(self, query: Query, timeout_s: float) -> UserFeatures:
        record = await self._store.get_user(query.user_id, timeout_s)
        recent = self._indices(record.recent_plays)
        skipped = self._indices(record.recent_skips)
        recent_vector = (
            np.asarray(self._item_vectors[recent[:RECENT_VECTOR_ITEMS]], dtype=np.float32).mean(axis=0)
            if len(recent)
            else self._zeros
        )
        vector = record.vector if record.vector is not None else self._zeros
        known = np.asarray(record.known_items, dtype=np.int64)
        if known.size > 1 and bool(np.any(known[1:] <= known[:-1])):  # the filter needs ascending, unique
            known = np.unique(known)
        if known.size and (known[0] < 0 or known[-1] >= self._n_items):
            known = known[(known >= 0) & (known < self._n_items)]
        return UserFeatures(
            vector=vector,
            stats=record.stats if record.stats is not None else self._default_stats,
            recent_items=recent,
            recent_vector=recent_vector,
            query_vector=retrieval_query(query, vector, recent_vector, self._item_vectors),
            skipped_items=skipped,
            cold_start=record.vector is None,
            known_items=known,
        )

    def fallback(self, query: Query) -> UserFeatures:
        return UserFeatures(
            vector=self._zeros,
            stats=self._default_stats,
            recent_items=self._no_items,
            recent_vector=self._zeros,
            query_vector=retrieval_query(query, self._zeros, self._zeros, self._item_vectors),
            skipped_items=self._no_items,
            cold_start=True,
            known_items=self._no_items,
        )

    def _indices(self, item_ids: tuple[str, ...]) -> I64:
        return self._index_of.rows(item_ids) if item_ids else self._no_items
