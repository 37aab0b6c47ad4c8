"""Top-K selection with at most N items per artist."""

from __future__ import annotations

import numpy as np

from ranking.types import F32, I64, Candidates, Query, Selection


class ArtistDiversitySelector:
    """Takes rows by descending score (ties: input order), skipping an artist's item once that
    artist has ``params.diversity_cap`` items in the list. If that leaves the list short of
    ``query.limit``, the skipped rows are appended in score order. All other rows are held back.
    """

    name = "artist_diversity"

    def __init__(self, artist_ids: I64) -> None:
        self._artist_ids = artist_ids

    def select(self, query: Query, candidates: Candidates, scores: F32) -> Selection:
        order = np.argsort(-scores, kind="stable")
        limit, cap = query.limit, query.params.diversity_cap
        artists = self._artist_ids[candidates.items[order]]
        per_artist: dict[int, int] = {}
        selected: list[int] = []
        capped: list[int] = []
        for row, artist in zip(order.tolist(), artists.tolist(), strict=True):
            if len(selected) == limit:
                break
            count = per_artist.get(artist, 0)
            if count < cap:
                per_artist[artist] = count + 1
                selected.append(row)
            else:
                capped.append(row)
        if len(selected) < limit and capped:
            selected += capped[: limit - len(selected)]
        chosen = np.asarray(selected, dtype=np.int64)
        held_mask = np.ones(len(candidates), dtype=np.bool_)
        held_mask[chosen] = False
        return Selection(selected=chosen, held_back=np.flatnonzero(held_mask))
