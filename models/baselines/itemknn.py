"""ItemKNN: cosine item–item similarity (log1p play weights, shrinkage), top-``k`` neighbours.

``sim(i, j) = x_i · x_j / (|x_i| |x_j| + shrink)`` over log1p-weighted play columns, each item's
``k`` most similar items kept (``models.item_neighbors`` with ``beta = 0.5``, so it scales like the
served neighbour table). A user's score for ``j`` is ``sum_i log1p(plays[u, i]) * sim(i, j)``
over the items ``i`` they played; the seed's scores are its own similarity row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from models.baselines.base import F64, I64, ScoringBaseline
from models.item_neighbors import NeighborConfig, build_item_neighbors


@dataclass(frozen=True)
class ItemKnnConfig:
    shrink: float = 50.0
    k: int = 200

    def summary(self) -> dict[str, object]:
        return {"shrink": self.shrink, "k": self.k, "weighting": "log1p", "similarity": "cosine"}


#: Tuned on the label part by the build.
ITEMKNN_GRID = (ItemKnnConfig(shrink=10.0), ItemKnnConfig(shrink=50.0), ItemKnnConfig(shrink=200.0))


class ItemKnnBaseline(ScoringBaseline):
    name = "itemknn"

    def __init__(self, history: sp.csr_matrix, config: ItemKnnConfig) -> None:
        super().__init__(history)
        self.config = config
        table = build_item_neighbors(
            self.history,
            NeighborConfig(k=config.k, beta=0.5, shrink=config.shrink, weighting="log1p", min_listeners=1),
        )
        n = self.n_items
        rows = np.repeat(np.arange(n), table.k)
        cols = table.neighbors.reshape(-1).astype(np.int64)
        keep = cols >= 0
        self._similarity = sp.csr_matrix(
            (table.weights.reshape(-1)[keep].astype(np.float64), (rows[keep], cols[keep])), shape=(n, n)
        )
        weighted = sp.csr_matrix(self.history, dtype=np.float64, copy=True)
        weighted.data = np.log1p(weighted.data)
        self._weighted = weighted

    def user_scores(self, users: I64) -> F64:
        return np.asarray((self._weighted[users] @ self._similarity).toarray(), dtype=np.float64)

    def seed_scores(self, seed: int) -> F64:
        return np.asarray(self._similarity[seed].toarray(), dtype=np.float64).reshape(-1)


def fit_itemknn(history: sp.csr_matrix, config: ItemKnnConfig) -> ItemKnnBaseline:
    return ItemKnnBaseline(history, config)


__all__ = ["ITEMKNN_GRID", "ItemKnnBaseline", "ItemKnnConfig", "fit_itemknn"]
