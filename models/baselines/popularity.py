"""Popularity: items by listener count in the fit data; the seed and the user do not matter."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from models.baselines.base import F64, I64, ScoringBaseline


class PopularityBaseline(ScoringBaseline):
    """Scores = listener counts (Home and Now Playing alike; the seed is only excluded)."""

    name = "popularity"

    def __init__(self, history: sp.csr_matrix) -> None:
        super().__init__(history)
        self._listeners = np.diff(self.history.tocsc().indptr).astype(np.float64)

    def user_scores(self, users: I64) -> F64:
        return np.tile(self._listeners, (users.size, 1))


def fit_popularity(history: sp.csr_matrix) -> PopularityBaseline:
    return PopularityBaseline(history)


__all__ = ["PopularityBaseline", "fit_popularity"]
