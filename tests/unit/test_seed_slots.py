"""Now Playing's seed slots: open positions by score, then the seed's nearest neighbours first."""

from __future__ import annotations

import numpy as np

from ranking.selectors.artist_diversity import ArtistDiversitySelector
from ranking.selectors.seed_slots import SeedSlots
from ranking.types import OPEN_SLOTS_OFF, Candidates, RankingParams, Surface
from tests.unit import fakes

#: Item 0's neighbours are 1..4; every other row is empty (-1).
NEIGHBORS = np.full((50, 4), -1, dtype=np.int32)
NEIGHBORS[0] = [1, 2, 3, 4]


def _select(items: list[int], scores: list[float], *, seed: int | None, open_slots: int, limit: int = 6) -> list[int]:
    cands = Candidates(np.asarray(items, np.int64), np.zeros(len(items), np.float32), np.zeros(len(items), np.int8))
    selector = ArtistDiversitySelector(np.arange(50, dtype=np.int64), SeedSlots(NEIGHBORS, depth=4))
    surface = Surface.HOME if seed is None else Surface.NOW_PLAYING
    params = RankingParams(diversity_cap=100, open_slots=open_slots)
    query = fakes.query(surface, seed=seed, limit=limit, params=params)
    selection = selector.select(query, cands, np.asarray(scores, np.float32))
    assert sorted(selection.selected.tolist() + selection.held_back.tolist()) == list(range(len(items)))
    return cands.items[selection.selected].tolist()


ITEMS = [10, 3, 11, 12, 1, 13, 4, 14]
SCORES = [8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]  # score order = ITEMS order


def test_after_the_open_slots_the_seeds_neighbours_come_first_each_group_in_score_order() -> None:
    assert _select(ITEMS, SCORES, seed=0, open_slots=2) == [10, 3, 1, 4, 11, 12]
    assert _select(ITEMS, SCORES, seed=0, open_slots=0) == [3, 1, 4, 10, 11, 12]


def test_no_seed_no_neighbours_or_slots_past_the_list_leave_the_score_order() -> None:
    by_score = [10, 3, 11, 12, 1, 13]
    assert _select(ITEMS, SCORES, seed=None, open_slots=0) == by_score  # Home
    assert _select(ITEMS, SCORES, seed=7, open_slots=0) == by_score  # the seed has no neighbours
    assert _select(ITEMS, SCORES, seed=0, open_slots=OPEN_SLOTS_OFF) == by_score
    assert _select(ITEMS, SCORES, seed=0, open_slots=6) == by_score  # the list is only 6 long


def test_the_artist_cap_applies_to_the_reordered_list() -> None:
    artists = np.zeros(50, dtype=np.int64)
    artists[[10, 11, 12, 13, 14]] = 1  # items 1..4 and 3 share artist 0, the rest artist 1
    cands = Candidates(np.asarray(ITEMS, np.int64), np.zeros(8, np.float32), np.zeros(8, np.int8))
    selector = ArtistDiversitySelector(artists, SeedSlots(NEIGHBORS, depth=4))
    query = fakes.query(Surface.NOW_PLAYING, seed=0, limit=4, params=RankingParams(diversity_cap=2, open_slots=1))
    selection = selector.select(query, cands, np.asarray(SCORES, np.float32))
    # order after the slots: 10 | 3, 1, 4 | 11, 12, ... ; the cap keeps two of artist 0 (3, 1)
    assert cands.items[selection.selected].tolist() == [10, 3, 1, 11]
