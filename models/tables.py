"""Item and user statistics (``ITEM_STATS`` / ``USER_STATS``) and the popularity order."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Tables:
    """Statistics of one play matrix, in ``ITEM_STATS`` / ``USER_STATS`` order."""

    item_stats: F32  # [n_items, 2]
    user_stats: F32  # [n_users, 2]
    listeners: I64  # [n_items] distinct listeners


def compute_tables(plays: sp.csr_matrix) -> Tables:
    """Item and user statistics (``ITEM_STATS``, ``USER_STATS``) from play counts."""
    plays = sp.csr_matrix(plays)
    csc = plays.tocsc()
    listeners = np.diff(csc.indptr).astype(np.int64)
    item_plays = np.asarray(csc.sum(axis=0)).ravel()
    item_stats = np.column_stack(
        (
            np.log1p(listeners),
            np.log1p(item_plays / np.maximum(listeners, 1)),
        )
    ).astype(np.float32)
    n_items_user = np.diff(plays.indptr)
    user_plays = np.asarray(plays.sum(axis=1)).ravel()
    user_stats = np.column_stack(
        (
            np.log1p(n_items_user),
            np.log1p(user_plays / np.maximum(n_items_user, 1)),
        )
    ).astype(np.float32)
    return Tables(item_stats=item_stats, user_stats=user_stats, listeners=listeners)


def popularity_order(listeners: I64, limit: int | None = None) -> I64:
    """Item indices by listener count, most popular first (ties by index); played items only."""
    order = np.lexsort((np.arange(listeners.size), -listeners)).astype(np.int64)
    order = order[listeners[order] > 0]
    return order if limit is None else order[:limit]


__all__ = ["Tables", "compute_tables", "popularity_order"]
