"""Do not recommend what the user just played."""

from __future__ import annotations

import numpy as np

from ranking.types import Candidates, FilterResult, Query, UserFeatures


class RecentlyPlayedFilter:
    """Removes items in the user's recent plays (from ``RecordEvents``)."""

    name = "recently_played"

    def enabled(self, query: Query) -> bool:
        return True

    def apply(self, query: Query, user: UserFeatures, candidates: Candidates) -> FilterResult:
        return FilterResult.from_mask(candidates, ~np.isin(candidates.items, user.recent_items))
