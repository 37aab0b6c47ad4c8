"""The executor: conservation, fail-open per stage, budgets, side effects."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from ranking.budget import DeadlineExceeded
from ranking.observer import NullObserver
from ranking.pipeline import PipelineExecutor
from ranking.surfaces import home, now_playing
from ranking.types import Candidates, FilterResult, Query, RankingParams, RankResult, Surface, UserFeatures
from tests.unit import fakes


class RecordingObserver(NullObserver):
    def __init__(self) -> None:
        self.degradations: list[tuple[str, str]] = []
        self.removed: dict[str, int] = {}

    def degraded(self, surface: str, stage: str) -> None:
        self.degradations.append((surface, stage))

    def filtered(self, surface: str, filter_name: str, count: int) -> None:
        self.removed[filter_name] = self.removed.get(filter_name, 0) + count


async def test_home_returns_limit_items_scored_by_the_model_without_degradation() -> None:
    store = await fakes.seeded_store()
    executor = PipelineExecutor(home.declare(fakes.components(store)), NullObserver())
    result = await executor.execute(fakes.query(limit=15), fakes.budget())
    assert len(result.items) == 15
    assert result.degraded == ()
    assert result.model_version == "linear-v1"
    assert len({i.item for i in result.items}) == 15
    assert {i.source for i in result.items} <= {"ann", "co_listen", "popularity"}


async def test_every_candidate_is_selected_removed_or_held_back_exactly_once() -> None:
    store = await fakes.seeded_store()
    await store.record_events("u1", ["i3", "i4"], [], 1.0)
    c = fakes.components(store)
    declaration = now_playing.declare(c)
    q = fakes.query(Surface.NOW_PLAYING, seed=10)
    user = await c.user_hydrator.hydrate(q, 1.0)
    retrieved = Candidates.concat([await s.fetch(q, user, i) for i, s in enumerate(declaration.sources)])
    observer = RecordingObserver()
    result = await PipelineExecutor(declaration, observer).execute(q, fakes.budget())
    removed = sum(result.removed_by_filter.values())
    kept = len(retrieved) - removed
    assert len(result.items) <= kept
    assert removed == sum(observer.removed.values())
    assert result.removed_by_filter["duplicates"] > 0  # ann and popularity overlap here
    assert result.removed_by_filter["known_items"] > 0  # the user's known items were retrieved
    assert {s.name for s in declaration.sources} == {"seed_neighbors", "ann", "co_listen", "popularity"}


async def test_seed_item_is_never_recommended_back() -> None:
    store = await fakes.seeded_store()
    executor = PipelineExecutor(now_playing.declare(fakes.components(store)), NullObserver())
    for seed in range(0, 60, 7):
        result = await executor.execute(fakes.query(Surface.NOW_PLAYING, seed=seed, limit=30), fakes.budget())
        assert seed not in {i.item for i in result.items}


async def test_recently_played_items_are_not_recommended_on_now_playing() -> None:
    store = await fakes.seeded_store()
    executor = PipelineExecutor(now_playing.declare(fakes.components(store)), NullObserver())
    q = fakes.query(Surface.NOW_PLAYING, seed=0, limit=30)
    before = await executor.execute(q, fakes.budget())
    played = [fakes.ITEM_IDS[i.item] for i in before.items[:5]]
    await store.record_events("u1", played, [], 1.0)
    after = await executor.execute(q, fakes.budget())
    assert not {fakes.INDEX_OF[p] for p in played} & {i.item for i in after.items}
    assert after.removed_by_filter["recently_played"] >= 5


async def test_skipped_items_are_not_recommended_on_home() -> None:
    store = await fakes.seeded_store()
    executor = PipelineExecutor(home.declare(fakes.components(store)), NullObserver())
    before = await executor.execute(fakes.query(), fakes.budget())
    skipped = fakes.ITEM_IDS[before.items[0].item]
    await store.record_events("u1", [], [skipped], 1.0)
    after = await executor.execute(fakes.query(), fakes.budget())
    assert fakes.INDEX_OF[skipped] not in {i.item for i in after.items}


async def test_at_most_diversity_cap_items_per_artist_in_the_top_k() -> None:
    store = await fakes.seeded_store()
    executor = PipelineExecutor(home.declare(fakes.components(store)), NullObserver())
    for cap in (1, 2, 3):
        params = RankingParams(retrieval_size=200, popularity_size=50, diversity_cap=cap)
        result = await executor.execute(fakes.query(limit=20, params=params), fakes.budget())
        counts = np.bincount(fakes.ARTISTS[[i.item for i in result.items]])
        assert counts.max() <= cap
        assert len(result.items) == 20


async def test_feature_store_down_degrades_to_cold_start_instead_of_failing() -> None:
    observer = RecordingObserver()
    executor = PipelineExecutor(home.declare(fakes.components(fakes.FailingStore())), observer)
    result = await executor.execute(fakes.query(), fakes.budget())
    assert result.degraded == ("user_features",)
    assert observer.degradations == [("home", "user_features")]
    # a cold-start user has no query vector on Home: popularity answers
    assert len(result.items) == 20
    assert {i.source for i in result.items} == {"popularity"}


async def test_feature_store_hanging_times_out_within_the_stage_budget() -> None:
    executor = PipelineExecutor(home.declare(fakes.components(fakes.FailingStore(hang=True))), NullObserver())
    result = await asyncio.wait_for(executor.execute(fakes.query(), fakes.budget()), timeout=5)
    assert result.degraded == ("user_features",)
    assert result.timings_ms["user_features"] < 5000


async def test_ann_failure_falls_back_to_popularity() -> None:
    store = await fakes.seeded_store()
    executor = PipelineExecutor(home.declare(fakes.components(store, index=fakes.BrokenIndex())), NullObserver())
    result = await executor.execute(fakes.query(), fakes.budget())
    assert result.degraded == ("retrieval",)
    assert {i.source for i in result.items} <= {"popularity", "co_listen"}  # the in-process sources
    assert result.model_version == "linear-v1"


async def test_model_failure_falls_back_to_retrieval_order() -> None:
    store = await fakes.seeded_store()
    c = fakes.components(store, scorer=fakes.LinearScorer(fail=True))
    executor = PipelineExecutor(home.declare(c), NullObserver())
    q = fakes.query(limit=10, params=RankingParams(retrieval_size=100, popularity_size=50, diversity_cap=100))
    result = await executor.execute(q, fakes.budget())
    assert result.degraded == ("scoring",)
    assert result.model_version == ""
    user = await c.user_hydrator.hydrate(q, 1.0)
    ann = await c.ann.fetch(q, user, 0)
    assert [i.item for i in result.items] == ann.items[:10].tolist()


async def test_slow_model_yields_to_retrieval_order_within_the_scoring_slice() -> None:
    store = await fakes.seeded_store()
    c = fakes.components(store, scorer=fakes.LinearScorer(delay_s=5.0))
    result = await PipelineExecutor(home.declare(c), NullObserver()).execute(fakes.query(), fakes.budget())
    assert result.degraded == ("scoring",)
    assert len(result.items) == 20


async def test_no_time_left_at_all_is_deadline_exceeded() -> None:
    store = await fakes.seeded_store()
    executor = PipelineExecutor(home.declare(fakes.components(store)), NullObserver())
    with pytest.raises(DeadlineExceeded):
        await executor.execute(fakes.query(), fakes.budget(total_s=0.0))


async def test_a_filter_that_loses_candidates_fails_loudly() -> None:
    class LossyFilter:
        name = "lossy"

        def enabled(self, query: Query) -> bool:
            return True

        def apply(self, query: Query, user: UserFeatures, candidates: Candidates) -> FilterResult:
            return FilterResult(kept=candidates.take(np.arange(1, len(candidates))), removed=Candidates.empty())

    store = await fakes.seeded_store()
    declaration = home.declare(fakes.components(store))
    from dataclasses import replace

    from ranking.pipeline import ConservationError

    executor = PipelineExecutor(replace(declaration, filters=(LossyFilter(),)), NullObserver())
    with pytest.raises(ConservationError, match="lossy"):
        await executor.execute(fakes.query(), fakes.budget())


async def test_side_effects_run_after_the_result_and_their_failures_are_contained() -> None:
    ran: list[str] = []

    class Recorder:
        name = "recorder"

        def enabled(self, query: Query) -> bool:
            return True

        async def run(self, query: Query, result: RankResult) -> None:
            ran.append(query.request_id)

    class Exploder(Recorder):
        name = "exploder"

        async def run(self, query: Query, result: RankResult) -> None:
            raise RuntimeError("disk full")

    store = await fakes.seeded_store()
    from dataclasses import replace

    declaration = replace(home.declare(fakes.components(store)), side_effects=(Exploder(), Recorder()))
    executor = PipelineExecutor(declaration, NullObserver())
    q = fakes.query()
    await executor.execute(q, fakes.budget())  # the executor schedules them itself
    assert ran == []  # not run inline
    await executor.drain_side_effects()
    assert ran == ["test"]


async def test_with_no_retrieval_time_left_the_in_process_sources_still_answer() -> None:
    store = await fakes.seeded_store()
    executor = PipelineExecutor(home.declare(fakes.components(store)), NullObserver())
    from ranking.budget import Budget, StageLimits

    no_retrieval = StageLimits(user_features=0.2, retrieval=0.0, scoring=0.2, reserve=0.0)
    result = await executor.execute(
        fakes.query(), Budget(surface_budget_s=1.0, client_timeout_s=None, limits=no_retrieval)
    )
    assert result.degraded == ("retrieval",)  # the ANN source got no time
    # the untimed in-process sources (popularity, co-listen) still answer
    assert len(result.items) == 20 and {i.source for i in result.items} <= {"popularity", "co_listen"}


async def test_an_answer_ready_after_the_clients_deadline_is_deadline_exceeded() -> None:
    from ranking.budget import Budget, StageLimits

    store = await fakes.seeded_store()
    # the scorer sleeps 200 ms; a negative reserve lets its slice run 100 ms past the 50 ms deadline
    c = fakes.components(store, scorer=fakes.LinearScorer(delay_s=0.2))
    executor = PipelineExecutor(home.declare(c), NullObserver())
    limits = StageLimits(user_features=1.0, retrieval=1.0, scoring=1.0, reserve=-0.1)
    with pytest.raises(DeadlineExceeded, match="client's"):
        await executor.execute(fakes.query(), Budget(surface_budget_s=1.0, client_timeout_s=0.05, limits=limits))
    # the same overrun against the surface's own budget (no client deadline) still answers, degraded
    result = await executor.execute(fakes.query(), Budget(surface_budget_s=0.05, client_timeout_s=None, limits=limits))
    assert result.degraded == ("scoring",)


class Disabled:
    """Wraps a stage component and opts it out of every query (``enabled`` False)."""

    def __init__(self, inner: object) -> None:
        self._inner = inner
        self.name = getattr(inner, "name", "disabled")

    def enabled(self, query: Query) -> bool:
        return False

    def __getattr__(self, attr: str) -> object:
        return getattr(self._inner, attr)


class Recorder:
    """A side effect that records the request ids it ran for."""

    name = "recorder"

    def __init__(self) -> None:
        self.ran: list[str] = []

    def enabled(self, query: Query) -> bool:
        return True

    async def run(self, query: Query, result: RankResult) -> None:
        self.ran.append(query.request_id)


def wide_query(limit: int = 10) -> Query:
    """A Home query whose diversity cap never binds (the selection is the top ``limit`` by score)."""
    return fakes.query(limit=limit, params=RankingParams(retrieval_size=100, popularity_size=50, diversity_cap=100))


async def test_a_disabled_user_hydrator_serves_cold_start_without_reading_the_store_or_degrading() -> None:
    from dataclasses import replace

    observer = RecordingObserver()
    c = fakes.components(fakes.FailingStore())  # a read would fail and mark user_features degraded
    declaration = replace(home.declare(c), user_hydrator=Disabled(c.user_hydrator))
    result = await PipelineExecutor(declaration, observer).execute(fakes.query(), fakes.budget())
    assert result.degraded == () and observer.degradations == []
    assert len(result.items) == 20 and {i.source for i in result.items} == {"popularity"}  # cold start


async def test_a_disabled_scorer_serves_retrieval_order_without_degrading() -> None:
    from dataclasses import replace

    store = await fakes.seeded_store()
    observer = RecordingObserver()
    c = fakes.components(store, scorer=fakes.LinearScorer(fail=True))  # would degrade if called
    declaration = replace(home.declare(c), scorer=Disabled(c.scorer))
    q = replace(wide_query(), params=replace(wide_query().params, shadow_model="other"))
    result = await PipelineExecutor(declaration, observer).execute(q, fakes.budget())
    assert result.degraded == () and observer.degradations == []
    assert result.model_version == ""
    assert result.scoring_inputs is None  # nothing was scored: nothing for a shadow to compare with
    user = await c.user_hydrator.hydrate(q, 1.0)
    ann = await c.ann.fetch(q, user, 0)
    assert [i.item for i in result.items] == ann.items[:10].tolist()


async def test_a_disabled_candidate_hydrator_skips_scoring_too() -> None:
    from dataclasses import replace

    class Exploding:
        name = "exploding"

        def enabled(self, query: Query) -> bool:
            return True

        def hydrate(self, query: Query, user: UserFeatures, candidates: Candidates) -> np.ndarray:
            raise AssertionError("a disabled hydrator must not be called")

    store = await fakes.seeded_store()
    observer = RecordingObserver()
    c = fakes.components(store, scorer=fakes.LinearScorer(fail=True))  # would degrade if called
    declaration = replace(home.declare(c), candidate_hydrator=Disabled(Exploding()))
    q = wide_query()
    result = await PipelineExecutor(declaration, observer).execute(q, fakes.budget())
    assert result.degraded == () and observer.degradations == []
    assert result.model_version == ""
    user = await c.user_hydrator.hydrate(q, 1.0)
    ann = await c.ann.fetch(q, user, 0)
    assert [i.item for i in result.items] == ann.items[:10].tolist()


async def test_a_disabled_selector_takes_the_top_limit_by_score() -> None:
    from dataclasses import replace

    store = await fakes.seeded_store()
    c = fakes.components(store)
    one_per_artist = fakes.query(
        limit=60, params=RankingParams(retrieval_size=100, popularity_size=50, diversity_cap=1)
    )
    executor = PipelineExecutor(replace(home.declare(c), selector=Disabled(c.selector)), NullObserver())
    result = await executor.execute(one_per_artist, fakes.budget())
    # the same as the diversity selector whose cap never binds: pure top-60 by score
    uncapped = await PipelineExecutor(home.declare(c), NullObserver()).execute(wide_query(60), fakes.budget())
    assert [i.item for i in result.items] == [i.item for i in uncapped.items]
    assert np.bincount(fakes.ARTISTS[[i.item for i in result.items]]).max() > 1  # the cap of 1 was not applied
    scores = [i.score for i in result.items]
    assert len(scores) == 60 and scores == sorted(scores, reverse=True)
    assert result.degraded == ()


async def test_side_effects_are_skipped_on_request_and_after_a_missed_client_deadline() -> None:
    from dataclasses import replace

    from ranking.budget import Budget, StageLimits

    store = await fakes.seeded_store()
    recorder = Recorder()
    slow = fakes.LinearScorer(delay_s=0.2)
    declaration = replace(home.declare(fakes.components(store, scorer=slow)), side_effects=(recorder,))
    executor = PipelineExecutor(declaration, NullObserver())
    await executor.execute(fakes.query(), fakes.budget(), run_side_effects=False)
    limits = StageLimits(user_features=1.0, retrieval=1.0, scoring=1.0, reserve=-0.1)
    with pytest.raises(DeadlineExceeded):
        await executor.execute(fakes.query(), Budget(surface_budget_s=1.0, client_timeout_s=0.05, limits=limits))
    await executor.drain_side_effects()
    assert recorder.ran == []
    await executor.execute(fakes.query(), fakes.budget())
    await executor.drain_side_effects()
    assert recorder.ran == ["test"]


async def test_side_effects_in_flight_are_bounded_and_the_excess_is_dropped_and_counted() -> None:
    from dataclasses import replace

    release = asyncio.Event()

    class Blocking(Recorder):
        async def run(self, query: Query, result: RankResult) -> None:
            await release.wait()
            await super().run(query, result)

    store = await fakes.seeded_store()
    blocking = Blocking()
    declaration = replace(home.declare(fakes.components(store)), side_effects=(blocking,))
    executor = PipelineExecutor(declaration, NullObserver(), max_side_effect_tasks=1)
    await executor.execute(fakes.query(), fakes.budget())
    await executor.execute(fakes.query(), fakes.budget())  # the first still runs: no slot, dropped
    release.set()
    await executor.drain_side_effects()
    assert blocking.ran == ["test"] and executor.side_effects_dropped == 1
    await executor.execute(fakes.query(), fakes.budget())  # the slot is free again
    await executor.drain_side_effects()
    assert blocking.ran == ["test", "test"] and executor.side_effects_dropped == 1
