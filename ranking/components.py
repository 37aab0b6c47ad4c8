"""Component instances shared by the surface declarations, built once by the composition root."""

from __future__ import annotations

from dataclasses import dataclass, field

from ranking.filters.duplicates import DuplicateFilter
from ranking.filters.known_items import KnownItemsFilter
from ranking.filters.recently_played import RecentlyPlayedFilter
from ranking.filters.seed_item import SeedItemFilter
from ranking.filters.skipped import SkippedItemsFilter
from ranking.hydrators.candidate_features import RankerFeatureHydrator
from ranking.selectors.artist_diversity import ArtistDiversitySelector
from ranking.sources.ann import AnnSource
from ranking.sources.co_listen import CoListenSource
from ranking.sources.popularity import PopularitySource
from ranking.sources.seed_neighbors import SeedNeighborSource
from ranking.stages import Scorer, SideEffect, UserHydrator


@dataclass(frozen=True)
class Components:
    user_hydrator: UserHydrator
    ann: AnnSource
    popularity: PopularitySource
    seed_neighbors: SeedNeighborSource
    co_listen: CoListenSource
    candidate_hydrator: RankerFeatureHydrator
    scorer: Scorer
    selector: ArtistDiversitySelector
    side_effects: tuple[SideEffect, ...] = ()
    seed_item: SeedItemFilter = field(default_factory=SeedItemFilter)
    recently_played: RecentlyPlayedFilter = field(default_factory=RecentlyPlayedFilter)
    skipped: SkippedItemsFilter = field(default_factory=SkippedItemsFilter)
    duplicates: DuplicateFilter = field(default_factory=DuplicateFilter)
    known_items: KnownItemsFilter = field(default_factory=KnownItemsFilter)
