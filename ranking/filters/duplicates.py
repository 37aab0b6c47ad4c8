"""One row per item: sources overlap, the first occurrence wins."""

from __future__ import annotations

import numpy as np

from ranking.types import Candidates, FilterResult, Query, UserFeatures


class DuplicateFilter:
    """Keeps the first occurrence of each item (sources are concatenated in declaration order)."""

    name = "duplicates"

    def enabled(self, query: Query) -> bool:
        return True

    def apply(self, query: Query, user: UserFeatures, candidates: Candidates) -> FilterResult:
        keep = np.zeros(len(candidates), dtype=np.bool_)
        _, first = np.unique(candidates.items, return_index=True)
        keep[first] = True
        return FilterResult.from_mask(candidates, keep)
