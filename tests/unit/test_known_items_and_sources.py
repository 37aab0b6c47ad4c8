"""Known-items filter (conservation, policy), the seed-neighbour and co-listen sources."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from features.memory_store import MemoryFeatureStore
from features.schema import N_RANKER_FEATURES, RANKER_FEATURES
from features.snapshot import UserSnapshot
from features.store import UserRecord
from ranking.filters.known_items import KnownItemsFilter
from ranking.hydrators.user_features import UserFeatureHydrator
from ranking.observer import NullObserver
from ranking.pipeline import PipelineExecutor
from ranking.sources.co_listen import CoListenSource
from ranking.sources.seed_neighbors import SeedNeighborSource
from ranking.surfaces import home, now_playing
from ranking.types import Candidates, RankingParams, Surface, UserFeatures
from tests.unit import fakes

PARAMS = RankingParams(retrieval_size=100, popularity_size=50, diversity_cap=2)


def _user(known: list[int], recent: list[int] | None = None) -> UserFeatures:
    zeros = np.zeros(fakes.DIM, dtype=np.float32)
    return UserFeatures(
        vector=zeros,
        stats=np.zeros(2, dtype=np.float32),
        recent_items=np.asarray(recent or [], dtype=np.int64),
        recent_vector=zeros,
        query_vector=zeros,
        known_items=np.asarray(sorted(known), dtype=np.int64),
    )


def _candidates(items: list[int]) -> Candidates:
    n = len(items)
    return Candidates(np.asarray(items, np.int64), np.linspace(1, 0, n, dtype=np.float32), np.zeros(n, np.int8))


def test_known_items_filter_removes_exactly_the_known_items_and_accounts_for_every_candidate() -> None:
    candidates = _candidates([5, 3, 9, 3, 0, 299, 42])
    result = KnownItemsFilter().apply(fakes.query(), _user([0, 3, 299, 1000]), candidates)
    assert result.kept.items.tolist() == [5, 9, 42]  # input order kept
    assert sorted(result.removed.items.tolist()) == [0, 3, 3, 299]
    assert len(result.kept) + len(result.removed) == len(candidates)


def test_known_items_filter_keeps_everything_for_a_user_who_knows_nothing() -> None:
    result = KnownItemsFilter().apply(fakes.query(), _user([]), _candidates([1, 2]))
    assert result.kept.items.tolist() == [1, 2] and len(result.removed) == 0


def test_known_items_policy_keep_disables_the_filter() -> None:
    f = KnownItemsFilter()
    assert f.enabled(fakes.query(params=PARAMS))
    assert not f.enabled(fakes.query(params=replace(PARAMS, known_items="keep")))


async def test_home_never_returns_a_known_item_under_exclude_and_may_under_keep() -> None:
    store = await fakes.seeded_store()
    executor = PipelineExecutor(home.declare(fakes.components(store)), NullObserver())
    known = set(fakes.known_of(1).tolist())
    excluded = await executor.execute(fakes.query(user_id="u1", limit=100, params=PARAMS), fakes.budget())
    assert excluded.removed_by_filter["known_items"] > 0
    assert not known & {i.item for i in excluded.items}
    kept = await executor.execute(
        fakes.query(user_id="u1", limit=300, params=replace(PARAMS, known_items="keep")), fakes.budget()
    )
    assert "known_items" not in kept.removed_by_filter
    assert known & {i.item for i in kept.items}


async def test_seed_neighbor_source_returns_the_seed_row_best_first() -> None:
    source = SeedNeighborSource(fakes.NEIGHBORS, fakes.NEIGHBOR_WEIGHTS)
    params = replace(PARAMS, seed_neighbors_size=4)
    q = fakes.query(Surface.NOW_PLAYING, seed=10, params=params)
    assert source.enabled(q)
    got = await source.fetch(q, _user([]), source_id=2)
    assert got.items.tolist() == [11, 12, 13, 14]
    assert np.all(np.diff(got.retrieval_scores) <= 0) and set(got.source_ids.tolist()) == {2}
    assert not source.enabled(fakes.query(params=params))  # Home: no seed
    assert not source.enabled(fakes.query(Surface.NOW_PLAYING, seed=10, params=replace(params, seed_neighbors_size=0)))


async def test_seed_neighbor_source_drops_padding() -> None:
    neighbors = np.array([[1, -1, -1], [0, -1, -1]], dtype=np.int32)
    weights = np.array([[0.5, 0, 0], [0.5, 0, 0]], dtype=np.float32)
    got = await SeedNeighborSource(neighbors, weights).fetch(fakes.query(seed=0, params=PARAMS), _user([]), 0)
    assert got.items.tolist() == [1]


async def test_co_listen_source_ranks_by_history_weight_and_skips_history_and_seed() -> None:
    source = CoListenSource(fakes.NEIGHBORS, fakes.NEIGHBOR_WEIGHTS)
    # history {10 (known), 12 (recent)}: 11 is 10's first neighbour (1.0); 13 gets 1/3 + 1/1 ...
    q = fakes.query(Surface.NOW_PLAYING, seed=14, params=replace(PARAMS, co_listen_size=5))
    got = await source.fetch(q, _user([10], recent=[12]), source_id=1)
    expected: dict[int, float] = {}
    for h in (10, 12):
        for rank, item in enumerate(fakes.NEIGHBORS[h].tolist()):
            expected[item] = expected.get(item, 0.0) + float(fakes.NEIGHBOR_WEIGHTS[h, rank])
    for skip in (10, 12, 14):
        expected.pop(skip, None)
    best = sorted(expected, key=lambda i: (-expected[i], i))[:5]
    assert got.items.tolist() == best
    assert np.allclose(got.retrieval_scores, [expected[i] for i in best])


async def test_co_listen_source_is_empty_without_history() -> None:
    source = CoListenSource(fakes.NEIGHBORS, fakes.NEIGHBOR_WEIGHTS)
    assert len(await source.fetch(fakes.query(params=PARAMS), _user([]), 0)) == 0


async def test_now_playing_lists_follow_the_seed() -> None:
    store = await fakes.seeded_store()
    weights = np.zeros(N_RANKER_FEATURES, dtype=np.float32)
    weights[RANKER_FEATURES.index("seed_colisten_weight")] = 1.0
    weights[RANKER_FEATURES.index("retrieval_score")] = 0.01
    scorer = fakes.LinearScorer(weights)
    executor = PipelineExecutor(now_playing.declare(fakes.components(store, scorer=scorer)), NullObserver())
    lists = []
    for seed in (20, 150):
        result = await executor.execute(fakes.query(Surface.NOW_PLAYING, seed=seed, params=PARAMS), fakes.budget())
        assert seed not in {i.item for i in result.items}
        # the ranker sees the seed's neighbour row: its neighbours lead the list
        assert [i.item for i in result.items[:2]] == [seed + 1, seed + 2]  # then the artist cap (2)
        assert result.items[0].source == "seed_neighbors"
        lists.append([i.item for i in result.items])
    assert lists[0] != lists[1]


async def test_user_hydrator_reads_known_items_sorted_and_inside_the_catalog() -> None:
    store = MemoryFeatureStore()
    await store.load_snapshot(
        UserSnapshot(
            user_ids=["a", "b"],
            vectors=np.ones((2, fakes.DIM), np.float32),
            stats=np.ones((2, 2), np.float32),
            known_indptr=np.array([0, 3, 3], np.int64),
            known_items=np.array([4, 17, 250], np.int32),
        )
    )
    hydrator = UserFeatureHydrator(store, fakes.INDEX_OF, fakes.ITEM_VECTORS)
    user = await hydrator.hydrate(fakes.query(user_id="a"), 1.0)
    assert user.known_items.dtype == np.int64 and user.known_items.tolist() == [4, 17, 250]
    assert (await hydrator.hydrate(fakes.query(user_id="b"), 1.0)).known_items.size == 0
    assert hydrator.fallback(fakes.query(user_id="a")).known_items.size == 0


async def test_user_hydrator_repairs_known_items_from_another_bundle() -> None:
    class Store(MemoryFeatureStore):
        async def get_user(self, user_id: str, timeout_s: float) -> UserRecord:
            record = await super().get_user(user_id, timeout_s)
            return replace(
                record, vector=np.ones(fakes.DIM, np.float32), known_items=np.array([9, 3, 3, 5000], np.int32)
            )

    user = await UserFeatureHydrator(Store(), fakes.INDEX_OF, fakes.ITEM_VECTORS).hydrate(fakes.query(), 1.0)
    assert user.known_items.tolist() == [3, 9]  # sorted, unique, inside the 300-item catalog
