"""Popularity fallback source: the catalog's most popular items, in-process, never failing."""

from __future__ import annotations

import numpy as np

from ranking.types import I64, Candidates, Query, UserFeatures


class PopularitySource:
    """Returns the top ``params.popularity_size`` items by popularity, scored 1 → 0 by rank."""

    name = "popularity"
    timed = False

    def __init__(self, popularity: I64) -> None:
        self._popularity = np.asarray(popularity, dtype=np.int64)
        self._scores = np.linspace(1.0, 0.0, num=len(self._popularity), endpoint=False, dtype=np.float32)

    def enabled(self, query: Query) -> bool:
        return True

    async def fetch(self, query: Query, user: UserFeatures, source_id: int) -> Candidates:
        n = query.params.popularity_size
        items = self._popularity[:n]
        return Candidates(items, self._scores[:n], np.full(len(items), source_id, np.int8))
