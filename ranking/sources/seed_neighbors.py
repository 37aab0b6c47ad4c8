"""Now Playing: the seed item's co-listen neighbours from the bundle's item-neighbour table."""

from __future__ import annotations

import numpy as np

from features.item_neighbors import I32, seed_neighbors
from ranking.types import F32, Candidates, Query, UserFeatures


class SeedNeighborSource:
    """Returns the first ``params.seed_neighbors_size`` entries of the seed's neighbour row, best
    first, scored by their co-listen weight. In-process (a row read), so untimed; enabled only
    for queries with a seed and a non-zero size."""

    name = "seed_neighbors"
    timed = False

    def __init__(self, neighbors: I32, weights: F32) -> None:
        self._neighbors = neighbors
        self._weights = weights

    def enabled(self, query: Query) -> bool:
        return query.seed_item is not None and query.params.seed_neighbors_size > 0

    async def fetch(self, query: Query, user: UserFeatures, source_id: int) -> Candidates:
        seed = -1 if query.seed_item is None else query.seed_item
        items, weights = seed_neighbors(seed, self._neighbors, self._weights, query.params.seed_neighbors_size)
        return Candidates(items, weights, np.full(len(items), source_id, np.int8))
