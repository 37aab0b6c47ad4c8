"""What every baseline shares: scoring over the whole catalogue, exclusions, tuning.

A baseline scores every item for a user (``user_scores``) and, on Now Playing, for the seed
(``seed_scores``). Home ranks by the user scores; Now Playing by
``(1 - w) * unit(user scores) + w * unit(seed scores)`` with ``w = DEFAULT_SEED_WEIGHT`` (0.7),
the same blend of unit vectors the served Now Playing query makes (``features.query_vector``).
Excluded items never appear; ties break by popularity, then by item index, so lists are
deterministic and a user with no signal gets the popular items.

``tune`` picks a configuration by Home NDCG@10 on the label part: each candidate configuration is
fit on ``train``, ranks for users with label items (their train items excluded), and is scored
against their label items with ``models.metrics.ndcg_at_k``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from features.query_vector import DEFAULT_SEED_WEIGHT
from models.metrics import NDCG_K, RECALL_K, ndcg_at_k, recall_at_k

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Config = TypeVar("Config")
#: Scores held at once by ``rank_many`` (users per batch = this / catalogue size).
_BATCH_SCORES = 4_000_000


def _unit(scores: F64) -> F64:
    norm = float(np.linalg.norm(scores))
    return scores / norm if norm > 0 else scores


class ScoringBaseline(ABC):
    """``rank(user, seed, exclude, n)`` on top of whole-catalogue scores (module docstring).

    ``history`` is the users × items matrix the baseline was fit on (rows = snapshot rows);
    ``listeners`` the per-item listener counts used to break ties.
    """

    name: str = "baseline"

    def __init__(self, history: sp.csr_matrix, seed_weight: float = DEFAULT_SEED_WEIGHT) -> None:
        self.history = sp.csr_matrix(history)
        self.n_items = int(self.history.shape[1])
        listeners = np.diff(self.history.tocsc().indptr).astype(np.float64)
        self._tie = listeners / max(float(listeners.max(initial=0.0)), 1.0) * 1e-9
        self.seed_weight = seed_weight

    @abstractmethod
    def user_scores(self, users: I64) -> F64:
        """[len(users), n_items] scores from each user's history (higher is better)."""

    def seed_scores(self, seed: int) -> F64:
        """[n_items] scores of items for the seed item; zeros when the baseline ignores seeds."""
        return np.zeros(self.n_items, dtype=np.float64)

    def scores(self, user: int, seed: int) -> F64:
        """The scores ``rank`` sorts by (Home: user scores; Now Playing: the blend)."""
        user_part: F64 = self.user_scores(np.array([user], dtype=np.int64))[0]
        if seed < 0:
            return user_part
        seed_part = self.seed_scores(seed)
        if not seed_part.any():
            return user_part
        return (1.0 - self.seed_weight) * _unit(user_part) + self.seed_weight * _unit(seed_part)

    def rank(self, user: int, seed: int, exclude: I64, n: int) -> I64:
        """Up to ``n`` items, best first, none in ``exclude`` (nor the seed)."""
        return top_n(self.scores(user, seed) + self._tie, exclude, n, seed)

    def rank_many(self, users: I64, exclude: sp.csr_matrix, n: int) -> list[I64]:
        """Home lists for many users at once (tuning); ``exclude`` rows are the users' rows."""
        out: list[I64] = []
        step = max(1, _BATCH_SCORES // max(1, self.n_items))
        for start in range(0, users.size, step):
            batch = users[start : start + step]
            scores = self.user_scores(batch) + self._tie
            for row, u in enumerate(batch.tolist()):
                banned = exclude.indices[exclude.indptr[u] : exclude.indptr[u + 1]].astype(np.int64)
                out.append(top_n(scores[row], banned, n, -1))
        return out


def top_n(scores: F64, exclude: I64, n: int, seed: int = -1) -> I64:
    """The ``n`` best items of ``scores`` not in ``exclude`` (and not ``seed``), ties by index."""
    scores = np.array(scores, dtype=np.float64, copy=True)
    if exclude.size:
        scores[np.asarray(exclude, dtype=np.int64)] = -np.inf
    if seed >= 0:
        scores[seed] = -np.inf
    n = min(n, scores.size)
    if n <= 0:
        return np.empty(0, dtype=np.int64)
    if n < scores.size:
        kth = -np.partition(-scores, n - 1)[n - 1]  # the n-th best score; ties at it go by index
        above = np.flatnonzero(scores > kth)
        top = np.concatenate((above, np.flatnonzero(scores == kth)[: n - above.size]))
    else:
        top = np.arange(scores.size)
    top = top[np.isfinite(scores[top])]
    order = np.lexsort((top, -scores[top]))
    return top[order].astype(np.int64)


@dataclass(frozen=True)
class TuningResult(Generic[Config]):
    """The chosen configuration and every candidate's label-part metrics."""

    best: Config
    table: list[dict[str, Any]]


def label_metrics(
    baseline: ScoringBaseline, train: sp.csr_matrix, label: sp.csr_matrix, users: I64
) -> dict[str, float]:
    """Home NDCG@10 / recall@100 on the label part, train items excluded."""
    lists = baseline.rank_many(users, train, RECALL_K)
    ndcg, recall = [], []
    for u, ranked in zip(users.tolist(), lists, strict=True):
        relevant = set(label.indices[label.indptr[u] : label.indptr[u + 1]].tolist())
        ndcg.append(ndcg_at_k(ranked.tolist(), relevant, NDCG_K))
        recall.append(recall_at_k(ranked.tolist(), relevant, RECALL_K))
    return {f"ndcg@{NDCG_K}": float(np.mean(ndcg)), f"recall@{RECALL_K}": float(np.mean(recall))}


def tune(
    fit: Callable[[sp.csr_matrix, Config], ScoringBaseline],
    grid: Sequence[Config],
    describe: Callable[[Config], dict[str, Any]],
    train: sp.csr_matrix,
    label: sp.csr_matrix,
    users: I64,
    log: Callable[[str], None] | None = None,
    name: str = "",
) -> TuningResult[Config]:
    """Fit every configuration of ``grid`` on ``train``; keep the best Home NDCG@10 on ``label``
    (the first of equals). ``log`` gets one progress line per configuration."""
    if not grid:
        raise ValueError("empty tuning grid")
    table: list[dict[str, Any]] = []
    best, best_value = grid[0], -np.inf
    for config in grid:
        metrics = label_metrics(fit(train, config), train, label, users) if users.size else {}
        value = metrics.get(f"ndcg@{NDCG_K}", 0.0)
        table.append({**describe(config), **{k: round(v, 4) for k, v in metrics.items()}})
        if log is not None:
            log(f"  tuning {name} {len(table)}/{len(grid)}: {describe(config)} -> ndcg@{NDCG_K} {value:.4f}")
        if value > best_value:
            best, best_value = config, value
    return TuningResult(best=best, table=table)


__all__ = ["ScoringBaseline", "TuningResult", "label_metrics", "top_n", "tune"]
