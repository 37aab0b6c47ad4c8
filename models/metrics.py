"""Ranking metrics shared by the offline evaluation, tuning and tests.

Every list metric takes ``ranked`` (item indices, best first) and returns a float in [0, 1].

- ``ndcg_at_k``: binary-relevance NDCG@k, ``DCG = Σ_{r<k, ranked[r] relevant} 1/log2(r+2)``
  over the ideal DCG of ``min(|relevant|, k)`` hits; 0.0 when nothing is relevant.
- ``recall_at_k``: ``|ranked[:k] ∩ relevant| / |relevant|``; 0.0 when nothing is relevant.
- ``precision_in_at_k``: ``|ranked[:k] ∩ targets| / k`` (a list shorter than k is penalised).
- ``overlap_at_k``: ``|top_k(a) ∩ top_k(b)| / max(|top_k(a)|, |top_k(b)|)`` (``/ k`` for full
  lists); 0.0 when both are empty.

Seed metrics (Now Playing), over a ``CoListen`` table built from the train+label parts (what the
served model knows) with co-listening counted over users OTHER than the one asking:

- **seed-neighbour precision@10** (``seed_neighbour_precision``): share of the top 10 that are
  among the seed's 50 most co-listened items. ``count(seed, j)`` = number of other users who have
  both the seed and ``j``; the 50 items with the highest count > 0 (ties: lower item index first;
  the seed itself excluded) form the neighbour set.
- **seed-conditioned NDCG@10** (``seed_conditioned_relevant`` + ``ndcg_at_k``): NDCG@10 where only
  the user's test items co-listened with the seed by at least one other user are relevant; queries
  whose conditioned relevant set is empty are skipped (the evaluation reports how many).
- **overlap@10 between two seeds** of one user and **overlap@10 with Home** (``overlap_at_k``).

``pick_seeds`` draws the Now Playing evaluation seeds: ``per_user`` distinct random known items
per user from one seeded generator, so every method is evaluated on the same seeds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

I64 = npt.NDArray[np.int64]

NDCG_K = 10
RECALL_K = 100
SEED_K = 10
SEED_NEIGHBOURS = 50
OVERLAP_K = 10


def ndcg_at_k(ranked: Sequence[int], relevant: set[int], k: int) -> float:
    """Binary-relevance NDCG@k: DCG of ``ranked[:k]`` over the ideal DCG (0.0 if no relevant)."""
    if not relevant or k <= 0:
        return 0.0
    dcg = sum(1.0 / math.log2(rank + 2) for rank, item in enumerate(ranked[:k]) if item in relevant)
    ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(len(relevant), k)))
    return dcg / ideal


def recall_at_k(ranked: Sequence[int], relevant: set[int], k: int) -> float:
    """Share of ``relevant`` found in ``ranked[:k]`` (0.0 if nothing is relevant)."""
    if not relevant or k <= 0:
        return 0.0
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def precision_in_at_k(ranked: Sequence[int], targets: set[int], k: int) -> float:
    """``|ranked[:k] ∩ targets| / k``: a list shorter than ``k`` counts its missing slots as misses."""
    if k <= 0:
        return 0.0
    return len(targets.intersection(ranked[:k])) / k


def overlap_at_k(a: Sequence[int], b: Sequence[int], k: int) -> float:
    """``|top_k(a) ∩ top_k(b)| / max(|top_k(a)|, |top_k(b)|)``; 0.0 when both lists are empty."""
    top_a, top_b = set(a[:k]), set(b[:k])
    size = max(len(top_a), len(top_b))
    if size == 0:
        return 0.0
    return len(top_a & top_b) / size


class CoListen:
    """Item co-listen counts from a user × item interaction matrix (any positive value = listened).

    ``counts(seed, exclude_user)`` is, per item ``j``, the number of users other than
    ``exclude_user`` who listened to both ``seed`` and ``j`` (computed on demand from the CSR/CSC
    pair: O(listeners of seed × their items) per call, no dense item × item matrix).
    """

    def __init__(self, interactions: sp.csr_matrix) -> None:
        binary = sp.csr_matrix(interactions, copy=True)
        binary.data = np.ones_like(binary.data, dtype=np.float32)
        binary.eliminate_zeros()
        binary.sort_indices()
        self._rows = binary
        self._cols = binary.tocsc()
        self.n_items = int(binary.shape[1])

    def listeners(self, item: int) -> I64:
        """Users who listened to ``item``, ascending."""
        cols = self._cols
        return np.sort(cols.indices[cols.indptr[item] : cols.indptr[item + 1]]).astype(np.int64)

    def counts(self, seed: int, exclude_user: int = -1) -> I64:
        """``[n_items]`` co-listen counts with ``seed`` over users other than ``exclude_user``."""
        users = self.listeners(seed)
        users = users[users != exclude_user]
        rows = self._rows
        if users.size == 0:
            return np.zeros(self.n_items, dtype=np.int64)
        starts, stops = rows.indptr[users], rows.indptr[users + 1]
        items = np.concatenate([rows.indices[s:e] for s, e in zip(starts.tolist(), stops.tolist(), strict=True)])
        return np.bincount(items, minlength=self.n_items).astype(np.int64)

    def top_neighbours(self, seed: int, exclude_user: int = -1, n: int = SEED_NEIGHBOURS) -> I64:
        """The ``n`` items most co-listened with ``seed`` (count > 0, seed excluded; ties: lower index)."""
        counts = self.counts(seed, exclude_user)
        counts[seed] = 0
        positive = np.flatnonzero(counts > 0)
        if positive.size == 0:
            return np.empty(0, dtype=np.int64)
        order = np.lexsort((positive, -counts[positive]))  # count desc, then item index asc
        return positive[order[:n]].astype(np.int64)

    def co_listened(self, seed: int, exclude_user: int = -1) -> I64:
        """Items co-listened with ``seed`` by at least one other user (seed excluded), ascending."""
        counts = self.counts(seed, exclude_user)
        counts[seed] = 0
        return np.flatnonzero(counts > 0).astype(np.int64)


def seed_neighbour_precision(
    ranked: Sequence[int],
    colisten: CoListen,
    seed: int,
    user: int,
    *,
    k: int = SEED_K,
    n_neighbours: int = SEED_NEIGHBOURS,
) -> float:
    """Seed-neighbour precision@k: share of ``ranked[:k]`` among the seed's top co-listened items."""
    neighbours = set(colisten.top_neighbours(seed, user, n_neighbours).tolist())
    return precision_in_at_k(ranked, neighbours, k)


def seed_conditioned_relevant(test_items: Iterable[int], colisten: CoListen, seed: int, user: int) -> set[int]:
    """The user's test items that at least one other user co-listened with ``seed``."""
    counts = colisten.counts(seed, user)
    return {int(i) for i in test_items if int(i) != seed and counts[int(i)] > 0}


def seed_targets(
    colisten: CoListen, seed: int, user: int, test_items: Iterable[int], n_neighbours: int = SEED_NEIGHBOURS
) -> tuple[set[int], set[int]]:
    """``(neighbours, conditioned)`` for one Now Playing query from one co-listen count: the seed's
    ``n_neighbours`` most co-listened items (as ``CoListen.top_neighbours``) and the user's test
    items co-listened with the seed (as ``seed_conditioned_relevant``), both over other users."""
    counts = colisten.counts(seed, user)
    counts[seed] = 0
    positive = np.flatnonzero(counts > 0)
    order = np.lexsort((positive, -counts[positive]))
    neighbours = {int(i) for i in positive[order[:n_neighbours]]}
    conditioned = {int(i) for i in test_items if counts[int(i)] > 0}
    return neighbours, conditioned


def pick_seeds(known: sp.csr_matrix, users: Sequence[int] | I64, *, seed: int, per_user: int = 2) -> I64:
    """``[len(users), per_user]`` distinct random known items per user (-1 where a user has fewer).

    One ``np.random.default_rng(seed)`` draws for the users in order, so the seeds are a pure
    function of (known matrix, users, seed, per_user).
    """
    rng = np.random.default_rng(seed)
    out = np.full((len(users), per_user), -1, dtype=np.int64)
    for row, u in enumerate(np.asarray(users, dtype=np.int64).tolist()):
        items = np.sort(known.indices[known.indptr[u] : known.indptr[u + 1]])
        if items.size == 0:
            continue
        take = min(per_user, int(items.size))
        out[row, :take] = rng.choice(items, size=take, replace=False)
    return out


def mean(values: Sequence[float]) -> float:
    """Mean of ``values``; NaN for an empty sequence (a metric with no query is "not measured")."""
    return float(np.mean(values)) if len(values) else float("nan")


__all__ = [
    "NDCG_K",
    "OVERLAP_K",
    "RECALL_K",
    "SEED_K",
    "SEED_NEIGHBOURS",
    "CoListen",
    "mean",
    "ndcg_at_k",
    "overlap_at_k",
    "pick_seeds",
    "precision_in_at_k",
    "recall_at_k",
    "seed_conditioned_relevant",
    "seed_neighbour_precision",
    "seed_targets",
]
