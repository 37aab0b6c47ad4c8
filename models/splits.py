"""Interaction splits: per-user train / label / test parts and the ranker's cross-fitted replicas.

``split_interactions`` is the project's split (70/15/15 per user, seeded): stage A of training fits
the candidate models on ``train`` and takes ranker labels from ``label``; stage B (what is served)
refits on ``train + label``; ``test`` is only ever used by the evaluation.
``resplit_known`` draws another (train, label) pair from ``train + label`` with the same shares,
so the ranker can learn from more labelled queries than one label part holds (cross-fitting).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Split:
    """Disjoint parts of the play matrix, all [n_users, n_items] float32 CSR."""

    train: sp.csr_matrix
    label: sp.csr_matrix
    test: sp.csr_matrix

    def users_with(self, part: sp.csr_matrix) -> I64:
        """Indices of users with at least one item in ``part``."""
        return users_with(part)

    @property
    def known(self) -> sp.csr_matrix:
        """``train + label``: what the served model is fit on and the server filters."""
        return sp.csr_matrix(self.train + self.label)

    def summary(self) -> dict[str, int]:
        return {
            "train_interactions": int(self.train.nnz),
            "label_interactions": int(self.label.nnz),
            "test_interactions": int(self.test.nnz),
            "users_with_test_items": int(users_with(self.test).size),
        }


def users_with(part: sp.csr_matrix) -> I64:
    """Indices of users (rows) with at least one item in ``part``."""
    return np.flatnonzero(np.diff(part.indptr)).astype(np.int64)


def row_items(part: sp.csr_matrix, row: int) -> I64:
    """The item indices of one row of a CSR matrix (a copy, ascending if the matrix is sorted)."""
    return np.asarray(part.indices[part.indptr[row] : part.indptr[row + 1]], dtype=np.int64)


def split_interactions(
    plays: sp.csr_matrix,
    *,
    seed: int,
    label_share: float = 0.15,
    test_share: float = 0.15,
    min_items: int = 5,
) -> Split:
    """Split each user's items at random into train / label / test parts.

    A user with ``n >= min_items`` items gets ``max(1, round(test_share * n))`` test items and
    ``max(1, round(label_share * n))`` label items (either share may be 0 for none); the rest (and
    every item of smaller users) is train. Deterministic for a given ``seed``.
    """
    plays = sp.csr_matrix(plays, dtype=np.float32)
    plays.sort_indices()
    n_users = plays.shape[0]
    counts = np.diff(plays.indptr)
    rows = np.repeat(np.arange(n_users), counts)
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(plays.nnz), rows))  # shuffled within each row
    position = np.empty(plays.nnz, dtype=np.int64)
    position[order] = np.arange(plays.nnz) - plays.indptr[rows[order]]

    def share(fraction: float) -> npt.NDArray[np.float64]:
        if fraction <= 0:
            return np.zeros(n_users)
        return np.where(counts >= min_items, np.maximum(1, np.rint(fraction * counts)), 0)

    n_test, n_label = share(test_share), share(label_share)
    is_test = position < n_test[rows]
    is_label = ~is_test & (position < (n_test + n_label)[rows])
    is_train = ~is_test & ~is_label

    def part(mask: npt.NDArray[np.bool_]) -> sp.csr_matrix:
        matrix = sp.csr_matrix((plays.data * mask, plays.indices.copy(), plays.indptr.copy()), shape=plays.shape)
        matrix.eliminate_zeros()
        return matrix

    return Split(train=part(is_train), label=part(is_label), test=part(is_test))


def resplit_known(
    split: Split, *, seed: int, label_share: float | None = None, min_items: int = 5
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Another (train, label) pair drawn from ``split.known``.

    ``label_share`` is the share of each user's known items that becomes labels (``None``: the
    original split's, ``label / (train + label)`` = 15 / 85 by default). A smaller share leaves
    candidate models fit on more of the known items, closer to the stage-B models they stand for.
    """
    known = split.known
    if label_share is None:
        label_share = float(split.label.nnz) / max(int(known.nnz), 1)
    again = split_interactions(known, seed=seed, label_share=0.0, test_share=label_share, min_items=min_items)
    return again.train, again.test


def subsample_users(users: I64, limit: int | None, rng: np.random.Generator) -> I64:
    """At most ``limit`` of ``users`` (sorted), chosen at random; all when ``limit`` is None."""
    if limit is None or users.size <= limit:
        return users
    return np.sort(rng.choice(users, size=limit, replace=False)).astype(np.int64)


__all__ = ["Split", "resplit_known", "row_items", "split_interactions", "subsample_users", "users_with"]
