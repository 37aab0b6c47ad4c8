"""Never recommend the item that is playing now back to the listener."""

from __future__ import annotations

from ranking.types import Candidates, FilterResult, Query, UserFeatures


class SeedItemFilter:
    """Removes the seed item (Now Playing); a no-op when the query has no seed."""

    name = "seed_item"

    def enabled(self, query: Query) -> bool:
        return query.seed_item is not None

    def apply(self, query: Query, user: UserFeatures, candidates: Candidates) -> FilterResult:
        return FilterResult.from_mask(candidates, candidates.items != query.seed_item)
