"""Implicit-feedback ALS embeddings (``implicit``, CPU, seeded).

Confidence: ``binary`` (every play = 1, confidence ``1 + alpha``) or ``log1p`` play counts
(``1 + alpha * log1p(plays)``); ``implicit`` applies ``alpha`` itself. On HetRec Last.fm,
tuned on the label part, binary confidence with regularization 100 and alpha 30 was best (see
``DEFAULT_ALS``); the build re-tunes on the label part (``models.baselines.als``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

F32 = npt.NDArray[np.float32]
Confidence = Literal["binary", "log1p", "bm25"]


@dataclass(frozen=True)
class AlsConfig:
    factors: int = 64
    regularization: float = 100.0
    alpha: float = 30.0
    confidence: Confidence = "binary"
    iterations: int = 15
    seed: int = 0
    threads: int = 2

    def summary(self) -> dict[str, object]:
        out = asdict(self)
        out.pop("threads")
        return out


DEFAULT_ALS = AlsConfig()


@dataclass(frozen=True)
class Embeddings:
    """ALS vectors: ``item_vectors`` [n_items, d], ``user_vectors`` [n_users, d], float32."""

    item_vectors: F32
    user_vectors: F32
    item_norms: F32


def confidence(plays: sp.csr_matrix, kind: Confidence) -> sp.csr_matrix:
    """The matrix ALS fits (before ``alpha``): binary, log1p or BM25-weighted plays (float32 CSR)."""
    if kind == "bm25":
        from implicit.nearest_neighbours import bm25_weight

        weighted = sp.csr_matrix(bm25_weight(plays, K1=100, B=0.8))
    elif kind in ("binary", "log1p"):
        weighted = sp.csr_matrix(plays, dtype=np.float32, copy=True)
        weighted.eliminate_zeros()
        weighted.data = np.ones_like(weighted.data) if kind == "binary" else np.log1p(weighted.data)
    else:
        raise ValueError(f"unknown confidence {kind!r}; use 'binary', 'log1p' or 'bm25'")
    return sp.csr_matrix(weighted, dtype=np.float32)


def train_als(plays: sp.csr_matrix, config: AlsConfig = DEFAULT_ALS) -> Embeddings:
    """Fit ALS on ``plays`` (users × items) and return float32 vectors.

    Deterministic for a given ``config`` (``random_state`` seeds the factor initialisation; BLAS
    runs single-threaded inside ``implicit``'s own parallel loop). Items nobody played get zero
    vectors so they never rank by noise.
    """
    from implicit.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):  # implicit parallelises itself; BLAS threads would oversubscribe
        model = AlternatingLeastSquares(
            factors=config.factors,
            regularization=config.regularization,
            alpha=config.alpha,
            iterations=config.iterations,
            num_threads=config.threads,
            random_state=config.seed,
            use_gpu=False,
        )
        model.fit(confidence(plays, config.confidence), show_progress=False)
    items = np.ascontiguousarray(model.item_factors, dtype=np.float32)
    users = np.ascontiguousarray(model.user_factors, dtype=np.float32)
    items[np.diff(sp.csc_matrix(plays).indptr) == 0] = 0.0
    return Embeddings(
        item_vectors=items, user_vectors=users, item_norms=np.linalg.norm(items, axis=1).astype(np.float32)
    )


__all__ = ["DEFAULT_ALS", "AlsConfig", "Confidence", "Embeddings", "confidence", "train_als"]
