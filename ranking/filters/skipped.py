"""Do not recommend what the user just skipped."""

from __future__ import annotations

import numpy as np

from ranking.types import Candidates, FilterResult, Query, UserFeatures


class SkippedItemsFilter:
    """Removes items the user recently skipped (from ``RecordEvents``)."""

    name = "skipped"

    def enabled(self, query: Query) -> bool:
        return True

    def apply(self, query: Query, user: UserFeatures, candidates: Candidates) -> FilterResult:
        return FilterResult.from_mask(candidates, ~np.isin(candidates.items, user.skipped_items))
