"""Baselines: exclusions, seeds, determinism and tuning on the label part."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from models.als import AlsConfig, train_als
from models.baselines import fit_baselines
from models.baselines.als import AlsBaseline, als_grid
from models.baselines.base import ScoringBaseline, top_n, tune
from models.baselines.ease import EaseBaseline, EaseConfig
from models.baselines.itemknn import ItemKnnBaseline, ItemKnnConfig
from models.baselines.popularity import PopularityBaseline
from models.splits import split_interactions


def _plays(n_users: int = 80, n_items: int = 30, seed: int = 0) -> sp.csr_matrix:
    """Two taste groups (items 0-14 and 15-29) with a popular head in each."""
    rng = np.random.default_rng(seed)
    dense = np.zeros((n_users, n_items), dtype=np.float32)
    for u in range(n_users):
        group = np.arange(15) + (15 if u % 2 else 0)
        p = np.linspace(2.0, 0.5, 15)
        chosen = rng.choice(group, size=8, replace=False, p=p / p.sum())
        dense[u, chosen] = rng.integers(1, 30, size=8)
    return sp.csr_matrix(dense)


PLAYS = _plays()


def _all(history: sp.csr_matrix) -> list[ScoringBaseline]:
    return [
        PopularityBaseline(history),
        ItemKnnBaseline(history, ItemKnnConfig(shrink=5.0, k=10)),
        EaseBaseline(history, EaseConfig(regularization=10.0)),
        AlsBaseline(history, train_als(history, AlsConfig(factors=4, iterations=5, regularization=1.0)), AlsConfig()),
    ]


@pytest.mark.parametrize("baseline", _all(PLAYS), ids=lambda b: b.name)
def test_rank_never_returns_excluded_items_or_the_seed(baseline: ScoringBaseline) -> None:
    exclude = np.sort(PLAYS.indices[PLAYS.indptr[0] : PLAYS.indptr[1]].astype(np.int64))
    for seed in (-1, int(exclude[0])):
        ranked = baseline.rank(0, seed, exclude, 10)
        assert 0 < ranked.size <= 10 and ranked.dtype == np.int64
        assert not np.isin(ranked, exclude).any() and seed not in ranked.tolist()
        assert np.unique(ranked).size == ranked.size
        np.testing.assert_array_equal(ranked, baseline.rank(0, seed, exclude, 10))  # deterministic


@pytest.mark.parametrize("baseline", _all(PLAYS)[1:], ids=lambda b: b.name)
def test_personal_baselines_recommend_the_users_taste_group(baseline: ScoringBaseline) -> None:
    for user in (0, 1):
        own = np.arange(15) + (15 if user % 2 else 0)
        exclude = PLAYS.indices[PLAYS.indptr[user] : PLAYS.indptr[user + 1]].astype(np.int64)
        top = baseline.rank(user, -1, np.sort(exclude), 5)
        assert np.isin(top, own).mean() >= 0.8


@pytest.mark.parametrize("baseline", _all(PLAYS)[1:], ids=lambda b: b.name)
def test_now_playing_follows_the_seed(baseline: ScoringBaseline) -> None:
    # User 0 likes group A; a seed from group B pulls group-B items into the list.
    seed = 16
    top = baseline.rank(0, seed, np.empty(0, np.int64), 5)
    assert np.isin(top, np.arange(15, 30)).sum() >= 3


def test_popularity_ignores_user_and_seed_but_excludes() -> None:
    baseline = PopularityBaseline(PLAYS)
    a = baseline.rank(0, -1, np.empty(0, np.int64), 5)
    assert baseline.rank(1, int(a[0]), np.empty(0, np.int64), 4).tolist() == a[1:].tolist()


def test_a_user_without_history_gets_the_popular_items() -> None:
    history = sp.vstack([PLAYS, sp.csr_matrix((1, PLAYS.shape[1]), dtype=np.float32)]).tocsr()
    popular = PopularityBaseline(history).rank(PLAYS.shape[0], -1, np.empty(0, np.int64), 5)
    knn = ItemKnnBaseline(history, ItemKnnConfig(shrink=5.0, k=10)).rank(PLAYS.shape[0], -1, np.empty(0, np.int64), 5)
    assert knn.tolist() == popular.tolist()


def test_top_n_breaks_ties_by_index_and_drops_excluded() -> None:
    scores = np.array([1.0, 3.0, 3.0, 2.0, 3.0])
    assert top_n(scores, np.array([2]), 3).tolist() == [1, 4, 3]
    assert top_n(scores, np.empty(0, np.int64), 10, seed=1).tolist() == [2, 4, 3, 0]


def test_tune_keeps_the_configuration_with_the_best_label_ndcg() -> None:
    split = split_interactions(PLAYS, seed=0)
    users = np.arange(PLAYS.shape[0], dtype=np.int64)
    result = tune(
        lambda history, shrink: ItemKnnBaseline(history, ItemKnnConfig(shrink=shrink, k=10)),
        [1e9, 5.0],  # an absurd shrink makes every similarity ~0: popularity order
        lambda shrink: {"shrink": shrink},
        split.train,
        split.label,
        users,
    )
    assert result.best == 5.0
    assert [row["shrink"] for row in result.table] == [1e9, 5.0]
    assert result.table[1]["ndcg@10"] >= result.table[0]["ndcg@10"]


def test_fit_baselines_refits_on_train_plus_label_and_returns_the_chosen_als_fits() -> None:
    split = split_interactions(PLAYS, seed=1)
    base = AlsConfig(factors=4, iterations=3)
    fitted = fit_baselines(split, base, tune_users=40)
    assert set(fitted.baselines) == {"popularity", "itemknn", "ease", "als"}
    for baseline in fitted.baselines.values():
        assert (baseline.history != split.known).nnz == 0
    assert fitted.als_config.summary() == fitted.info["als"]["chosen"]
    assert len(fitted.info["als"]["grid"]) == len(als_grid(base)) == 7 and len(fitted.info["ease"]["grid"]) == 3
    assert fitted.als_train.user_vectors.shape == fitted.als_known.user_vectors.shape
    again = fit_baselines(split, AlsConfig(factors=4, iterations=3), tune_users=40)
    np.testing.assert_array_equal(fitted.als_known.item_vectors, again.als_known.item_vectors)
