"""The item–item co-listen neighbour table: each item's ``k`` most co-listened items.

Similarity of item ``i`` to item ``j`` (row ``i``, neighbour ``j``), from a user × item play
matrix, with binary or log1p-weighted plays ``x``:

    co(i, j) = sum over users u of x[u, i] * x[u, j]
    sim(i, j) = co(i, j) / (n_i ** (1 - beta) * n_j ** beta + shrink)

where ``n_i = sum_u x[u, i] ** 2`` (the listener count for binary weights). ``beta`` trades
"what the item's listeners also play" (0: raw co-listen counts, favours popular neighbours) against
cosine (0.5). Items with fewer than ``min_listeners`` listeners get neither a row nor a place in
other rows; pairs with fewer than ``min_common`` common listeners are dropped.

The product runs over row chunks of the sparse matrix (``X[:, chunk].T @ X``), so memory stays
bounded on a 1,000,000-item catalog; the top ``k`` per row is selected without a per-row Python
loop. Ties break by the smaller item index, so the table is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

F32 = npt.NDArray[np.float32]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
Weighting = Literal["binary", "log1p"]


@dataclass(frozen=True)
class NeighborConfig:
    """How the table is built (recorded in the bundle manifest).

    ``method``: ``"cooccurrence"`` (the similarity in the module docstring) or ``"ease"`` (the
    positive EASE weights, ``build_ease_neighbors``); ``"ease"`` falls back to co-occurrence when
    more than ``ease_max_items`` items have ``min_listeners`` listeners (the dense inverse would
    not fit).
    """

    k: int = 50
    method: Literal["cooccurrence", "ease"] = "cooccurrence"
    beta: float = 0.35
    shrink: float = 10.0
    weighting: Weighting = "binary"
    min_listeners: int = 2
    min_common: int = 1
    ease_regularization: float = 100.0
    ease_max_items: int = 7_000
    #: EASE method: the most negative weights kept per row (``NeighborTable.negatives``); 0: none.
    negative_k: int = 100
    #: Upper bound on nonzeros of one chunk's co-listen product (memory knob, not a result knob).
    chunk_pairs: int = 20_000_000

    def summary(self) -> dict[str, object]:
        common = {"k": self.k, "min_listeners": self.min_listeners}
        if self.method == "ease":
            return {
                **common,
                "method": "ease",
                "lambda": self.ease_regularization,
                "max_items": self.ease_max_items,
                "negative_k": self.negative_k,
            }
        return {
            **common,
            "method": "cooccurrence",
            "beta": self.beta,
            "shrink": self.shrink,
            "weighting": self.weighting,
            "min_common": self.min_common,
        }


@dataclass(frozen=True)
class NeighborTable:
    """``neighbors`` int32 [n_items, k] best first, -1 padded; ``weights`` float32, 0 where padded.

    ``negatives`` / ``negative_weights`` [n_items, k_neg]: the EASE method's most negative weights
    per row (most negative first, -1 / 0 padded), so that positive + negative sums over a history
    give the (row-truncated) EASE score; ``k_neg`` is 0 for the co-occurrence method.
    """

    neighbors: I32
    weights: F32
    negatives: I32
    negative_weights: F32

    @property
    def k(self) -> int:
        return int(self.neighbors.shape[1])

    def coverage(self) -> float:
        """Share of items with at least one neighbour."""
        if self.neighbors.shape[0] == 0:
            return 0.0
        return float(np.mean(self.neighbors[:, 0] >= 0)) if self.k else 0.0


def _weighted(plays: sp.csr_matrix, weighting: Weighting) -> sp.csr_matrix:
    x = sp.csr_matrix(plays, dtype=np.float32, copy=True)
    x.eliminate_zeros()
    if weighting == "binary":
        x.data[:] = 1.0
    elif weighting == "log1p":
        x.data = np.log1p(x.data)
    else:
        raise ValueError(f"unknown weighting {weighting!r}; use 'binary' or 'log1p'")
    return x


def _chunks(cost: I64, budget: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) ranges whose summed ``cost`` stays near ``budget`` (>= 1 item)."""
    bounds: list[tuple[int, int]] = []
    cumulative = np.cumsum(cost)
    start = 0
    n = cost.size
    while start < n:
        base = cumulative[start - 1] if start else 0
        stop = int(np.searchsorted(cumulative, base + budget, side="right"))
        stop = min(n, max(stop, start + 1))
        bounds.append((start, stop))
        start = stop
    return bounds


def _top_k_rows(product: sp.csr_matrix, k: int) -> tuple[I64, I64, I64, F32]:
    """(row, rank, column, value) of the top ``k`` entries of each row, ties by column."""
    product.sum_duplicates()
    counts = np.diff(product.indptr)
    rows = np.repeat(np.arange(product.shape[0], dtype=np.int64), counts)
    cols = product.indices.astype(np.int64)
    vals = product.data
    order = np.lexsort((cols, -vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    starts = np.repeat(product.indptr[:-1], counts)
    rank = np.arange(rows.size, dtype=np.int64) - starts
    keep = rank < k
    return rows[keep], rank[keep], cols[keep], vals[keep].astype(np.float32)


def build_item_neighbors(plays: sp.csr_matrix, config: NeighborConfig | None = None) -> NeighborTable:
    """Build the neighbour table from a user × item play matrix (see the module docstring)."""
    config = config or NeighborConfig()
    if config.k < 1:
        raise ValueError("NeighborConfig.k must be >= 1")
    if config.method == "ease":
        listeners = np.diff(sp.csc_matrix(plays).indptr)
        if int(np.sum(listeners >= config.min_listeners)) <= config.ease_max_items:
            return build_ease_neighbors(plays, config)
    return _build_cooccurrence(plays, config)


def effective_method(plays: sp.csr_matrix, config: NeighborConfig) -> str:
    """The method ``build_item_neighbors`` uses for ``plays`` (EASE may fall back)."""
    if config.method != "ease":
        return config.method
    listeners = np.diff(sp.csc_matrix(plays).indptr)
    return "ease" if int(np.sum(listeners >= config.min_listeners)) <= config.ease_max_items else "cooccurrence"


def ease_weights(plays: sp.csr_matrix, regularization: float, items: I64) -> F32:
    """EASE item–item weights ``B = I - P / diag(P)``, ``P = (XᵀX + λI)⁻¹`` (zero diagonal) over
    the columns ``items`` of the binarised ``plays``; float32 [len(items), len(items)], row ``i``
    holds item ``items[i]``'s weights towards the others (a user's score is ``x_u B``)."""
    x = sp.csc_matrix(plays, dtype=np.float32, copy=True)[:, items]
    x.data[:] = 1.0
    gram = np.asarray((x.T @ x).toarray(), dtype=np.float32)
    gram[np.diag_indices_from(gram)] += np.float32(regularization)
    inverse = np.linalg.inv(gram)  # float32: half the memory and time; λ keeps it well conditioned
    weights = np.asarray(-inverse / np.diag(inverse), dtype=np.float32)
    np.fill_diagonal(weights, 0.0)
    return weights


def build_ease_neighbors(plays: sp.csr_matrix, config: NeighborConfig) -> NeighborTable:
    """Row ``i`` = the ``k`` largest positive EASE weights ``B[i, j]`` (what item ``i`` in a history
    adds to item ``j``'s EASE score), over items with ``min_listeners`` listeners; ties by index.
    The negative table holds the ``negative_k`` most negative ``B[i, j]`` the same way."""
    n_items = plays.shape[1]
    listeners = np.diff(sp.csc_matrix(plays).indptr)
    items = np.flatnonzero(listeners >= config.min_listeners).astype(np.int64)
    neighbors = np.full((n_items, config.k), -1, dtype=np.int32)
    weights = np.zeros((n_items, config.k), dtype=np.float32)
    negatives = np.full((n_items, config.negative_k), -1, dtype=np.int32)
    negative_weights = np.zeros((n_items, config.negative_k), dtype=np.float32)
    if items.size >= 2:
        dense = ease_weights(plays, config.ease_regularization, items)
        positive = sp.csr_matrix(np.where(dense > 0, dense, 0.0).astype(np.float32))
        rows, rank, cols, vals = _top_k_rows(positive, config.k)
        neighbors[items[rows], rank] = items[cols].astype(np.int32)
        weights[items[rows], rank] = vals
        if config.negative_k > 0:
            # most negative first: the top-k of -B over its negative entries
            negative = sp.csr_matrix(np.where(dense < 0, -dense, 0.0).astype(np.float32))
            rows, rank, cols, vals = _top_k_rows(negative, config.negative_k)
            negatives[items[rows], rank] = items[cols].astype(np.int32)
            negative_weights[items[rows], rank] = -vals
    return NeighborTable(neighbors, weights, negatives, negative_weights)


def _build_cooccurrence(plays: sp.csr_matrix, config: NeighborConfig) -> NeighborTable:
    n_items = plays.shape[1]
    x = _weighted(plays, config.weighting)
    listeners = np.diff(x.tocsc().indptr)
    eligible = listeners >= config.min_listeners
    x = x @ sp.diags(eligible.astype(np.float32))  # drop rare items from every row and column
    x = sp.csr_matrix(x)
    x.eliminate_zeros()
    x_csc = x.tocsc()
    x_t = sp.csr_matrix(x_csc.T)  # items × users
    mass = np.asarray(x.multiply(x).sum(axis=0)).ravel().astype(np.float64)  # n_i
    left = np.power(np.maximum(mass, 1e-12), 1.0 - config.beta)
    right = np.power(np.maximum(mass, 1e-12), config.beta)

    neighbors = np.full((n_items, config.k), -1, dtype=np.int32)
    weights = np.zeros((n_items, config.k), dtype=np.float32)
    user_len = np.diff(x.indptr).astype(np.int64)
    # Cost of item i's row ~ sum over its listeners of their history length.
    cost = np.asarray(x_t @ user_len.astype(np.float64)).ravel().astype(np.int64) + 1
    x_bin = sp.csr_matrix(x, copy=True)
    x_bin.data[:] = 1.0
    x_t_bin = sp.csr_matrix(x_t, copy=True)
    x_t_bin.data[:] = 1.0
    for start, stop in _chunks(cost, max(1, config.chunk_pairs)):
        block = x_t[start:stop]
        if block.nnz == 0:
            continue
        co = sp.csr_matrix(block @ x)
        _zero_diagonal(co, start)
        if config.min_common > 1:
            common = sp.csr_matrix(x_t_bin[start:stop] @ x_bin)
            common.sum_duplicates()
            co = co.multiply(common >= config.min_common).tocsr()
        co.eliminate_zeros()
        if co.nnz == 0:
            continue
        r = np.repeat(np.arange(co.shape[0]), np.diff(co.indptr))
        denominator = left[start + r] * right[co.indices] + config.shrink
        co.data = (co.data / denominator).astype(np.float32)
        rows, rank, cols, vals = _top_k_rows(co, config.k)
        neighbors[start + rows, rank] = cols.astype(np.int32)
        weights[start + rows, rank] = vals
    return NeighborTable(neighbors, weights, np.full((n_items, 0), -1, np.int32), np.zeros((n_items, 0), np.float32))


def _zero_diagonal(block: sp.csr_matrix, start: int) -> None:
    """Zero the entries (r, start + r) of a row block in place (the item with itself)."""
    r = np.repeat(np.arange(block.shape[0]), np.diff(block.indptr))
    block.data[block.indices == start + r] = 0.0


__all__ = [
    "NeighborConfig",
    "NeighborTable",
    "build_ease_neighbors",
    "build_item_neighbors",
    "ease_weights",
    "effective_method",
]
