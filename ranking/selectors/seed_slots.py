"""Now Playing's seed slots: after a few open positions, the seed's nearest neighbours come first.

The ranker orders candidates by what this user is likely to play; on Now Playing that alone drifts
back to the user's Home list. ``SeedSlots`` keeps the first ``params.open_slots`` positions in
score order and then moves the candidates among the seed's ``SEED_SLOT_NEIGHBOURS`` nearest
neighbours (the bundle's item-neighbour row of the seed) ahead of the others, each group still in
score order — so the list opens with the user's best picks and then follows what is playing.
Measured on HetRec (README, "Offline quality"): with the ranker's labels tied to held-out items,
two open slots keep Now Playing NDCG@10 above 0.20 while most of the list follows the seed.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from features.item_neighbors import I32
from ranking.types import I64, OPEN_SLOTS_OFF, Query

#: How many of the seed's neighbours (best first in its neighbour row) count as "near the seed".
SEED_SLOT_NEIGHBOURS: Final[int] = 50


class SeedSlots:
    """Reorders a score order for a query with a seed (see the module docstring); a pure function
    of its inputs, vectorised (no Python loop over candidates)."""

    def __init__(self, neighbors: I32, depth: int = SEED_SLOT_NEIGHBOURS) -> None:
        self._neighbors = neighbors
        self._depth = depth

    def applies(self, query: Query) -> bool:
        seed = query.seed_item
        return (
            seed is not None
            and 0 <= seed < self._neighbors.shape[0]
            and query.params.open_slots < min(query.limit, OPEN_SLOTS_OFF)
        )

    def reorder(self, query: Query, items: I64, order: I64) -> I64:
        """``order`` (row indices, best first) with the seed's neighbours moved up after the open
        slots; unchanged when ``applies`` is False or the seed has no neighbours."""
        if not self.applies(query):
            return order
        assert query.seed_item is not None
        row = np.asarray(self._neighbors[query.seed_item][: self._depth])
        row = row[row >= 0]
        k = query.params.open_slots
        if row.size == 0 or order.size <= k:
            return order
        rest = order[k:]
        near = np.isin(items[rest], row)
        return np.concatenate((order[:k], rest[near], rest[~near]))
