"""Do not recommend what the user already knows (the surface's ``known_items`` policy)."""

from __future__ import annotations

import numpy as np

from ranking.types import Candidates, FilterResult, Query, UserFeatures


class KnownItemsFilter:
    """Removes the user's known items (``UserFeatures.known_items``: the interactions the served
    model was fit on, from the feature store) when ``params.known_items`` is ``"exclude"``;
    skipped by the executor when it is ``"keep"``. A cold-start user knows nothing."""

    name = "known_items"

    def enabled(self, query: Query) -> bool:
        return query.params.known_items == "exclude"

    def apply(self, query: Query, user: UserFeatures, candidates: Candidates) -> FilterResult:
        known = user.known_items
        if not len(known) or not len(candidates):
            return FilterResult.from_mask(candidates, np.ones(len(candidates), dtype=np.bool_))
        pos = np.minimum(np.searchsorted(known, candidates.items), len(known) - 1)  # known is ascending
        return FilterResult.from_mask(candidates, known[pos] != candidates.items)
