"""The budget object, the diversity selector and the filters as units."""

from __future__ import annotations

import numpy as np
import pytest

from ranking.budget import Budget, DeadlineExceeded, StageLimits
from ranking.filters.duplicates import DuplicateFilter
from ranking.selectors.artist_diversity import ArtistDiversitySelector
from ranking.types import Candidates, RankingParams
from tests.unit import fakes


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_client_deadline_caps_the_surface_budget_and_stages_get_at_most_their_slice() -> None:
    clock = FakeClock()
    limits = StageLimits(user_features=0.010, retrieval=0.020, scoring=0.030, reserve=0.002)
    budget = Budget(surface_budget_s=0.080, client_timeout_s=0.025, limits=limits, clock=clock)
    assert budget.total_s == pytest.approx(0.025)
    assert budget.for_stage("user_features") == pytest.approx(0.010)
    assert budget.for_stage("scoring") == pytest.approx(0.023)  # remaining 25 ms minus the 2 ms reserve
    clock.now += 0.020
    assert budget.for_stage("scoring") == pytest.approx(0.003)
    clock.now += 0.010
    assert budget.for_stage("retrieval") == 0.0
    with pytest.raises(DeadlineExceeded):
        budget.require("ranking")


def test_no_client_deadline_means_the_surface_budget() -> None:
    budget = Budget(surface_budget_s=0.05, client_timeout_s=None, limits=StageLimits(), clock=FakeClock())
    assert budget.total_s == pytest.approx(0.05)


def candidates(items: list[int]) -> Candidates:
    n = len(items)
    return Candidates(np.asarray(items, np.int64), np.zeros(n, np.float32), np.zeros(n, np.int8))


def test_duplicates_keep_the_first_occurrence_in_order() -> None:
    result = DuplicateFilter().apply(fakes.query(), None, candidates([5, 3, 5, 9, 3, 1]))  # type: ignore[arg-type]
    assert result.kept.items.tolist() == [5, 3, 9, 1]
    assert sorted(result.removed.items.tolist()) == [3, 5]


def test_selector_caps_artists_then_refills_when_short_and_accounts_for_every_row() -> None:
    # items 0..4 share artist 0, items 5..9 artist 1 (fakes: 5 tracks per artist)
    cands = candidates([0, 1, 2, 5, 6, 3, 7])
    scores = np.asarray([7, 6, 5, 4, 3, 2, 1], np.float32)
    selector = ArtistDiversitySelector(fakes.ARTISTS)
    q = fakes.query(limit=4, params=RankingParams(diversity_cap=2))
    selection = selector.select(q, cands, scores)
    assert cands.items[selection.selected].tolist() == [0, 1, 5, 6]
    assert sorted(selection.selected.tolist() + selection.held_back.tolist()) == list(range(len(cands)))
    q = fakes.query(limit=6, params=RankingParams(diversity_cap=2))
    selection = selector.select(q, cands, scores)
    assert cands.items[selection.selected].tolist() == [0, 1, 5, 6, 2, 3]  # capped rows refill, in score order


def reference_select(artists: np.ndarray, scores: np.ndarray, limit: int, cap: int) -> list[int]:
    """The selection rule written as the obvious loop."""
    order = sorted(range(len(scores)), key=lambda r: (-scores[r], r))
    per_artist: dict[int, int] = {}
    selected: list[int] = []
    capped: list[int] = []
    for row in order:
        if len(selected) == limit:
            break
        if per_artist.get(artists[row], 0) < cap:
            per_artist[artists[row]] = per_artist.get(artists[row], 0) + 1
            selected.append(row)
        else:
            capped.append(row)
    return selected + capped[: limit - len(selected)]


def test_vectorised_selection_matches_the_reference_loop_on_random_inputs() -> None:
    rng = np.random.default_rng(3)
    selector = ArtistDiversitySelector(fakes.ARTISTS)
    for trial in range(200):
        n = int(rng.integers(0, 80))
        items = rng.choice(fakes.N_ITEMS, size=n, replace=False).astype(np.int64)
        scores = rng.integers(0, 6, size=n).astype(np.float32)  # many ties
        cands = Candidates(items, np.zeros(n, np.float32), np.zeros(n, np.int8))
        limit, cap = int(rng.integers(1, 30)), int(rng.integers(1, 4))
        selection = selector.select(fakes.query(limit=limit, params=RankingParams(diversity_cap=cap)), cands, scores)
        expected = reference_select(fakes.ARTISTS[items], scores, limit, cap)
        assert selection.selected.tolist() == expected, trial
        assert sorted(selection.selected.tolist() + selection.held_back.tolist()) == list(range(n))
