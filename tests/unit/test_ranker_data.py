"""Ranker training data: simulated served queries, their candidates and graded labels."""

from __future__ import annotations

from functools import cache

import numpy as np

from features.synthetic import generate_synthetic
from models.als import AlsConfig
from models.item_neighbors import NeighborConfig
from models.metrics import CoListen
from models.ranker_data import (
    CandidateSizes,
    LabelConfig,
    StageModels,
    ann_top,
    build_ranker_dataset,
    query_labels,
    served_candidates,
    simulate_queries,
)
from models.splits import Split, split_interactions, users_with
from models.training import fit_stage

SIZES = {
    "home": CandidateSizes(retrieval=40, co_listen=20, seed_neighbors=0, popularity=10),
    "now_playing": CandidateSizes(retrieval=30, co_listen=20, seed_neighbors=15, popularity=10),
}


@cache
def _stage() -> tuple[Split, StageModels]:
    data = generate_synthetic(400, 80, seed=2)
    split = split_interactions(data.plays, seed=0)
    return split, fit_stage(split.train, AlsConfig(factors=8, iterations=4), NeighborConfig(k=20))


def test_served_candidates_follow_the_served_sources_and_filters() -> None:
    split, stage = _stage()
    users = users_with(split.label)[:10]
    queries = simulate_queries(
        stage, users, now_playing=True, sizes=SIZES["now_playing"], rng=np.random.default_rng(0), recent_share=1.0
    )
    ann = ann_top(np.stack([q.query_vector for q in queries]), stage.embeddings.item_vectors, 30)
    for query, ann_items in zip(queries, ann, strict=True):
        assert query.seed in query.history.tolist() and np.isin(query.recent, query.history).all()
        candidates = served_candidates(stage, query, ann_items, SIZES["now_playing"])
        assert np.unique(candidates).size == candidates.size
        assert not np.isin(candidates, query.history).any() and query.seed not in candidates.tolist()
        row = stage.neighbors.neighbors[query.seed][:15]
        row = row[(row >= 0) & ~np.isin(row, query.history)]
        np.testing.assert_array_equal(candidates[: row.size], row)  # the seed's row leads


def test_home_queries_have_no_seed_and_recent_share_zero_means_no_recent_plays() -> None:
    split, stage = _stage()
    queries = simulate_queries(
        stage,
        users_with(split.label),
        now_playing=False,
        sizes=SIZES["home"],
        rng=np.random.default_rng(0),
        recent_share=0.0,
    )
    assert all(q.seed == -1 and q.recent.size == 0 and not q.recent_vector.any() for q in queries)


def test_labels_are_graded_by_the_seed() -> None:
    labels = LabelConfig(label=1, seed_label_bonus=2, seed_neighbour=1)
    candidates = np.array([5, 6, 7, 8])
    y = query_labels(candidates, positives=np.array([5, 6]), seed_targets=np.array([6, 7]), labels=labels)
    assert y.tolist() == [1, 3, 1, 0]
    assert query_labels(candidates, np.array([5, 6]), None, labels).tolist() == [1, 1, 0, 0]


def test_dataset_groups_queries_with_positives_and_caps_negatives() -> None:
    split, stage = _stage()
    users = users_with(split.label)
    data = build_ranker_dataset(
        stage, split.label, users, np.random.default_rng(0), sizes=SIZES, labels=LabelConfig(), negatives=12
    )
    assert int(data.groups.sum()) == data.labels.size == data.features.shape[0]
    starts = np.concatenate(([0], np.cumsum(data.groups)[:-1]))
    for start, size in zip(starts.tolist(), data.groups.tolist(), strict=True):
        block = data.labels[start : start + size]
        assert (block > 0).any() and 0 < (block == 0).sum() <= 12
    again = build_ranker_dataset(
        stage, split.label, users, np.random.default_rng(0), sizes=SIZES, labels=LabelConfig(), negatives=12
    )
    np.testing.assert_array_equal(data.features, again.features)
    np.testing.assert_array_equal(data.labels, again.labels)


def test_now_playing_seed_targets_use_other_users_co_listening() -> None:
    split, stage = _stage()
    colisten = CoListen(stage.plays)
    user = int(users_with(split.label)[0])
    seed = int(split.train.indices[split.train.indptr[user]])
    targets = colisten.top_neighbours(seed, user, 50)
    assert seed not in targets.tolist() and targets.size <= 50
