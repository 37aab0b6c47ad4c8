"""Top-K selection with at most N items per artist (after Now Playing's seed slots)."""

from __future__ import annotations

import numpy as np

from ranking.selectors.seed_slots import SeedSlots
from ranking.types import F32, I64, Candidates, Query, Selection


class ArtistDiversitySelector:
    """Takes rows by descending score (ties: input order), skipping an artist's item once that
    artist has ``params.diversity_cap`` items in the list. If that leaves the list short of
    ``query.limit``, the skipped rows are appended in score order. All other rows are held back.
    With ``seed_slots`` (Now Playing), the score order is first reordered by ``SeedSlots``.
    Vectorised: no Python loop over candidates.
    """

    name = "artist_diversity"

    def __init__(self, artist_ids: I64, seed_slots: SeedSlots | None = None) -> None:
        self._artist_ids = artist_ids
        self._seed_slots = seed_slots

    def enabled(self, query: Query) -> bool:
        return True

    def select(self, query: Query, candidates: Candidates, scores: F32) -> Selection:
        n = len(candidates)
        order = np.argsort(-scores, kind="stable")
        if self._seed_slots is not None:
            order = self._seed_slots.reorder(query, candidates.items, order)
        artists = self._artist_ids[candidates.items[order]]
        # occurrence[k] = how many better-scored rows share row order[k]'s artist
        by_artist = np.argsort(artists, kind="stable")
        sorted_artists = artists[by_artist]
        group_start = np.flatnonzero(np.r_[True, sorted_artists[1:] != sorted_artists[:-1]])
        group_sizes = np.diff(np.r_[group_start, n])
        occurrence = np.empty(n, dtype=np.int64)
        occurrence[by_artist] = np.arange(n) - np.repeat(group_start, group_sizes)
        within_cap = occurrence < query.params.diversity_cap
        chosen = order[within_cap][: query.limit]
        if len(chosen) < query.limit:
            chosen = np.concatenate([chosen, order[~within_cap][: query.limit - len(chosen)]])
        held_mask = np.ones(n, dtype=np.bool_)
        held_mask[chosen] = False
        return Selection(selected=chosen.astype(np.int64), held_back=np.flatnonzero(held_mask))
