"""Items co-listened with the user's history (known items and recent plays)."""

from __future__ import annotations

import numpy as np

from features.item_neighbors import I32, top_colisten
from ranking.types import F32, Candidates, Query, UserFeatures


class CoListenSource:
    """Returns the top ``params.co_listen_size`` items by history co-listen score (the sum, over
    the user's known items and recent plays, of their neighbour weight towards the item), best
    first; history items and the seed are never returned. Nothing for a user without history.
    In-process and bounded by (history size × K) rows, so untimed.
    """

    name = "co_listen"
    timed = False

    def __init__(self, neighbors: I32, weights: F32) -> None:
        self._neighbors = neighbors
        self._weights = weights

    def enabled(self, query: Query) -> bool:
        return query.params.co_listen_size > 0 and self._neighbors.shape[1] > 0

    async def fetch(self, query: Query, user: UserFeatures, source_id: int) -> Candidates:
        history = user.history_items
        if not len(history):
            return Candidates.empty()
        exclude = None if query.seed_item is None else np.array([query.seed_item], dtype=np.int64)
        items, scores = top_colisten(history, self._neighbors, self._weights, query.params.co_listen_size, exclude)
        return Candidates(items, scores, np.full(len(items), source_id, np.int8))
