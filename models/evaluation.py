"""Offline evaluation on held-out interactions: NDCG@10 and recall@100.

Protocol (``evaluate``): for each evaluated user (users with test items, optionally a seeded
sample), the relevant set is the user's test items; candidates exclude the user's train and
ranker-label items (they are "already played" and the server filters them). Methods:

- ``popularity``: items by listener count in the train part;
- ``retrieval``: top items by inner product with the surface's query vector (the FAISS order);
- ``ranker`` / ``ranker:<version>``: the LightGBM ranker re-ranks the retrieval top-``rerank_depth``
  (``RERANK_DEPTH`` = 200 ≥ 100, so its recall@100 is measured over the same pool the retrieval
  baseline draws its top 100 from, and it can only gain recall by promoting items from ranks
  101-200). ``ranker`` is the bundle's default model.

Home uses ``user_query``; Now Playing seeds a random train item and uses ``now_playing_query``,
exactly as ``models.training.make_queries`` builds them for training.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from features.ranker_features import F32
from models.metrics import NDCG_K, RECALL_K, ndcg_at_k, recall_at_k
from models.training import (
    I64,
    Embeddings,
    Split,
    Surface,
    Tables,
    candidate_features,
    make_queries,
    retrieve,
)

RERANK_DEPTH = 200

#: A scorer maps a ranker feature matrix [n, N_RANKER_FEATURES] to n scores.
Scorer = Callable[[F32], npt.NDArray[np.floating[Any]]]


def _metrics(rankings: list[list[int]], relevant: list[set[int]]) -> dict[str, float]:
    ndcg = [ndcg_at_k(r, rel, NDCG_K) for r, rel in zip(rankings, relevant, strict=True)]
    recall = [recall_at_k(r, rel, RECALL_K) for r, rel in zip(rankings, relevant, strict=True)]
    return {f"ndcg@{NDCG_K}": float(np.mean(ndcg)), f"recall@{RECALL_K}": float(np.mean(recall))}


def _popularity_rankings(popularity: I64, split: Split, users: I64, n: int) -> list[list[int]]:
    head = popularity[: n + 2000]  # enough to fill top-n after removing what a user has played
    out = []
    for u in users.tolist():
        seen = set(split.train.indices[split.train.indptr[u] : split.train.indptr[u + 1]].tolist())
        seen.update(split.label.indices[split.label.indptr[u] : split.label.indptr[u + 1]].tolist())
        out.append([i for i in head.tolist() if i not in seen][:n])
    return out


def evaluate_surface(
    surface: Surface,
    split: Split,
    emb: Embeddings,
    tables: Tables,
    popularity: I64,
    users: I64,
    scorers: Mapping[str, Scorer],
    *,
    seed: int,
    recent_max: int = 5,
    rerank_depth: int = RERANK_DEPTH,
) -> dict[str, dict[str, float]]:
    """Mean NDCG@10 and recall@100 per method on one surface (see the module docstring)."""
    rng = np.random.default_rng(seed)
    relevant = [
        set(split.test.indices[split.test.indptr[u] : split.test.indptr[u + 1]].tolist()) for u in users.tolist()
    ]
    queries = make_queries(surface, users, split.train, emb, rng, recent_max=recent_max)
    depth = max(rerank_depth, RECALL_K)
    idx, scores = retrieve(queries.vectors, emb.item_vectors, [split.train, split.label], users, depth)
    retrieval = [row[row >= 0].tolist() for row in idx]
    results = {
        "popularity": _metrics(_popularity_rankings(popularity, split, users, RECALL_K), relevant),
        "retrieval": _metrics(retrieval, relevant),
    }
    for name, scorer in scorers.items():
        ranked: list[list[int]] = []
        for row in range(users.size):
            valid = idx[row] >= 0
            cand = idx[row][valid]
            if cand.size == 0:
                ranked.append([])
                continue
            feats = candidate_features(queries, row, cand, scores[row][valid], emb, tables)
            s = np.asarray(scorer(feats), dtype=np.float64).reshape(-1)
            ranked.append(cand[np.argsort(-s, kind="stable")].tolist())
        results[name] = _metrics(ranked, relevant)
    return results


def evaluate(
    split: Split,
    emb: Embeddings,
    tables: Tables,
    popularity: I64,
    scorers: Mapping[str, Scorer],
    *,
    users: I64,
    seed: int,
    surfaces: Sequence[Surface] = ("home", "now_playing"),
    rerank_depth: int = RERANK_DEPTH,
) -> dict[str, Any]:
    """Evaluate every method on every surface; returns the manifest's ``evaluation`` dict.

    ``scorers`` maps method names (``"ranker"`` for the default model, ``"ranker:<version>"``
    for others) to scoring functions.
    """
    result: dict[str, Any] = {
        "protocol": {
            "relevant": "held-out test items (15% of each user's items, users with >= 5 items)",
            "excluded_from_candidates": "the user's train and ranker-label items",
            "metrics": [f"ndcg@{NDCG_K}", f"recall@{RECALL_K}"],
            "rerank_depth": rerank_depth,
            "n_users": int(users.size),
            "seed": seed,
        },
    }
    for offset, surface in enumerate(surfaces):
        result[surface] = evaluate_surface(
            surface,
            split,
            emb,
            tables,
            popularity,
            users,
            scorers,
            seed=seed + 1000 * (offset + 1),
            rerank_depth=rerank_depth,
        )
    return result


def format_metrics_table(evaluation: Mapping[str, Any]) -> str:
    """Render the evaluation dict as a fixed-width text table (one row per surface × method)."""
    metrics = [f"ndcg@{NDCG_K}", f"recall@{RECALL_K}"]
    rows = [("surface", "method", *metrics)]
    for surface, methods in evaluation.items():
        if surface == "protocol" or not isinstance(methods, Mapping):
            continue
        baselines = [m for m in ("popularity", "retrieval", "ranker") if m in methods]
        for method in baselines + sorted(m for m in methods if m not in baselines):
            values = methods[method]
            rows.append((surface, method, *(f"{values.get(m, float('nan')):.4f}" for m in metrics)))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) if c < 2 else cell.rjust(w) for c, (cell, w) in enumerate(zip(r, widths, strict=True)))
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    protocol = evaluation.get("protocol")
    if isinstance(protocol, Mapping):
        lines.append(
            f"(users: {protocol.get('n_users')}, ranker re-ranks retrieval top {protocol.get('rerank_depth')})"
        )
    return "\n".join(lines)


__all__ = [
    "NDCG_K",
    "RECALL_K",
    "RERANK_DEPTH",
    "Scorer",
    "evaluate",
    "evaluate_surface",
    "format_metrics_table",
    "ndcg_at_k",
    "recall_at_k",
]
