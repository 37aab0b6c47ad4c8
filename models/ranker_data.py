"""Ranker training data: simulated served queries, their candidates, features and labels.

For one training stage (candidate models fit on a ``plays`` matrix, labels from a held-out
``labels`` matrix) each sampled user yields one Home and one Now Playing query, built the way the
served pipeline builds them (``ranking.surfaces``):

- **history** = the user's items in ``plays`` (the served "known items"); with probability
  ``recent_share`` a few of them (1-5) also play the part of recent plays (``recent_vector`` =
  their mean vector), otherwise there are none — the offline evaluation's embedded store has no
  recent plays, live traffic has some;
- **query vector** = ``features.query_vector.query_for`` (Home: user + recent; Now Playing: the
  seed, a random history item, blended in with ``seed_weight``);
- **candidates** = the served sources in declaration order, deduplicated: (Now Playing) the seed's
  neighbour row, the top ``retrieval`` items by inner product with the query (what the FAISS
  inner-product index returns — known items included, as the ANN source does), the history
  co-listen top ``co_listen``, the popularity head; then the served filters drop known items, the
  seed and recent plays;
- **features** = ``features.ranker_features.ranker_features`` with exactly the hydrator's inputs;
- **labels** (graded, ``LabelConfig``): Home: 1 for an item of the user's ``labels`` part. Now
  Playing ties them to the seed: a label item among the seed's ``SEED_NEIGHBOURS`` most
  co-listened items (counted over other users in ``plays``, as ``models.metrics`` defines the
  seed-neighbour set) gets ``label + seed_label_bonus``, any other label item ``label``, and a
  seed neighbour the user does not have ``seed_neighbour`` (default 0: off). Labelling such
  unplayed neighbours positive (``seed_neighbour = 1``) made the ranker follow the seed but cost
  Now Playing NDCG@10 0.247 → 0.174 on HetRec; the served list follows the seed through the
  selection's seed slots instead (``ranking.selectors.seed_slots``).

Queries without a positive are dropped (no lambdarank gradient); each kept query keeps all its
positives and at most ``negatives`` random negatives (``None``: all), which bounds the rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from features.item_neighbors import seed_neighbors, top_colisten
from features.query_vector import DEFAULT_RECENT_WEIGHT, DEFAULT_SEED_WEIGHT, query_for
from features.ranker_features import ranker_features
from models.als import Embeddings
from models.item_neighbors import NeighborTable
from models.metrics import SEED_NEIGHBOURS, CoListen
from models.ranker import RankerDataset
from models.splits import row_items
from models.tables import Tables

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class CandidateSizes:
    """Candidates per served source on one surface (the surface's ``RankingParams``)."""

    retrieval: int
    co_listen: int
    seed_neighbors: int
    popularity: int
    seed_weight: float = DEFAULT_SEED_WEIGHT
    recent_weight: float = DEFAULT_RECENT_WEIGHT


@dataclass(frozen=True)
class LabelConfig:
    """Graded labels (see the module docstring)."""

    label: int = 1
    seed_label_bonus: int = 2
    seed_neighbour: int = 0

    def summary(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class StageModels:
    """The candidate models of one training stage, all fit on ``plays``."""

    plays: sp.csr_matrix
    embeddings: Embeddings
    tables: Tables
    neighbors: NeighborTable
    popularity: I64


@dataclass(frozen=True)
class SimulatedQuery:
    user: int
    seed: int  # -1 on Home
    history: I64  # known items, ascending
    recent: I64  # recent plays (a subset of the history); may be empty
    recent_vector: F32
    query_vector: F32


def simulate_queries(
    stage: StageModels,
    users: I64,
    *,
    now_playing: bool,
    sizes: CandidateSizes,
    rng: np.random.Generator,
    recent_share: float,
    recent_max: int = 5,
) -> list[SimulatedQuery]:
    """One query per user with history (see the module docstring); users without history are skipped."""
    emb = stage.embeddings
    dim = emb.item_vectors.shape[1]
    out: list[SimulatedQuery] = []
    for u in users.tolist():
        history = np.sort(row_items(stage.plays, u))
        if history.size == 0:
            continue
        recent = np.empty(0, dtype=np.int64)
        recent_vector = np.zeros(dim, dtype=np.float32)
        if rng.random() < recent_share:
            k = int(rng.integers(1, min(recent_max, history.size) + 1))
            recent = rng.choice(history, size=k, replace=False).astype(np.int64)
            recent_vector = emb.item_vectors[recent].mean(axis=0).astype(np.float32)
        seed = int(rng.choice(history)) if now_playing else -1
        query_vector = query_for(
            None if seed < 0 else emb.item_vectors[seed],
            emb.user_vectors[u],
            recent_vector,
            seed_weight=sizes.seed_weight,
            recent_weight=sizes.recent_weight,
        )
        out.append(SimulatedQuery(u, seed, history, recent, recent_vector, query_vector))
    return out


def ann_top(query_vectors: F32, item_vectors: F32, n: int, *, batch_items: int = 32_000_000) -> I64:
    """Top-``n`` items by inner product per query row, best first (exact; ties by index)."""
    m, n_items = query_vectors.shape[0], item_vectors.shape[0]
    n = min(n, n_items)
    out = np.empty((m, n), dtype=np.int64)
    batch = max(1, batch_items // max(1, n_items))
    for start in range(0, m, batch):
        scores = query_vectors[start : start + batch] @ item_vectors.T
        if n < n_items:
            top = np.argpartition(-scores, n - 1, axis=1)[:, :n]
        else:
            top = np.tile(np.arange(n_items), (len(scores), 1))
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.lexsort((top, -top_scores), axis=1)
        out[start : start + batch] = np.take_along_axis(top, order, axis=1)
    return out


def served_candidates(stage: StageModels, query: SimulatedQuery, ann: I64, sizes: CandidateSizes) -> I64:
    """The candidates the served pipeline would score for ``query`` (sources, dedupe, filters)."""
    parts: list[I64] = []
    nb, w = stage.neighbors.neighbors, stage.neighbors.weights
    if query.seed >= 0 and sizes.seed_neighbors > 0:
        parts.append(seed_neighbors(query.seed, nb, w, sizes.seed_neighbors)[0])
    parts.append(ann)
    if sizes.co_listen > 0:
        history = np.concatenate((query.history, query.recent))
        exclude = None if query.seed < 0 else np.array([query.seed], dtype=np.int64)
        parts.append(top_colisten(history, nb, w, sizes.co_listen, exclude)[0])
    parts.append(stage.popularity[: sizes.popularity])
    items = np.concatenate(parts).astype(np.int64)
    _, first = np.unique(items, return_index=True)
    items = items[np.sort(first)]
    drop = np.concatenate((query.history, query.recent, np.array([query.seed] if query.seed >= 0 else [], np.int64)))
    return items[~np.isin(items, drop)]


def query_features(stage: StageModels, query: SimulatedQuery, candidates: I64) -> F32:
    """``ranker_features`` with the arguments ``RankerFeatureHydrator`` passes."""
    emb, tables = stage.embeddings, stage.tables
    return ranker_features(
        item_indices=candidates,
        item_vectors=emb.item_vectors[candidates],
        item_stats=tables.item_stats[candidates],
        item_norms=emb.item_norms[candidates],
        query_vector=query.query_vector,
        user_vector=emb.user_vectors[query.user],
        user_stats=tables.user_stats[query.user],
        recent_vector=query.recent_vector,
        seed_vector=None if query.seed < 0 else emb.item_vectors[query.seed],
        seed_index=query.seed,
        history_items=np.concatenate((query.history, query.recent)),
        neighbors=stage.neighbors.neighbors,
        neighbor_weights=stage.neighbors.weights,
        negatives=stage.neighbors.negatives,
        negative_weights=stage.neighbors.negative_weights,
    )


def query_labels(
    candidates: I64, positives: I64, seed_targets: I64 | None, labels: LabelConfig
) -> npt.NDArray[np.int32]:
    """Graded labels of one query's candidates (``seed_targets``: the seed's neighbour set, NP)."""
    in_label = np.isin(candidates, positives)
    y = labels.label * in_label.astype(np.int32)
    if seed_targets is not None:
        near = np.isin(candidates, seed_targets)
        y = y + labels.seed_label_bonus * (in_label & near) + labels.seed_neighbour * (near & ~in_label)
    return y.astype(np.int32)


def build_ranker_dataset(
    stage: StageModels,
    labels_part: sp.csr_matrix,
    users: I64,
    rng: np.random.Generator,
    *,
    sizes: dict[str, CandidateSizes],
    labels: LabelConfig,
    recent_share: float = 0.5,
    negatives: int | None = 150,
) -> RankerDataset:
    """Ranker rows for ``users`` on Home and Now Playing from one stage (module docstring)."""
    colisten = CoListen(stage.plays)
    parts: list[RankerDataset] = []
    for surface in ("home", "now_playing"):
        surface_sizes = sizes[surface]
        queries = simulate_queries(
            stage, users, now_playing=surface == "now_playing", sizes=surface_sizes, rng=rng, recent_share=recent_share
        )
        if not queries:
            continue
        ann = ann_top(
            np.stack([q.query_vector for q in queries]), stage.embeddings.item_vectors, surface_sizes.retrieval
        )
        feats: list[F32] = []
        ys: list[npt.NDArray[np.int32]] = []
        groups: list[int] = []
        for query, ann_items in zip(queries, ann, strict=True):
            positives = row_items(labels_part, query.user)
            if positives.size == 0:
                continue
            candidates = served_candidates(stage, query, ann_items, surface_sizes)
            targets = colisten.top_neighbours(query.seed, query.user, SEED_NEIGHBOURS) if query.seed >= 0 else None
            y = query_labels(candidates, positives, targets, labels)
            if not np.any(y > 0) or not np.any(y == 0):
                continue
            # Features over the whole candidate set, as served (some are relative to the other
            # candidates of the query), then the negatives are subsampled.
            x = query_features(stage, query, candidates)
            if negatives is not None:
                negative_rows = np.flatnonzero(y == 0)
                if negative_rows.size > negatives:
                    dropped = rng.choice(negative_rows, size=negative_rows.size - negatives, replace=False)
                    keep = np.ones(y.size, dtype=np.bool_)
                    keep[dropped] = False
                    candidates, y, x = candidates[keep], y[keep], x[keep]
            feats.append(x)
            ys.append(y)
            groups.append(int(candidates.size))
        if groups:
            parts.append(
                RankerDataset(
                    features=np.concatenate(feats), labels=np.concatenate(ys), groups=np.asarray(groups, np.int64)
                )
            )
    return RankerDataset.concat(parts)


__all__ = [
    "CandidateSizes",
    "LabelConfig",
    "SimulatedQuery",
    "StageModels",
    "ann_top",
    "build_ranker_dataset",
    "query_features",
    "query_labels",
    "served_candidates",
    "simulate_queries",
]
