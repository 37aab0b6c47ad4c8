"""Item–item co-listen neighbours: lookups shared by training, the candidate sources and features.

The neighbour table is two aligned arrays built offline (``models.item_neighbors``) and stored in
the bundle:

- ``neighbors`` int32 [n_items, K]: row ``i`` lists the items most co-listened with item ``i``,
  best first, padded with -1;
- ``weights`` float32 [n_items, K]: the similarity of each neighbour (0.0 where padded), > 0
  elsewhere and non-increasing along the row.

Every function here is pure (never mutates its inputs) and touches only the rows of the items it
is given, so it stays cheap on a 1,000,000-item catalog: no dense ``n_items`` scratch arrays.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]


def _valid(items: npt.NDArray[np.integer], n_rows: int) -> I64:
    items = np.asarray(items, dtype=np.int64).reshape(-1)
    return items[(items >= 0) & (items < n_rows)]


def _matches(values: npt.NDArray[np.integer], sorted_keys: I64) -> tuple[npt.NDArray[np.bool_], I64]:
    """For each value, whether it is in ``sorted_keys`` and its position there (clipped)."""
    if sorted_keys.size == 0:
        return np.zeros(values.shape, dtype=np.bool_), np.zeros(values.shape, dtype=np.int64)
    pos = np.searchsorted(sorted_keys, values)
    pos = np.minimum(pos, sorted_keys.size - 1)
    return sorted_keys[pos] == values, pos.astype(np.int64)


def history_colisten(candidates: I64, history: I64, neighbors: I32, weights: F32) -> tuple[F32, F32]:
    """How strongly the user's history points at each candidate through the neighbour table.

    Returns ``(score, hits)``, both float32 [n] in candidate order: ``score[j]`` is the sum over
    history items ``h`` of ``weight(h → candidates[j])`` (0 when ``candidates[j]`` is in no history
    item's row); ``hits[j]`` counts those history items. Duplicate history items count once.
    """
    candidates = np.asarray(candidates, dtype=np.int64).reshape(-1)
    n = candidates.size
    if n == 0 or neighbors.shape[1] == 0:
        return np.zeros(n, dtype=np.float32), np.zeros(n, dtype=np.float32)
    history = np.unique(_valid(history, neighbors.shape[0]))
    if history.size == 0:
        return np.zeros(n, dtype=np.float32), np.zeros(n, dtype=np.float32)
    rows = neighbors[history].reshape(-1)
    row_weights = weights[history].reshape(-1)
    order = np.argsort(candidates, kind="stable")
    sorted_candidates = candidates[order]
    # A membership pass first (numpy picks a lookup table when the value range is small), then a
    # binary search for the few entries that hit: searching every entry in random order is what
    # cost time (~4,000 entries per request).
    hit = np.flatnonzero(np.isin(rows, sorted_candidates))
    found, pos = _matches(rows[hit].astype(np.int64), sorted_candidates)
    slot = order[pos[found]]
    score = np.bincount(slot, weights=row_weights[hit[found]], minlength=n).astype(np.float32)
    hits = np.bincount(slot, minlength=n).astype(np.float32)
    # Duplicate candidates: every copy gets the value of its item.
    if n > 1 and bool(np.any(sorted_candidates[1:] == sorted_candidates[:-1])):
        score, hits = _spread(score, candidates), _spread(hits, candidates)
    return score, hits


def _spread(values: F32, candidates: I64) -> F32:
    """Give every copy of a candidate the total of ``values`` over its copies (matches land on one copy)."""
    unique, inverse = np.unique(candidates, return_inverse=True)
    totals = np.bincount(inverse, weights=values, minlength=unique.size)
    return totals[inverse].astype(np.float32)


def candidate_colisten(candidates: I64, history: I64, neighbors: I32, weights: F32) -> F32:
    """The reverse direction: for each candidate, the summed weight of its own neighbours that are
    in the history (float32 [n]; 0 for candidates outside the table)."""
    candidates = np.asarray(candidates, dtype=np.int64).reshape(-1)
    n = candidates.size
    history = np.unique(_valid(history, neighbors.shape[0]))
    if n == 0 or history.size == 0:
        return np.zeros(n, dtype=np.float32)
    inside = (candidates >= 0) & (candidates < neighbors.shape[0])
    safe = np.where(inside, candidates, 0)
    rows = neighbors[safe]
    # A lookup table over the history's value range (at most n_items booleans), not a binary
    # search per entry: n x K entries (50,000 at 500 candidates, K = 100) against the history.
    found = np.isin(rows, history, kind="table") & inside[:, None]
    hit_rows, hit_columns = np.nonzero(found)
    totals: F32 = np.bincount(hit_rows, weights=weights[safe[hit_rows], hit_columns], minlength=n).astype(np.float32)
    return totals


def seed_colisten(candidates: I64, seed: int, neighbors: I32, weights: F32) -> tuple[F32, F32, F32]:
    """Seed–candidate co-listen features, float32 [n] each, in candidate order.

    Returns ``(weight, inverse_rank, reverse_weight)``: the candidate's weight in the seed's
    neighbour row (0 if absent), ``1 / (1 + rank)`` of its position there (0 if absent), and the
    seed's weight in the candidate's own row (0 if absent). All zeros when ``seed < 0`` (Home).
    """
    candidates = np.asarray(candidates, dtype=np.int64).reshape(-1)
    n = candidates.size
    zeros = np.zeros(n, dtype=np.float32)
    if seed < 0 or seed >= neighbors.shape[0] or n == 0:
        return zeros, zeros.copy(), zeros.copy()
    row = neighbors[seed].astype(np.int64)
    row_weights = weights[seed]
    valid = row >= 0
    row, row_weights = row[valid], row_weights[valid]
    if row.size:
        order = np.argsort(row, kind="stable")
        found, pos = _matches(candidates, row[order])
        rank = order[pos]
        weight = np.where(found, row_weights[rank], 0.0).astype(np.float32)
        inverse_rank = np.where(found, 1.0 / (1.0 + rank), 0.0).astype(np.float32)
    else:
        weight, inverse_rank = zeros, zeros.copy()
    inside = (candidates >= 0) & (candidates < neighbors.shape[0])
    safe = np.where(inside, candidates, 0)
    their_rows = neighbors[safe]
    hit = (their_rows == seed) & inside[:, None]
    reverse = np.where(hit, weights[safe], 0.0).sum(axis=1).astype(np.float32)
    return weight, inverse_rank, reverse


def top_colisten(history: I64, neighbors: I32, weights: F32, n: int, exclude: I64 | None = None) -> tuple[I64, F32]:
    """The ``n`` items with the highest history co-listen score (``history_colisten``'s score).

    Items in ``history`` and in ``exclude`` are skipped. Returns ``(items, scores)`` best first
    (ties by item index), at most ``n`` long; empty when the history has no neighbours.
    """
    history = np.unique(_valid(history, neighbors.shape[0]))
    if n <= 0 or history.size == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    rows = neighbors[history].reshape(-1).astype(np.int64)
    row_weights = weights[history].reshape(-1)
    keep = rows >= 0
    blocked = history if exclude is None else np.union1d(history, np.asarray(exclude, dtype=np.int64))
    found, _ = _matches(rows, blocked)
    keep &= ~found
    rows, row_weights = rows[keep], row_weights[keep]
    if rows.size == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    items, inverse = np.unique(rows, return_inverse=True)
    scores = np.bincount(inverse, weights=row_weights, minlength=items.size)
    if items.size > n:
        part = np.argpartition(-scores, n - 1)[:n]
        items, scores = items[part], scores[part]
    order = np.lexsort((items, -scores))
    return items[order].astype(np.int64), scores[order].astype(np.float32)


def seed_neighbors(seed: int, neighbors: I32, weights: F32, n: int) -> tuple[I64, F32]:
    """The first ``n`` entries of the seed's neighbour row (padding dropped), best first."""
    if seed < 0 or seed >= neighbors.shape[0] or n <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    row = np.asarray(neighbors[seed][:n], dtype=np.int64)
    row_weights = np.asarray(weights[seed][:n], dtype=np.float32)
    valid = row >= 0
    return row[valid], row_weights[valid]


__all__ = [
    "candidate_colisten",
    "history_colisten",
    "seed_colisten",
    "seed_neighbors",
    "top_colisten",
]
