"""EASE (Steck 2019): a closed-form item–item linear model, ``B = I - P / diag(P)``,
``P = (XᵀX + λI)⁻¹`` on binary plays.

The dense inverse is cubic in the number of items, so EASE is fit on the items with at least
``min_listeners`` listeners, at most ``max_items`` of them (the most popular); other items score 0
(ties then break by popularity). A user's scores are ``x_u B``; the seed's are its row of ``B``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from models.baselines.base import F64, I64, ScoringBaseline
from models.item_neighbors import ease_weights


@dataclass(frozen=True)
class EaseConfig:
    regularization: float = 100.0
    min_listeners: int = 2
    max_items: int = 8000

    def summary(self) -> dict[str, object]:
        return {"lambda": self.regularization, "min_listeners": self.min_listeners, "max_items": self.max_items}


#: Tuned on the label part by the build.
EASE_GRID = (EaseConfig(regularization=50.0), EaseConfig(regularization=100.0), EaseConfig(regularization=200.0))


class EaseBaseline(ScoringBaseline):
    name = "ease"

    def __init__(self, history: sp.csr_matrix, config: EaseConfig) -> None:
        super().__init__(history)
        self.config = config
        binary = sp.csr_matrix(self.history, dtype=np.float32, copy=True)
        binary.data[:] = 1.0
        listeners = np.diff(binary.tocsc().indptr)
        eligible = np.flatnonzero(listeners >= config.min_listeners)
        if eligible.size > config.max_items:
            order = np.lexsort((eligible, -listeners[eligible]))
            eligible = np.sort(eligible[order[: config.max_items]])
        self.items = eligible.astype(np.int64)
        self._weights = ease_weights(self.history, config.regularization, self.items)
        x = sp.csc_matrix(binary[:, self.items])
        self._x = sp.csr_matrix(x)
        self._column = np.full(self.n_items, -1, dtype=np.int64)
        self._column[self.items] = np.arange(self.items.size)

    def user_scores(self, users: I64) -> F64:
        out = np.zeros((users.size, self.n_items), dtype=np.float64)
        if self.items.size:
            out[:, self.items] = np.asarray(self._x[users] @ self._weights, dtype=np.float64)
        return out

    def seed_scores(self, seed: int) -> F64:
        out = np.zeros(self.n_items, dtype=np.float64)
        column = int(self._column[seed])
        if column >= 0:
            out[self.items] = self._weights[column]
        return out


def fit_ease(history: sp.csr_matrix, config: EaseConfig) -> EaseBaseline:
    return EaseBaseline(history, config)


__all__ = ["EASE_GRID", "EaseBaseline", "EaseConfig", "fit_ease"]
