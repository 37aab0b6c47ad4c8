"""ALS without a ranker: items by inner product with the served retrieval query.

Home scores are ``item_vectors @ unit(user_vector)``; Now Playing uses the served query blend
(``features.query_vector.query_for``: ``w * unit(seed) + (1 - w) * unit(user)``), so this is the
ANN source alone over the whole catalogue. The same ALS configuration, tuned here on the label
part, is the one the served model's embeddings use.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from features.query_vector import query_for
from models.als import AlsConfig, Embeddings, train_als
from models.baselines.base import F64, I64, ScoringBaseline


def als_grid(base: AlsConfig) -> tuple[AlsConfig, ...]:
    """The ALS configurations tried on the label part (``base``'s seed and iterations; its factors
    and twice as many, since a wider ALS is the stronger baseline on small catalogues)."""
    from dataclasses import replace

    wide = replace(base, factors=2 * base.factors)
    return (
        replace(base, regularization=100.0, alpha=30.0, confidence="binary"),
        replace(base, regularization=50.0, alpha=15.0, confidence="binary"),
        replace(base, regularization=200.0, alpha=60.0, confidence="binary"),
        replace(base, regularization=30.0, alpha=10.0, confidence="binary"),
        replace(base, regularization=1.0, alpha=1.0, confidence="log1p"),
        replace(wide, regularization=100.0, alpha=30.0, confidence="binary"),
        replace(wide, regularization=200.0, alpha=60.0, confidence="binary"),
    )


class AlsBaseline(ScoringBaseline):
    name = "als"

    def __init__(self, history: sp.csr_matrix, embeddings: Embeddings, config: AlsConfig) -> None:
        super().__init__(history)
        self.config = config
        self.embeddings = embeddings
        self._zeros = np.zeros(embeddings.item_vectors.shape[1], dtype=np.float32)

    def user_scores(self, users: I64) -> F64:
        emb = self.embeddings
        vectors = emb.user_vectors[users]
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
        return np.asarray(vectors @ emb.item_vectors.T, dtype=np.float64)

    def scores(self, user: int, seed: int) -> F64:
        emb = self.embeddings
        if seed < 0:
            home: F64 = self.user_scores(np.array([user], dtype=np.int64))[0]
            return home
        query = query_for(emb.item_vectors[seed], emb.user_vectors[user], self._zeros, seed_weight=self.seed_weight)
        return np.asarray(emb.item_vectors @ query, dtype=np.float64)


def fit_als(history: sp.csr_matrix, config: AlsConfig) -> AlsBaseline:
    return AlsBaseline(history, train_als(history, config), config)


__all__ = ["AlsBaseline", "als_grid", "fit_als"]
